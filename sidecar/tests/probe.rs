//! `hsm-sidecar probe` against `hsm-sidecar serve --health-addr` on a SoftHSM token in a temp
//! dir (SERVING), on a SoftHSM without an initialized token (NOT_SERVING), and against nothing
//! or a silent listener (unreachable, within the timeout).

mod common;

use std::fs;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{code, sidecar, stderr, temp_dir};

fn module() -> PathBuf {
    std::env::var_os("HSMBRIDGE_SOFTHSM_MODULE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(hsmbridge_contract::SOFTHSM_MODULE_PATH))
}

fn free_addr() -> String {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    format!("127.0.0.1:{port}")
}

/// `hsm-sidecar serve --health-addr` on its own SoftHSM configuration; killed on drop.
struct Served {
    dir: tempfile::TempDir,
    child: Option<Child>,
    addr: String,
}

impl Served {
    /// With one initialized token when `token`, else with SoftHSM's free slot only.
    fn start(token: bool) -> Self {
        let dir = temp_dir();
        let tokens = dir.path().join("tokens");
        fs::create_dir(&tokens).expect("tokens dir");
        let conf = dir.path().join("softhsm2.conf");
        let text = format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        );
        fs::write(&conf, text).expect("softhsm2.conf");
        if token {
            let out = Command::new("softhsm2-util")
                .args([
                    "--init-token",
                    "--free",
                    "--label",
                    "probe",
                    "--so-pin",
                    "5678",
                    "--pin",
                    "1234",
                ])
                .env("SOFTHSM2_CONF", &conf)
                .output()
                .expect("running softhsm2-util (is softhsm2 installed?)");
            assert!(out.status.success(), "softhsm2-util --init-token: {}", stderr(&out));
        }
        let addr = free_addr();
        let log = fs::File::create(dir.path().join("sidecar.log")).expect("log file");
        let child = Command::new(sidecar())
            .arg("serve")
            .arg("--module")
            .arg(module())
            .arg("--socket")
            .arg(dir.path().join("pkcs11.sock"))
            .args(["--health-addr", &addr])
            .env("SOFTHSM2_CONF", &conf)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawning hsm-sidecar serve");
        Served {
            dir,
            child: Some(child),
            addr,
        }
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("sidecar.log")).unwrap_or_default()
    }

    /// Probes until the exit code is `want` (the server needs a moment to listen).
    fn wait_for(&mut self, want: i32) -> Output {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out = probe(&self.addr, &[]);
            if code(&out) == want {
                return out;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("hsm-sidecar serve exited ({status}):\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "probe never exited {want}; last: {}\nsidecar log:\n{}",
                stdout(&out),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.kill();
    }
}

fn probe(addr: &str, extra: &[&str]) -> Output {
    Command::new(sidecar())
        .args(["probe", "--addr", addr])
        .args(extra)
        .output()
        .expect("running hsm-sidecar probe")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Exactly one line.
fn line(out: &Output) -> String {
    let text = stdout(out);
    assert_eq!(text.lines().count(), 1, "one line: {text:?}");
    text.trim_end().to_owned()
}

#[test]
fn a_serving_sidecar_passes_and_a_killed_one_fails() {
    let mut served = Served::start(true);
    let out = served.wait_for(0);
    assert_eq!(line(&out), format!("hsm-sidecar at {} is SERVING", served.addr));

    served.kill();
    let out = probe(&served.addr, &[]);
    assert_eq!(code(&out), 1, "{}", stdout(&out));
    let text = line(&out);
    assert!(
        text.starts_with(&format!(
            "hsm-sidecar at {} is unreachable: cannot connect: ",
            served.addr
        )),
        "{text}"
    );
}

#[test]
fn a_sidecar_without_a_usable_token_is_not_serving() {
    let mut served = Served::start(false);
    let out = served.wait_for(1);
    // Before the first check the server may be listening but not answer yet.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut text = line(&out);
    while !text.contains(" is NOT_SERVING: ") {
        assert!(Instant::now() < deadline, "never NOT_SERVING: {text}\n{}", served.log());
        std::thread::sleep(Duration::from_millis(100));
        let out = probe(&served.addr, &[]);
        assert_eq!(code(&out), 1, "{}", stdout(&out));
        text = line(&out);
    }
    assert!(
        text.starts_with(&format!("hsm-sidecar at {} is NOT_SERVING: ", served.addr)),
        "{text}"
    );
}

#[test]
fn nothing_listening_fails_fast() {
    let addr = free_addr();
    let start = Instant::now();
    let out = probe(&addr, &[]);
    assert_eq!(code(&out), 1, "{}", stdout(&out));
    assert!(line(&out).starts_with(&format!("hsm-sidecar at {addr} is unreachable: ")));
    assert!(start.elapsed() < Duration::from_secs(3), "{:?}", start.elapsed());
}

#[test]
fn a_silent_server_fails_within_the_timeout() {
    // Accepts connections (the kernel's backlog does) and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let start = Instant::now();
    let out = probe(&addr, &["--timeout-secs", "1"]);
    let took = start.elapsed();
    assert_eq!(code(&out), 1, "{}", stdout(&out));
    assert_eq!(
        line(&out),
        format!("hsm-sidecar at {addr} is unreachable: no answer within 1 s")
    );
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(3),
        "{took:?}"
    );
    drop(listener);
}

#[test]
fn bad_arguments_are_usage_errors() {
    for args in [
        &["probe", "--addr", "127.0.0.1"][..],
        &["probe", "--addr", "127.0.0.1:1", "--timeout-secs", "0"],
        &["probe"],
    ] {
        let out = Command::new(sidecar())
            .args(args)
            .output()
            .expect("running hsm-sidecar");
        assert_eq!(code(&out), 2, "{args:?}: {}", stderr(&out));
    }
}
