//! The ring (hsmbridge_proto::ring): a raw client takes the memfd the sidecar sends with its
//! HelloReply and writes into it whatever it likes. The sidecar copies before it parses, bounds
//! every length, closes only that connection, and frees the ring's pages when it ends.

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use cryptoki_sys::*;
use hsmbridge_proto::frame::DOORBELL;
use hsmbridge_proto::ring::{check_sealed, recv_with_fd, Ring, Slot, ON_SOCKET, RING_BYTES, SLOT};
use hsmbridge_proto::wire::{self, request::Call, response, Request, Response};
use prost::Message;

use hsmbridge_conformance::softhsm::USER_PIN;

use super::support::{Options, Raw, Target};

/// The sidecar polls (so makes rings) wherever it runs.
const SPIN: Options = Options {
    pin: USER_PIN,
    spy_log: None,
    args: &["--spin-us", "200"],
};

/// A raw client with the connection's ring.
struct RingClient {
    raw: Raw,
    ring: Ring,
    seq: u32,
}

impl RingClient {
    fn hello(t: &Target) -> RingClient {
        let mut raw = Raw::connect(&t.socket).expect("connect");
        let hello = Request {
            call: Some(Call::Hello(wire::Hello {
                protocol_version: 1,
                ring: true,
                ..wire::Hello::default()
            })),
            caller_cpu: 0,
            caller_polls: false,
        };
        raw.send_frame(&hello.encode_to_vec()).expect("hello");
        let (reply, fd) = recv_reply(&raw);
        let Some(response::Result::Hello(h)) = reply.result else {
            panic!("not a hello reply: {reply:?}")
        };
        assert_eq!(h.ring_bytes as usize, RING_BYTES, "a ring comes with the reply");
        let fd = fd.expect("the ring's memfd comes with the reply");
        assert_eq!(check_sealed(fd.as_fd()), Ok(()), "sealed: this client cannot shrink it");
        let ring = Ring::map(fd.as_fd()).expect("map");
        RingClient { raw, ring, seq: 0 }
    }

    /// Puts `body` in the request slot (however long it claims to be) and announces it.
    fn post_raw(&mut self, body: &[u8], len: u32) {
        self.seq = self.seq.wrapping_add(1);
        self.ring.write(Slot::Request, body);
        self.ring.req_len().store(len, Ordering::SeqCst);
        self.ring.req_seq().store(self.seq, Ordering::SeqCst);
        if self.ring.sidecar_sleeps().load(Ordering::SeqCst) != 0 {
            let _ = self.raw.stream.write_all(&DOORBELL);
        }
    }

    fn post(&mut self, call: Call) {
        let body = Request {
            call: Some(call),
            caller_cpu: 0,
            caller_polls: true,
        }
        .encode_to_vec();
        self.post_raw(&body, body.len() as u32);
    }

    /// The answer to the last request: from the ring, or (announced there) from the socket.
    fn answer(&mut self) -> Response {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.ring.ans_seq().load(Ordering::SeqCst) != self.seq {
            assert!(Instant::now() < deadline, "no answer in the ring");
            std::thread::sleep(Duration::from_micros(200));
        }
        let len = self.ring.ans_len().load(Ordering::SeqCst);
        if len == ON_SOCKET {
            return read_frame_skipping_doorbells(&mut self.raw);
        }
        assert!(len as usize <= SLOT, "answer length {len}");
        let mut body = vec![0; len as usize];
        self.ring.read(Slot::Answer, &mut body);
        Response::decode(body.as_slice()).expect("answer decodes")
    }

    fn call(&mut self, call: Call) -> Response {
        self.post(call);
        self.answer()
    }
}

/// Reads the HelloReply with the descriptor that comes with it.
fn recv_reply(raw: &Raw) -> (Response, Option<OwnedFd>) {
    let mut got = Vec::new();
    let mut fd = None;
    let mut chunk = [0u8; 512];
    loop {
        let r = recv_with_fd(raw.stream.as_fd(), &mut chunk).expect("recv");
        assert!(r.n > 0, "closed before the reply");
        fd = fd.or(r.fd);
        got.extend_from_slice(&chunk[..r.n]);
        if got.len() >= 4 && got.len() - 4 >= u32::from_le_bytes([got[0], got[1], got[2], got[3]]) as usize {
            break;
        }
    }
    (Response::decode(&got[4..]).expect("reply decodes"), fd)
}

fn read_frame_skipping_doorbells(raw: &mut Raw) -> Response {
    loop {
        let mut header = [0u8; 4];
        raw.stream.read_exact(&mut header).expect("frame header");
        if header == DOORBELL {
            continue;
        }
        let mut body = vec![0; u32::from_le_bytes(header) as usize];
        raw.stream.read_exact(&mut body).expect("frame body");
        return Response::decode(body.as_slice()).expect("frame decodes");
    }
}

fn random(session: u64, length: u64) -> Call {
    Call::GenerateRandom(wire::GenerateRandom { session, length })
}

fn output_len(r: &Response) -> usize {
    match &r.result {
        Some(response::Result::Output(o)) => o.data.len(),
        other => panic!("no output: rv {:#x} {other:?}", r.rv),
    }
}

fn open_session(c: &mut RingClient) -> u64 {
    let slots = c.call(Call::GetSlotList(wire::GetSlotList {
        token_present: true,
        capacity: Some(8),
        length_null: false,
    }));
    let Some(response::Result::Ulongs(s)) = slots.result else {
        panic!("slot list: {slots:?}")
    };
    let r = c.call(Call::OpenSession(wire::OpenSession {
        slot: s.values[0],
        flags: (CKF_SERIAL_SESSION | CKF_RW_SESSION) as u64,
    }));
    match r.result {
        Some(response::Result::Ulong(h)) => h,
        other => panic!("open session: rv {:#x} {other:?}", r.rv),
    }
}

#[test]
fn calls_through_the_ring_are_answered_there_and_its_pages_are_freed_at_the_end() {
    let mut t = Target::start_with(SPIN);
    let mut c = RingClient::hello(&t);
    let session = open_session(&mut c);
    for _ in 0..100 {
        let r = c.call(random(session, 32));
        assert_eq!((r.rv, output_len(&r)), (CKR_OK as u64, 32));
        assert!(
            c.ring.ans_len().load(Ordering::SeqCst) as usize <= SLOT,
            "answered in the ring"
        );
    }
    // An answer larger than the slot is announced in the ring and comes on the socket.
    let r = c.call(random(session, 3 * SLOT as u64));
    assert_eq!((r.rv, output_len(&r)), (CKR_OK as u64, 3 * SLOT));
    assert_eq!(c.ring.ans_len().load(Ordering::SeqCst), ON_SOCKET);
    // And the ring goes on working after it.
    let r = c.call(random(session, 16));
    assert_eq!(output_len(&r), 16);
    // The connection ends; this client keeps the memfd mapped: the sidecar freed its pages.
    let ring = c.ring;
    drop(c.raw);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut answer = [0u8; 16];
    loop {
        ring.read(Slot::Answer, &mut answer);
        if answer == [0; 16] && ring.ans_seq().load(Ordering::SeqCst) == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the ring still holds the last answer");
        std::thread::sleep(Duration::from_millis(20));
    }
    t.assert_still_serves("a connection through the ring");
}

#[test]
fn hostile_ring_requests_close_only_their_own_connection() {
    let mut t = Target::start_with(SPIN);
    let mut bystander = RingClient::hello(&t);
    let session = open_session(&mut bystander);
    let attacks: [(&str, Vec<u8>, u32); 3] = [
        ("a length past the slot", vec![0x0a; 64], SLOT as u32 + 1),
        ("a length of u32::MAX - 1", vec![0x0a; 64], u32::MAX - 1),
        ("bytes that are no request", vec![0xff; 300], 300),
    ];
    for (what, body, len) in attacks {
        let mut c = RingClient::hello(&t);
        c.post_raw(&body, len);
        assert!(
            c.raw.closed_within(Duration::from_secs(3)),
            "{what}: connection not closed"
        );
        let r = bystander.call(random(session, 32));
        assert_eq!(output_len(&r), 32, "{what}: the other connection goes on");
    }
    // Announced as on the socket, and no frame follows: closed once the frame deadline passes.
    let mut c = RingClient::hello(&t);
    c.post_raw(&[], ON_SOCKET);
    assert!(
        c.raw.closed_within(Duration::from_secs(8)),
        "a frame announced but never sent"
    );
    // A request rewritten while the sidecar may be copying it: whatever it reads, it answers or
    // closes; it neither crashes nor hangs.
    let mut c = RingClient::hello(&t);
    let body = Request {
        call: Some(random(session, 32)),
        caller_cpu: 0,
        caller_polls: true,
    }
    .encode_to_vec();
    for i in 0..2000u32 {
        c.post_raw(&body, body.len() as u32);
        c.ring.write(Slot::Request, &i.to_le_bytes().repeat(16));
    }
    let r = bystander.call(random(session, 32));
    assert_eq!(output_len(&r), 32, "after a rewritten ring");
    t.assert_still_serves("hostile ring requests");
}

#[test]
fn a_flood_of_doorbells_costs_the_others_nothing() {
    let mut t = Target::start_with(SPIN);
    let mut bystander = RingClient::hello(&t);
    let session = open_session(&mut bystander);
    let flood = RingClient::hello(&t);
    let mut stream = flood.raw.stream.try_clone().expect("clone");
    let flooder = std::thread::spawn(move || {
        let bells = DOORBELL.repeat(16 << 10);
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut sent = 0usize;
        while Instant::now() < deadline {
            match stream.write(&bells) {
                Ok(n) => sent += n,
                Err(_) => break,
            }
        }
        sent
    });
    let t0 = Instant::now();
    let mut calls = 0;
    while t0.elapsed() < Duration::from_secs(2) {
        let r = bystander.call(random(session, 32));
        assert_eq!(output_len(&r), 32);
        calls += 1;
    }
    let sent = flooder.join().expect("flooder");
    eprintln!("{calls} calls while {} MiB of doorbells came", sent >> 20);
    assert!(calls > 100, "only {calls} calls in 2 s during the flood");
    // The flooding connection itself still works: doorbells are no requests.
    let mut flood = flood;
    let r = flood.call(Call::GetInfo(wire::Empty {}));
    assert_eq!(r.rv, CKR_OK as u64);
    t.assert_still_serves("a doorbell flood");
}
