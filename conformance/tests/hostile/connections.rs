//! Hostile connections: more than the cap that never say hello, connections
//! that send a byte at a time, idle ones. A real client must still be served
//! at once, and the sidecar's memory must stay bounded.

use std::time::{Duration, Instant};

use hsmbridge_proto::wire::{self, request::Call};

use super::support::{Raw, Target};

/// More connections than the sidecar's cap (1024).
const HOSTILE: usize = 1100;

fn raise_open_files() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid rlimit for getrlimit to fill and setrlimit to read.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Audit finding 4: 1024 connections that never sent hello filled the cap,
/// and real clients got CKR_DEVICE_ERROR.
#[test]
fn connections_without_hello_do_not_lock_out_a_real_client() {
    raise_open_files();
    let mut t = Target::start();
    let mut hostile = Vec::with_capacity(HOSTILE);
    for i in 0..HOSTILE {
        match Raw::connect(&t.socket) {
            Ok(raw) => hostile.push(raw),
            Err(e) => panic!("hostile connection {i}: {e}"),
        }
    }
    // Some of them trickle bytes of a frame that never completes.
    for raw in hostile.iter_mut().take(20) {
        let _ = raw.send_bytes(&64u32.to_le_bytes()[..2]);
    }
    std::thread::sleep(Duration::from_millis(300));
    let rss = t.rss_kib();
    let start = Instant::now();
    let mut real = Raw::hello(&t.socket).expect("a real client says hello");
    let r = real.call(Call::GetInfo(wire::Empty {})).expect("C_GetInfo");
    let answered = start.elapsed();
    assert_eq!(r.rv, 0, "C_GetInfo");
    println!(
        "hostile connections: a real client's C_GetInfo answered in {:.1} ms with {HOSTILE} hostile connections open; sidecar RSS {rss} KiB",
        answered.as_secs_f64() * 1e3
    );
    // The target is 1 s; a loaded CI machine gets some slack.
    assert!(answered < Duration::from_secs(5), "answered after {answered:?}");
    t.assert_still_serves(&format!("{HOSTILE} connections without hello"));
    // They keep their place no longer than the hello deadline (5 s).
    std::thread::sleep(Duration::from_secs(6));
    let mut still_open = 0;
    for raw in hostile.iter_mut().take(50) {
        if !raw.closed_within(Duration::from_millis(10)) {
            still_open += 1;
        }
    }
    assert_eq!(still_open, 0, "connections without hello outlive the hello deadline");
    drop(hostile);
    t.assert_still_serves("the hostile connections closing");
}

/// An idle connection of an application without sessions is closed after
/// the idle timeout; one holding the application's sessions is kept.
#[test]
fn idle_connections_are_closed_unless_they_hold_sessions() {
    let mut t = Target::start_with(super::support::Options {
        args: &["--idle-timeout-secs", "1"],
        ..Default::default()
    });
    let mut idle = t.client();
    let mut busy = t.client();
    let s = busy.session();
    std::thread::sleep(Duration::from_millis(2500));
    assert!(
        idle.closed_within(Duration::from_millis(500)),
        "an idle connection without sessions stays open"
    );
    let r = busy
        .call(Call::GetSessionInfo(wire::Session { session: s }))
        .expect("the session's connection is kept");
    assert_eq!(r.rv, 0);
    t.assert_still_serves("idle connections");
}
