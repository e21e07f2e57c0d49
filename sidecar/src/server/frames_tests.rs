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
