use std::io::Write;

use super::*;
use crate::server::limits::BASE_BUFFER;

fn pair() -> (UnixStream, FrameReader, Arc<InFlight>) {
    let (a, b) = UnixStream::pair().expect("socketpair");
    let budget = Arc::new(InFlight::default());
    (a, FrameReader::new(Arc::new(b), budget.clone()), budget)
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut v = (body.len() as u32).to_le_bytes().to_vec();
    v.extend_from_slice(body);
    v
}

const SHORT: Duration = Duration::from_millis(200);

/// Audit finding 3: a 4-byte prefix made the sidecar allocate and zero-fill
/// up to 64 MiB before any hello.
#[test]
fn a_length_prefix_alone_allocates_nothing_and_times_out() {
    let (mut peer, mut r, budget) = pair();
    peer.write_all(&(1u32 << 20).to_le_bytes()).unwrap();
    peer.write_all(&[0u8; 10]).unwrap();
    assert!(matches!(r.next(None, SHORT), Err(End::Slow)));
    assert!(budget.held() <= BASE_BUFFER, "held {}", budget.held());
}

#[test]
fn a_large_frame_is_read_whole_then_its_buffer_is_given_back() {
    let (mut peer, mut r, budget) = pair();
    let body = vec![7u8; 300 << 10];
    let writer = std::thread::spawn(move || {
        peer.write_all(&frame(&body)).unwrap();
        peer.write_all(&frame(b"small")).unwrap();
        peer
    });
    match r.next(None, Duration::from_secs(5)) {
        Ok(Next::Frame(f)) => assert_eq!(f.len(), 300 << 10),
        _ => panic!("expected the large frame"),
    }
    assert!(budget.held() > 0);
    match r.next(None, Duration::from_secs(5)) {
        Ok(Next::Frame(f)) => assert_eq!(f, b"small"),
        _ => panic!("expected the small frame"),
    }
    assert_eq!(budget.held(), 0);
    assert_eq!(r.buf.len(), BASE_BUFFER);
    drop(writer.join());
}

#[test]
fn a_frame_past_the_budget_is_dropped_and_the_stream_stays_in_step() {
    let (mut peer, mut r, budget) = pair();
    // Someone else holds almost all of the budget.
    assert!(budget.charge(MAX_BYTES_IN_FLIGHT - 1024));
    let writer = std::thread::spawn(move || {
        peer.write_all(&frame(&vec![1u8; 200 << 10])).unwrap();
        peer.write_all(&frame(b"next")).unwrap();
        peer
    });
    assert!(matches!(r.next(None, Duration::from_secs(5)), Ok(Next::OverBudget)));
    match r.next(None, Duration::from_secs(5)) {
        Ok(Next::Frame(f)) => assert_eq!(f, b"next"),
        _ => panic!("expected the next frame"),
    }
    drop(writer.join());
}

#[test]
fn idle_oversized_and_closed() {
    let (mut peer, mut r, _) = pair();
    assert!(matches!(r.next(Some(SHORT), SHORT), Err(End::Idle)));
    peer.write_all(&u32::MAX.to_le_bytes()).unwrap();
    assert!(matches!(r.next(None, SHORT), Err(End::Broken(_))));
    let (peer, mut r, _) = pair();
    drop(peer);
    assert!(matches!(r.next(None, SHORT), Err(End::Closed)));
}

#[test]
fn a_byte_at_a_time_misses_the_frame_deadline() {
    let (mut peer, mut r, _) = pair();
    let writer = std::thread::spawn(move || {
        for b in frame(&[0u8; 64]) {
            if peer.write_all(&[b]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    assert!(matches!(r.next(None, SHORT), Err(End::Slow)));
    drop(r);
    drop(writer.join());
}

/// A reader with a ring, and the peer's own mapping of it.
fn ring_pair() -> (UnixStream, FrameReader, Ring, Arc<InFlight>) {
    use std::os::fd::AsFd;
    let (peer, mut r, budget) = pair();
    let fd = hsmbridge_proto::ring::new_memfd().expect("memfd");
    r.attach(Ring::map(fd.as_fd()).expect("map"));
    let theirs = Ring::map(fd.as_fd()).expect("map");
    (peer, r, theirs, budget)
}

/// What the shim does for a request in the ring: the bytes, the length, the sequence, and a
/// doorbell if the reader sleeps.
fn post(peer: &mut UnixStream, ring: &Ring, seq: u32, body: &[u8]) {
    ring.write(Slot::Request, body);
    ring.req_len().store(body.len() as u32, Ordering::SeqCst);
    ring.req_seq().store(seq, Ordering::SeqCst);
    if ring.sidecar_sleeps().load(Ordering::SeqCst) != 0 {
        peer.write_all(&DOORBELL).unwrap();
    }
}

#[test]
fn requests_come_through_the_ring_and_doorbells_are_skipped() {
    let (mut peer, mut r, ring, _) = ring_pair();
    post(&mut peer, &ring, 1, b"first");
    match r.next(Some(SHORT), SHORT) {
        Ok(Next::Frame(f)) => assert_eq!(f, b"first"),
        _ => panic!("expected the ring's request"),
    }
    assert!(r
        .answer_in_ring()
        .is_some_and(|(_, seq, from_ring)| seq == 1 && from_ring));
    // Doorbells, then a frame on the socket announced in the ring.
    ring.req_len().store(ON_SOCKET, Ordering::SeqCst);
    ring.req_seq().store(2, Ordering::SeqCst);
    peer.write_all(&DOORBELL.repeat(3)).unwrap();
    peer.write_all(&frame(b"second")).unwrap();
    match r.next(Some(SHORT), SHORT) {
        Ok(Next::Frame(f)) => assert_eq!(f, b"second"),
        _ => panic!("expected the socket's request"),
    }
    assert!(r
        .answer_in_ring()
        .is_some_and(|(_, seq, from_ring)| seq == 2 && !from_ring));
    // A length past the slot ends the connection.
    ring.req_len().store(SLOT as u32 + 1, Ordering::SeqCst);
    ring.req_seq().store(3, Ordering::SeqCst);
    assert!(matches!(r.next(Some(SHORT), SHORT), Err(End::Broken(_))));
}

/// Review finding: a frame refused over the budget left its announcement untaken, and the next
/// wait went back to read the socket for it (the shim's next request, in the ring, then waited
/// out the frame deadline and the connection was closed).
#[test]
fn a_refused_announced_frame_leaves_no_announcement_behind() {
    let (mut peer, mut r, ring, budget) = ring_pair();
    assert!(budget.charge(MAX_BYTES_IN_FLIGHT), "the budget is spent by others");
    let big = frame(&vec![1u8; 64 << 10]);
    // The reader is asleep on the socket when the announced frame comes (the frame wakes it).
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        ring.req_len().store(ON_SOCKET, Ordering::SeqCst);
        ring.req_seq().store(1, Ordering::SeqCst);
        peer.write_all(&big).unwrap();
        (peer, ring)
    });
    let first = r.next(Some(Duration::from_secs(5)), Duration::from_secs(5));
    assert!(matches!(first, Ok(Next::OverBudget)), "not refused over the budget");
    let (mut peer, ring) = writer.join().unwrap();
    let poster = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        post(&mut peer, &ring, 2, b"after");
        (peer, ring)
    });
    match r.next(Some(Duration::from_secs(5)), SHORT) {
        Ok(Next::Frame(f)) => assert_eq!(f, b"after"),
        Ok(Next::OverBudget) => panic!("over budget"),
        Err(e) => panic!("the ring's next request was not taken: {e:?}"),
    }
    drop(poster.join().unwrap());
    budget.release(MAX_BYTES_IN_FLIGHT);
}

/// Review finding: a doorbell after an announcement sent the reader back to its idle wait, so
/// the announced frame no longer had to come within the frame deadline.
#[test]
fn doorbells_do_not_lift_an_announced_frames_deadline() {
    let (mut peer, mut r, ring, _) = ring_pair();
    ring.req_len().store(ON_SOCKET, Ordering::SeqCst);
    ring.req_seq().store(1, Ordering::SeqCst);
    peer.write_all(&DOORBELL).unwrap();
    // Doorbells for a second, then the peer goes (so that a reader that waits for ever ends).
    let ringer = std::thread::spawn(move || {
        for _ in 0..10 {
            std::thread::sleep(Duration::from_millis(100));
            let _ = peer.write_all(&DOORBELL);
        }
    });
    let t0 = Instant::now();
    let got = r.next(None, SHORT);
    assert!(matches!(got, Err(End::Slow)), "not cut off: {:?}", got.err());
    assert!(
        t0.elapsed() < Duration::from_millis(900),
        "cut off after {:?}",
        t0.elapsed()
    );
    ringer.join().unwrap();
}
