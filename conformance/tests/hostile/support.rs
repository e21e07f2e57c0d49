//! A sidecar to attack, a raw client of its wire protocol, and the checks
//! every hostile test ends with: the sidecar is alive, its memory is
//! bounded, and a real PKCS#11 client (pkcs11-tool through the shim) still
//! signs.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use cryptoki_sys::*;
use hsmbridge_conformance::paths::{shim_lib, sidecar_bin, softhsm_module};
use hsmbridge_conformance::softhsm::{SoftHsm, USER_PIN};
use hsmbridge_proto::wire::{self, request::Call, response::Result as Body, Request, Response};
use prost::Message;

/// The RSS the sidecar must stay under through every hostile test.
pub const MAX_RSS_KIB: u64 = 64 << 10;

/// OpenSC's logging PKCS#11 module (package opensc-pkcs11).
pub const SPY: &str = "/usr/lib/x86_64-linux-gnu/pkcs11-spy.so";

/// A managed-mode sidecar (it holds the PIN, as in a pod) on its own token.
pub struct Target {
    pub hsm: SoftHsm,
    pub socket: PathBuf,
    pub pin_file: PathBuf,
    log: PathBuf,
    child: Child,
}

pub struct Options<'a> {
    pub pin: &'a str,
    /// Put pkcs11-spy between the sidecar and SoftHSM, logging to this file.
    pub spy_log: Option<&'a Path>,
    pub args: &'a [&'a str],
}

impl Default for Options<'_> {
    fn default() -> Self {
        Options {
            pin: USER_PIN,
            spy_log: None,
            args: &[],
        }
    }
}

/// The sidecar binary under attack: this workspace's, or another one given
/// in `HSMBRIDGE_HOSTILE_SIDECAR` (to run the suite against an older build).
fn sidecar_under_test() -> PathBuf {
    std::env::var_os("HSMBRIDGE_HOSTILE_SIDECAR")
        .map(PathBuf::from)
        .unwrap_or_else(sidecar_bin)
}

impl Target {
    pub fn start() -> Self {
        Self::start_with(Options::default())
    }

    pub fn start_with(o: Options) -> Self {
        let hsm = SoftHsm::new();
        let socket = hsm.dir().join("pkcs11.sock");
        let pin_file = hsm.dir().join("user.pin");
        std::fs::write(&pin_file, o.pin).expect("writing the PIN file");
        let log = hsm.dir().join("sidecar.log");
        let module = if o.spy_log.is_some() {
            PathBuf::from(SPY)
        } else {
            softhsm_module()
        };
        let mut cmd = Command::new(sidecar_under_test());
        cmd.arg("serve")
            .arg("--module")
            .arg(&module)
            .arg("--socket")
            .arg(&socket)
            .arg("--pin-file")
            .arg(&pin_file);
        cmd.args(o.args);
        cmd.env("SOFTHSM2_CONF", hsm.conf()).env(
            "RUST_LOG",
            std::env::var("HSMBRIDGE_HOSTILE_LOG").unwrap_or_else(|_| "info".into()),
        );
        if let Some(spy) = o.spy_log {
            cmd.env("PKCS11SPY", softhsm_module()).env("PKCS11SPY_OUTPUT", spy);
        }
        let stderr = std::fs::File::create(&log).expect("sidecar log");
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(stderr);
        let child = cmd.spawn().expect("spawning hsm-sidecar");
        let t = Target {
            hsm,
            socket,
            pin_file,
            log,
            child,
        };
        let start = Instant::now();
        while UnixStream::connect(&t.socket).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "sidecar did not start:\n{}",
                t.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        t
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// How the sidecar ended, if it did.
    pub fn exit_status(&mut self) -> String {
        match self.child.try_wait() {
            Ok(Some(s)) => s.to_string(),
            Ok(None) => "running".into(),
            Err(e) => e.to_string(),
        }
    }

    /// Resident memory of the sidecar, KiB.
    pub fn rss_kib(&self) -> u64 {
        self.status_kib("VmRSS:")
    }

    /// The most resident memory the sidecar ever had (VmHWM), KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        self.status_kib("VmHWM:")
    }

    fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// The check after every attack: alive, RSS bounded, and pkcs11-tool
    /// through the shim generates a key and signs with it (no PIN given).
    pub fn assert_still_serves(&mut self, after: &str) {
        assert!(self.alive(), "the sidecar died after {after}:\n{}", self.log());
        let rss = self.rss_kib();
        assert!(
            rss < MAX_RSS_KIB,
            "sidecar RSS {rss} KiB after {after} (bound {MAX_RSS_KIB} KiB)"
        );
        let peak = self.peak_rss_kib();
        assert!(
            peak < MAX_RSS_KIB,
            "sidecar peak RSS {peak} KiB during {after} (bound {MAX_RSS_KIB} KiB)"
        );
        let id = format!("{:04x}", rand_u16());
        let gen = self.tool(&["--login", "--keypairgen", "--key-type", "EC:prime256v1", "--id", &id]);
        assert!(
            gen.status.success(),
            "pkcs11-tool --keypairgen after {after}:\n{}",
            text(&gen)
        );
        let data = self.hsm.dir().join("data");
        std::fs::write(&data, [0x5a; 32]).expect("data");
        let sig = self.tool(&[
            "--login",
            "--sign",
            "--mechanism",
            "ECDSA",
            "--id",
            &id,
            "--input-file",
            data.to_str().unwrap_or_default(),
        ]);
        assert!(
            sig.status.success(),
            "pkcs11-tool --sign after {after}:\n{}",
            text(&sig)
        );
        assert!(
            self.alive(),
            "the sidecar died after signing, after {after}:\n{}",
            self.log()
        );
    }

    pub fn tool(&self, args: &[&str]) -> Output {
        Command::new("pkcs11-tool")
            .arg("--module")
            .arg(shim_lib())
            .args(args)
            .env("HSMBRIDGE_SOCKET", &self.socket)
            .env("HSMBRIDGE_CONNECT_WAIT_MS", "2000")
            .env("HSMBRIDGE_TIMEOUT_MS", "10000")
            .output()
            .expect("running pkcs11-tool")
    }

    pub fn client(&self) -> Raw {
        Raw::hello(&self.socket).unwrap_or_else(|e| {
            let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
            let threads = status
                .lines()
                .find(|l| l.starts_with("Threads:"))
                .unwrap_or_default()
                .to_string();
            panic!("hello: {e} (sidecar {threads})\n{}", self.log())
        })
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub fn rand_u16() -> u16 {
    let mut b = [0u8; 2];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = f.read_exact(&mut b);
    }
    u16::from_le_bytes(b)
}

/// A client of the wire protocol that sends whatever it is told to.
pub struct Raw {
    pub stream: UnixStream,
}

impl Raw {
    pub fn connect(socket: &Path) -> std::io::Result<Raw> {
        let stream = UnixStream::connect(socket)?;
        stream.set_read_timeout(Some(Duration::from_secs(20)))?;
        Ok(Raw { stream })
    }

    pub fn hello(socket: &Path) -> std::io::Result<Raw> {
        let mut raw = Raw::connect(socket)?;
        let r = raw.call(Call::Hello(wire::Hello {
            protocol_version: 1,
            join_token: Vec::new(),
            ..wire::Hello::default()
        }))?;
        if r.rv != 0 {
            return Err(std::io::Error::other(format!("hello rv {:#x}", r.rv)));
        }
        Ok(raw)
    }

    pub fn send_bytes(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    pub fn send_frame(&mut self, body: &[u8]) -> std::io::Result<()> {
        let mut v = (body.len() as u32).to_le_bytes().to_vec();
        v.extend_from_slice(body);
        self.stream.write_all(&v)
    }

    pub fn read_response(&mut self) -> std::io::Result<Response> {
        let mut header = [0u8; 4];
        self.stream.read_exact(&mut header)?;
        let len = u32::from_le_bytes(header) as usize;
        let mut body = vec![0; len];
        self.stream.read_exact(&mut body)?;
        Response::decode(body.as_slice()).map_err(std::io::Error::other)
    }

    pub fn call(&mut self, call: Call) -> std::io::Result<Response> {
        self.send_frame(
            &Request {
                call: Some(call),
                caller_cpu: 0,
                caller_polls: false,
            }
            .encode_to_vec(),
        )?;
        self.read_response()
    }

    /// Whether the sidecar closed this connection within `wait` (no data
    /// is expected on it).
    pub fn closed_within(&mut self, wait: Duration) -> bool {
        let _ = self.stream.set_read_timeout(Some(wait));
        let mut b = [0u8; 64];
        match self.stream.read(&mut b) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
        }
    }

    pub fn rv(&mut self, call: Call) -> CK_RV {
        self.call(call).map(|r| r.rv as CK_RV).unwrap_or(CKR_DEVICE_REMOVED)
    }

    /// A logged-in read-write session on the first slot with a token.
    pub fn session(&mut self) -> u64 {
        let session = self.session_without_login();
        let rv = self.rv(Call::Login(wire::Login {
            session,
            user_type: CKU_USER as u64,
            pin: None,
        }));
        assert!(
            rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN,
            "managed login: {rv:#x}"
        );
        session
    }

    /// A read-write session on the first slot with a token.
    pub fn session_without_login(&mut self) -> u64 {
        let r = self.call(Call::GetSlotList(wire::GetSlotList {
            token_present: true,
            capacity: Some(8),
            length_null: false,
        }));
        let slot = match r.ok().and_then(|r| r.result) {
            Some(Body::Ulongs(u)) => u.values.first().copied().unwrap_or(0),
            other => panic!("C_GetSlotList: {other:?}"),
        };
        let r = self.call(Call::OpenSession(wire::OpenSession {
            slot,
            flags: (CKF_SERIAL_SESSION | CKF_RW_SESSION) as u64,
        }));
        match r.ok().and_then(|r| r.result) {
            Some(Body::Ulong(s)) => s,
            other => panic!("C_OpenSession: {other:?}"),
        }
    }

    /// A session object made by the backend: an AES-256 key usable for
    /// everything an AES key can do.
    pub fn aes_key(&mut self, session: u64) -> u64 {
        let t = template(&[
            (CKA_VALUE_LEN, &32u64.to_ne_bytes()),
            (CKA_ENCRYPT, &[1]),
            (CKA_DECRYPT, &[1]),
            (CKA_DERIVE, &[1]),
            (CKA_SIGN, &[1]),
            (CKA_WRAP, &[1]),
            (CKA_EXTRACTABLE, &[1]),
        ]);
        let r = self.call(Call::GenerateKey(wire::GenerateKey {
            session,
            mechanism: Some(wire::Mechanism {
                r#type: CKM_AES_KEY_GEN as u64,
                parameter: None,
            }),
            template: Some(t),
        }));
        match r.ok().and_then(|r| r.result) {
            Some(Body::Ulong(k)) => k,
            other => panic!("C_GenerateKey: {other:?}"),
        }
    }
}

/// A value template of (type, bytes) pairs.
pub fn template(attrs: &[(CK_ATTRIBUTE_TYPE, &[u8])]) -> wire::Template {
    wire::Template {
        attributes: attrs
            .iter()
            .map(|(t, v)| wire::Attribute {
                r#type: *t as u64,
                value: Some(wire::attribute::Value::Bytes(v.to_vec())),
                capacity: None,
                length: v.len() as u64,
            })
            .collect(),
    }
}

/// A small seeded generator (xorshift64*), so a failing random run can be replayed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    pub fn bytes_upto(&mut self, max: u64) -> Vec<u8> {
        let n = self.below(max) as usize;
        self.bytes(n)
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// The seed for a random test: `HSMBRIDGE_HOSTILE_SEED`, or from the clock.
pub fn seed() -> u64 {
    std::env::var("HSMBRIDGE_HOSTILE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        })
}
