use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;

use super::*;

#[test]
fn a_new_memfd_is_a_ring_and_both_mappings_see_one_memory() {
    let fd = new_memfd().expect("memfd");
    assert_eq!(check_sealed(fd.as_fd()), Ok(()));
    let a = Ring::map(fd.as_fd()).expect("map a");
    let b = Ring::map(fd.as_fd()).expect("map b");
    let msg: Vec<u8> = (0..=200u8).collect(); // not a multiple of 8
    a.write(Slot::Request, &msg);
    a.req_len().store(msg.len() as u32, Ordering::SeqCst);
    a.req_seq().store(1, Ordering::SeqCst);
    assert_eq!(b.req_seq().load(Ordering::SeqCst), 1);
    let mut out = vec![0u8; b.req_len().load(Ordering::SeqCst) as usize];
    b.read(Slot::Request, &mut out);
    assert_eq!(out, msg);
    let mut answer = [9u8; 3];
    b.read(Slot::Answer, &mut answer);
    assert_eq!(answer, [0; 3], "the answer slot is apart");
}

#[test]
fn lengths_past_the_slot_touch_nothing_past_it() {
    let fd = new_memfd().expect("memfd");
    let r = Ring::map(fd.as_fd()).expect("map");
    r.write(Slot::Answer, &vec![7; SLOT + 100]);
    let mut out = vec![0u8; SLOT + 100];
    r.read(Slot::Answer, &mut out);
    assert!(out[..SLOT].iter().all(|&x| x == 7));
    assert!(out[SLOT..].iter().all(|&x| x == 0), "nothing read past the slot");
}

fn unsealed_memfd(len: usize) -> OwnedFd {
    // SAFETY: a literal name; the result is checked and owned at once.
    let raw = unsafe { libc::memfd_create(c"t".as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    assert!(raw >= 0);
    // SAFETY: just made, owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: ftruncate on our own descriptor.
    assert_eq!(unsafe { libc::ftruncate(fd.as_raw_fd(), len as libc::off_t) }, 0);
    fd
}

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

#[test]
fn a_file_that_could_shrink_or_is_not_a_memfd_is_refused() {
    assert_eq!(
        check_sealed(unsealed_memfd(RING_BYTES).as_fd()),
        Err(NotARing::NotSealed)
    );
    assert_eq!(
        check_sealed(unsealed_memfd(RING_BYTES - 4096).as_fd()),
        Err(NotARing::Size)
    );
    let (a, _b) = UnixStream::pair().expect("pair");
    assert_eq!(check_sealed(a.as_fd()), Err(NotARing::NotAFile));
    let dir = std::env::temp_dir().join(format!("ring-test-{}", std::process::id()));
    let file = std::fs::File::create(&dir).expect("file");
    file.set_len(RING_BYTES as u64).expect("len");
    let _ = std::fs::remove_file(&dir);
    assert_eq!(
        check_sealed(file.as_fd()),
        Err(NotARing::NotSealed),
        "a plain file has no seals"
    );
}

#[test]
fn one_descriptor_travels_with_the_bytes_and_extras_are_flagged() {
    let (a, b) = UnixStream::pair().expect("pair");
    let fd = new_memfd().expect("memfd");
    assert_eq!(send_with_fd(a.as_fd(), b"hello", fd.as_fd()).expect("send"), 5);
    let mut buf = [0u8; 16];
    let got = recv_with_fd(b.as_fd(), &mut buf).expect("recv");
    assert_eq!(&buf[..got.n], b"hello");
    assert!(!got.extra);
    let got_fd = got.fd.expect("a descriptor");
    assert_eq!(check_sealed(got_fd.as_fd()), Ok(()));
    // Plain bytes: no descriptor.
    std::io::Write::write_all(&mut &a, b"x").expect("write");
    let got = recv_with_fd(b.as_fd(), &mut buf).expect("recv");
    assert_eq!((got.n, got.fd.is_none(), got.extra), (1, true, false));
}
