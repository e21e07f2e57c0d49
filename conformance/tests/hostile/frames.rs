//! Malformed framing: oversized, truncated and garbage frames, requests
//! before hello, and length prefixes that promise more than they send. Each
//! closes the offending connection and costs (almost) no memory.

use std::time::{Duration, Instant};

use hsmbridge_proto::limits::MAX_FRAME;
use hsmbridge_proto::wire::{self, request::Call, Request};
use prost::Message;

use super::support::{Raw, Target};

#[test]
fn oversized_truncated_and_garbage_frames_close_the_connection() {
    let mut t = Target::start();
    // A length prefix past the limit.
    let mut raw = t.client();
    raw.send_bytes(&(MAX_FRAME as u32 + 1).to_le_bytes()).expect("send");
    assert!(raw.closed_within(Duration::from_secs(5)), "oversized prefix");
    // Garbage that is no protobuf.
    let mut raw = t.client();
    raw.send_frame(&[0xff; 40]).expect("send");
    assert!(raw.closed_within(Duration::from_secs(5)), "garbage frame");
    // A truncated frame, then the peer goes away.
    let mut raw = t.client();
    raw.send_bytes(&100u32.to_le_bytes()).expect("send");
    raw.send_bytes(&[0; 50]).expect("send");
    drop(raw);
    // An empty request.
    let mut raw = t.client();
    raw.send_frame(&[]).expect("send");
    assert!(raw.closed_within(Duration::from_secs(5)), "empty request");
    t.assert_still_serves("malformed frames");
}

#[test]
fn requests_before_hello_are_refused() {
    let mut t = Target::start();
    let mut raw = Raw::connect(&t.socket).expect("connect");
    let open = Request {
        call: Some(Call::OpenSession(wire::OpenSession { slot: 0, flags: 6 })),
        caller_cpu: 0,
        caller_polls: false,
    };
    raw.send_frame(&open.encode_to_vec()).expect("send");
    assert!(raw.closed_within(Duration::from_secs(5)), "a call before hello");
    let mut raw = Raw::connect(&t.socket).expect("connect");
    let hello = Request {
        call: Some(Call::Hello(wire::Hello {
            protocol_version: 99,
            join_token: vec![],
            ..wire::Hello::default()
        })),
        caller_cpu: 0,
        caller_polls: false,
    };
    raw.send_frame(&hello.encode_to_vec()).expect("send");
    let r = raw.read_response().expect("an answer");
    assert_ne!(r.rv, 0, "unknown protocol version");
    assert!(raw.closed_within(Duration::from_secs(5)));
    // A second Hello on a connection that has one.
    let mut raw = t.client();
    let r = raw
        .call(Call::Hello(wire::Hello {
            protocol_version: 1,
            join_token: vec![],
            ..wire::Hello::default()
        }))
        .expect("answer");
    assert_ne!(r.rv, 0, "a second hello");
    t.assert_still_serves("requests before hello");
}

/// Audit finding 3: a 4-byte prefix made the sidecar allocate and zero-fill
/// up to 64 MiB before any hello (four connections: ~270 MiB, past the
/// injected container's 128Mi limit).
#[test]
fn length_prefixes_without_bytes_cost_no_memory() {
    let mut t = Target::start();
    let before = t.rss_kib();
    let mut held = Vec::new();
    for claim in [(64u32 << 20) - 1, MAX_FRAME as u32, MAX_FRAME as u32, MAX_FRAME as u32] {
        let mut raw = Raw::connect(&t.socket).expect("connect");
        raw.send_bytes(&claim.to_le_bytes()).expect("send");
        held.push(raw);
    }
    let mut hello_then_claim = t.client();
    hello_then_claim
        .send_bytes(&(MAX_FRAME as u32).to_le_bytes())
        .expect("send");
    held.push(hello_then_claim);
    std::thread::sleep(Duration::from_millis(500));
    let during = t.rss_kib();
    println!("hostile frames: RSS {before} KiB before, {during} KiB with 5 connections claiming 1-64 MiB frames");
    assert!(
        during < before + 8 * 1024,
        "RSS grew from {before} to {during} KiB on length prefixes alone"
    );
    t.assert_still_serves("length prefixes without bytes");
}

/// A frame begun must be finished within its deadline (5 s): a byte every
/// second does not keep a connection.
#[test]
fn a_frame_sent_a_byte_at_a_time_is_cut_off() {
    let mut t = Target::start();
    let mut raw = t.client();
    let body = Request {
        call: Some(Call::GetInfo(wire::Empty {})),
        caller_cpu: 0,
        caller_polls: false,
    }
    .encode_to_vec();
    let mut frame = (body.len() as u32 + 200).to_le_bytes().to_vec();
    frame.extend_from_slice(&body);
    let start = Instant::now();
    let mut cut = None;
    for b in frame.iter().chain([0u8; 200].iter()) {
        if raw.send_bytes(&[*b]).is_err() {
            cut = Some(start.elapsed());
            break;
        }
        if raw.closed_within(Duration::from_millis(1000)) {
            cut = Some(start.elapsed());
            break;
        }
        if start.elapsed() > Duration::from_secs(20) {
            break;
        }
    }
    let cut = cut.unwrap_or_else(|| panic!("a byte a second kept the connection open for {:?}", start.elapsed()));
    println!("hostile frames: a byte a second was cut off after {cut:?}");
    assert!(cut < Duration::from_secs(15), "cut off after {cut:?}");
    t.assert_still_serves("a frame sent a byte at a time");
}

/// Review finding: the first frame was decoded without the template check
/// and drew on the budget of the applications' calls: 14 pre-hello frames of
/// empty attributes peaked at 350 MB.
#[test]
fn a_large_first_frame_is_not_a_hello() {
    let mut t = Target::start();
    let body = vec![0x0a; 512 << 10];
    let mut held = Vec::new();
    for _ in 0..16 {
        let mut raw = Raw::connect(&t.socket).expect("connect");
        let _ = raw.send_frame(&body);
        assert!(raw.closed_within(Duration::from_secs(5)), "a 512 KiB first frame");
        held.push(raw);
    }
    let peak = t.peak_rss_kib();
    println!("hostile frames: 16 first frames of 512 KiB refused, sidecar peak RSS {peak} KiB");
    assert!(peak < super::support::MAX_RSS_KIB, "peak RSS {peak} KiB");
    t.assert_still_serves("large first frames");
}

/// Review finding: answers a peer does not read held ~2 MiB each (100
/// connections: 220 MB), and a trickle reader kept them past the deadline.
#[test]
fn unread_large_answers_are_bounded() {
    let mut t = Target::start();
    let mut held = Vec::new();
    for _ in 0..100 {
        let mut raw = t.client();
        let s = raw.session();
        let req = Request {
            call: Some(Call::GenerateRandom(wire::GenerateRandom {
                session: s,
                length: 1 << 20,
            })),
            caller_cpu: 0,
            caller_polls: false,
        };
        raw.send_frame(&req.encode_to_vec()).expect("send");
        held.push(raw);
    }
    std::thread::sleep(Duration::from_millis(500));
    let peak = t.peak_rss_kib();
    println!("hostile frames: 100 unread 1 MiB answers, sidecar peak RSS {peak} KiB");
    assert!(peak < super::support::MAX_RSS_KIB, "peak RSS {peak} KiB");
    t.assert_still_serves("unread large answers");
    // Past the write deadline the stuck answers are dropped.
    std::thread::sleep(Duration::from_secs(6));
    let mut closed = 0;
    for raw in held.iter_mut().take(10) {
        let mut b = vec![0u8; 2 << 20];
        let _ = raw.stream.set_read_timeout(Some(Duration::from_millis(200)));
        loop {
            match std::io::Read::read(&mut raw.stream, &mut b) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        if raw.closed_within(Duration::from_millis(100)) {
            closed += 1;
        }
    }
    assert!(
        closed > 0,
        "a connection that does not read its answer is kept past the write deadline"
    );
}
