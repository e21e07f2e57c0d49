use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use super::cpus::has_quota;
use super::*;

#[test]
fn the_setting_parses_into_a_mode() {
    assert_eq!(Mode::parse(None), Ok(Mode::Auto));
    assert_eq!(Mode::parse(Some("0")), Ok(Mode::Off));
    assert_eq!(Mode::parse(Some("50")), Ok(Mode::Forced(Duration::from_micros(50))));
    assert!(Mode::parse(Some("-1")).is_err());
    assert!(Mode::parse(Some("fast")).is_err());
    assert!(Mode::parse(Some("10001")).unwrap_err().contains("10000"));
    assert_eq!(Mode::Off.cap(), None);
    assert_eq!(Mode::Auto.cap(), Some(DEFAULT_CAP));
}

#[test]
fn auto_polls_only_with_spare_cpus_and_no_quota() {
    let two = Cpus {
        usable: 2,
        quota: false,
    };
    let callers = Callers::new();
    assert_eq!(callers.enter(&two), 1);
    assert!(Mode::Auto.allows(&two, &callers));
    assert!(!Mode::Auto.allows(
        &Cpus {
            usable: 1,
            quota: false
        },
        &callers
    ));
    assert!(!Mode::Auto.allows(&Cpus { usable: 8, quota: true }, &callers));
    assert!(Mode::Forced(DEFAULT_CAP).allows(&Cpus { usable: 1, quota: true }, &callers));
    assert!(!Mode::Off.allows(&two, &callers));
    // A second busy caller on two CPUs: no polling, and not at once again when it is gone.
    assert_eq!(callers.enter(&two), 2);
    callers.leave();
    assert!(!Mode::Auto.allows(&two, &callers), "contended a moment ago");
    assert!(Mode::Auto.allows(
        &Cpus {
            usable: 2,
            quota: false
        },
        &Callers::new()
    ));
    std::thread::sleep(CONTENDED_HOLD + Duration::from_millis(5));
    assert!(Mode::Auto.allows(&two, &callers), "quiet again after the hold");
    callers.leave();
}

#[test]
fn the_bound_follows_recent_waits_and_stops_for_long_calls() {
    let cap = Duration::from_micros(200);
    let mut a = Adaptive::new(cap);
    assert_eq!(
        a.budget(),
        Duration::from_micros(160),
        "starts at a quarter of the cap, thrice, plus slack"
    );
    for _ in 0..64 {
        a.record(Duration::from_micros(10), Outcome::Hit);
    }
    let short = a.budget();
    assert!(
        short >= Duration::from_micros(35) && short <= Duration::from_micros(45),
        "{short:?}"
    );
    // A network HSM's calls: a few of them and it blocks at once.
    for _ in 0..16 {
        a.record(Duration::from_millis(5), Outcome::Blocked);
    }
    assert_eq!(a.budget(), Duration::ZERO);
    // One very long wait does not stop polling for long: samples count at most twice the cap.
    for _ in 0..64 {
        a.record(Duration::from_micros(10), Outcome::Hit);
    }
    a.record(Duration::from_secs(10), Outcome::Blocked);
    assert!(a.budget() > Duration::ZERO);
    let mut recovered = 0;
    for i in 1..=32 {
        a.record(Duration::from_millis(5), Outcome::Blocked);
        a.record(Duration::from_micros(1), Outcome::Blocked);
        if a.budget() > Duration::ZERO {
            recovered = i;
        }
    }
    assert!(recovered > 0, "calls alternating long and short still poll at times");
    assert_eq!(Adaptive::new(Duration::ZERO).budget(), Duration::ZERO);
}

/// Busy CPUs: every poll runs out and the answer comes just after it (measured with `yes` on one
/// of two CPUs: 215 µs per random call polling, 13 µs blocking). Polling must back off.
#[test]
fn polls_that_run_out_back_off_until_one_is_answered() {
    let cap = Duration::from_micros(200);
    let mut a = Adaptive::new(cap);
    let (mut polled, mut calls) = (0, 0);
    for _ in 0..4000 {
        calls += 1;
        let budget = a.budget();
        if budget.is_zero() {
            a.record(Duration::from_micros(13), Outcome::Blocked);
        } else {
            polled += 1;
            a.record(budget + Duration::from_micros(15), Outcome::Miss);
        }
    }
    assert!(
        polled * MAX_BACKOFF as usize <= calls * 2,
        "{polled} polls in {calls} calls"
    );
    assert!(polled >= 8, "it keeps trying now and then: {polled}");
    // Once a poll is answered, it polls every call again.
    while a.budget().is_zero() {
        a.record(Duration::from_micros(13), Outcome::Blocked);
    }
    a.record(Duration::from_micros(13), Outcome::Hit);
    for _ in 0..100 {
        assert!(a.budget() > Duration::ZERO);
        a.record(Duration::from_micros(13), Outcome::Hit);
    }
}

#[test]
fn polling_returns_when_data_arrives_and_gives_up_at_the_budget() {
    let (a, mut b) = UnixStream::pair().expect("socketpair");
    let t0 = Instant::now();
    assert!(!wait_readable(&a, Duration::from_millis(2)));
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(2) && waited < Duration::from_secs(1),
        "{waited:?}"
    );
    assert!(!wait_readable(&a, Duration::ZERO));
    b.write_all(b"x").expect("write");
    assert!(wait_readable(&a, Duration::from_secs(5)));
    // A peer that went away counts as ready: the read that follows sees the end.
    let (c, d) = UnixStream::pair().expect("socketpair");
    drop(d);
    let t0 = Instant::now();
    assert!(wait_readable(&c, Duration::from_secs(5)));
    assert!(t0.elapsed() < Duration::from_secs(1));
}

#[test]
fn a_quota_on_the_cgroup_or_an_ancestor_is_found() {
    let files = |found: &[(&str, &str)]| {
        let found: Vec<(String, String)> = found.iter().map(|(p, v)| (p.to_string(), v.to_string())).collect();
        move |path: &str| {
            found
                .iter()
                .find(|(p, _)| p == path)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        }
    };
    let v2 = "0::/kubepods/pod1/ctr\n";
    let v2_root = ("/sys/fs/cgroup/cgroup.controllers", "cpuset cpu io memory pids\n");
    assert!(!has_quota(v2, files(&[v2_root])));
    assert!(has_quota(v2, files(&[])), "no cgroup file system: cannot tell");
    assert!(!has_quota(
        v2,
        files(&[v2_root, ("/sys/fs/cgroup/kubepods/pod1/ctr/cpu.max", "max 100000\n")])
    ));
    assert!(has_quota(
        v2,
        files(&[v2_root, ("/sys/fs/cgroup/kubepods/pod1/ctr/cpu.max", "50000 100000\n")])
    ));
    assert!(has_quota(
        v2,
        files(&[v2_root, ("/sys/fs/cgroup/kubepods/cpu.max", "200000 100000\n")])
    ));
    // Inside the container's cgroup namespace.
    assert!(has_quota(
        "0::/\n",
        files(&[v2_root, ("/sys/fs/cgroup/cpu.max", "100000 100000\n")])
    ));
    assert!(!has_quota("0::/\n", files(&[v2_root])));
    let v1 = "12:memory:/x\n4:cpu,cpuacct:/kubepods/pod1\n";
    let v1_root = ("/sys/fs/cgroup/cpu/cpu.cfs_period_us", "100000\n");
    assert!(has_quota(
        v1,
        files(&[
            v1_root,
            ("/sys/fs/cgroup/cpu/kubepods/pod1/cpu.cfs_quota_us", "50000\n")
        ])
    ));
    assert!(!has_quota(
        v1,
        files(&[v1_root, ("/sys/fs/cgroup/cpu/kubepods/pod1/cpu.cfs_quota_us", "-1\n")])
    ));
    // Cannot tell: counts as a quota.
    assert!(has_quota("0::/../../etc\n", files(&[v2_root])));
    assert!(has_quota("garbage\n", files(&[v2_root])));
    assert!(has_quota("", files(&[v2_root])));
    // Hybrid (v1 controllers, the unified hierarchy at /sys/fs/cgroup/unified): this machine.
    let hybrid = "4:memory:/x\n1:cpu:/\n0::/\n";
    assert!(!has_quota(
        hybrid,
        files(&[v1_root, ("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "-1\n")])
    ));
    assert!(has_quota(
        hybrid,
        files(&[v1_root, ("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "20000\n")])
    ));
    let unified = ("/sys/fs/cgroup/unified/cgroup.controllers", "cpu\n");
    assert!(has_quota(
        hybrid,
        files(&[unified, ("/sys/fs/cgroup/unified/cpu.max", "1000 100000\n")])
    ));
}

#[test]
fn this_process_has_at_least_one_cpu() {
    let cpus = Cpus::of_this_process();
    eprintln!("{cpus:?}");
    assert!(cpus.usable >= 1);
}

#[test]
fn sleep_polls_on_one_cpu_and_while_contended_and_reads_otherwise() {
    let two = Cpus {
        usable: 2,
        quota: false,
    };
    let one = Cpus {
        usable: 1,
        quota: false,
    };
    let callers = Callers::new();
    callers.enter(&two);
    assert_eq!(Sleep::choose(&two, &callers), Sleep::Read);
    assert_eq!(Sleep::choose(&Cpus { usable: 2, quota: true }, &callers), Sleep::Read);
    assert_eq!(Sleep::choose(&one, &Callers::new()), Sleep::Poll);
    callers.enter(&two);
    callers.leave();
    assert_eq!(Sleep::choose(&two, &callers), Sleep::Poll, "contended a moment ago");
    callers.leave();
}

#[test]
fn sleeping_ends_when_data_arrives_or_at_the_timeout() {
    let (a, mut b) = UnixStream::pair().expect("socketpair");
    let t0 = Instant::now();
    assert!(!sleep_until_readable(&a, Some(Duration::from_millis(20))));
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(20) && waited < Duration::from_secs(1),
        "{waited:?}"
    );
    // Under a millisecond still sleeps (rounded up), and runs out.
    assert!(!sleep_until_readable(&a, Some(Duration::from_micros(300))));
    // A timeout past what an Instant can hold is no limit, not a panic.
    let (e, mut f) = UnixStream::pair().expect("socketpair");
    f.write_all(b"x").expect("write");
    assert!(sleep_until_readable(&e, Some(Duration::MAX)));
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        b.write_all(b"x").expect("write");
        b
    });
    assert!(sleep_until_readable(&a, None));
    let b = writer.join().expect("writer");
    drop(b);
    let t0 = Instant::now();
    assert!(
        sleep_until_readable(&a, Some(Duration::from_secs(5))),
        "data, then the end"
    );
    let (c, d) = UnixStream::pair().expect("socketpair");
    drop(d);
    assert!(
        sleep_until_readable(&c, Some(Duration::from_secs(5))),
        "a peer gone is ready"
    );
    assert!(t0.elapsed() < Duration::from_secs(1));
}

/// The calling thread's voluntary context switches so far.
fn voluntary_switches() -> u64 {
    let status = std::fs::read_to_string("/proc/thread-self/status").expect("/proc/thread-self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("voluntary_ctxt_switches")
}

/// What `Sleep::Poll` is for: a blocking read on a Unix stream socket is also woken when the peer
/// reads what this end sent (a context switch for nothing where the CPUs are busy);
/// `sleep_until_readable` sleeps once and is woken once, by the answer.
#[test]
fn a_sleeper_is_not_woken_when_the_peer_reads_what_it_sent() {
    use std::io::Read;
    let (mut a, mut b) = UnixStream::pair().expect("socketpair");
    let sleeper = std::thread::spawn(move || {
        a.write_all(&[1u8; 64]).expect("request");
        let before = voluntary_switches();
        let ready = sleep_until_readable(&a, Some(Duration::from_secs(10)));
        let switches = voluntary_switches() - before;
        (ready, switches)
    });
    // The request is read while the sleeper sleeps, the answer written well after.
    std::thread::sleep(Duration::from_millis(50));
    let mut request = [0u8; 64];
    b.read_exact(&mut request).expect("read the request");
    std::thread::sleep(Duration::from_millis(50));
    b.write_all(b"answer").expect("answer");
    let (ready, switches) = sleeper.join().expect("sleeper");
    assert!(ready);
    // 0 if the sleeper only got to sleep once the answer was there (a loaded machine).
    assert!(switches <= 1, "woken only by the answer, not {switches} times");
}
