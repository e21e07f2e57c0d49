//! Each shim process is one PKCS#11 application to the sidecar (DESIGN.md
//! point 11): it sees only its own sessions, session objects and login
//! state, and whatever it leaves open goes away when its connection ends.
//!
//! Every test starts one sidecar and several application processes (this
//! test binary again, in a role); the parent drives them over stdin/stdout
//! and asserts on what they report.

use std::time::Duration;

use cryptoki_sys::*;
use hsmbridge_conformance::apps::{self, App, Checks};
use hsmbridge_conformance::calls::{Api, AttrReq, RO, RW};
use hsmbridge_conformance::names;
use hsmbridge_conformance::process::role;
use hsmbridge_conformance::setup;
use hsmbridge_conformance::sidecar::Sidecar;
use hsmbridge_conformance::softhsm::{SO_PIN, USER_PIN};
use hsmbridge_conformance::template::Template;

/// How long a session left behind may take to disappear.
const CLEANUP: Duration = Duration::from_secs(2);

fn data_object(label: &str) -> Template {
    Template::new()
        .ulong(CKA_CLASS, CKO_DATA)
        .bool(CKA_TOKEN, false)
        .text(CKA_LABEL, label)
}

fn state(api: &mut Api, s: CK_SESSION_HANDLE) -> String {
    match api.session_info(s) {
        (CKR_OK, Some(info)) => format!("{:#x}", info.state),
        (rv, _) => names::rv(rv),
    }
}

/// Runs `role_fn` in a child, or the parent's part.
fn dispatch(parent: fn(), roles: &[(&str, fn())]) {
    match role() {
        None => parent(),
        Some(r) => match roles.iter().find(|(name, _)| *name == r) {
            Some((_, f)) => f(),
            None => panic!("unknown role {r}"),
        },
    }
}

/// Parses "key=value" words of an app message.
fn field<'a>(msg: &'a str, key: &str) -> &'a str {
    msg.split_whitespace()
        .find_map(|w| w.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
        .unwrap_or_else(|| panic!("no {key}= in {msg:?}"))
}

// ---------------------------------------------------------------------------
// Sessions and session objects are private.

#[test]
fn sessions_and_session_objects_are_private() {
    dispatch(
        private_parent,
        &[("owner", private_owner), ("intruder", private_intruder)],
    );
}

fn private_parent() {
    let sidecar = Sidecar::start();
    let mut owner = App::spawn(&sidecar, "owner");
    let ready = owner.expect("ready");
    let mut intruder = App::spawn(&sidecar, "intruder");
    intruder.send(&format!("probe {ready}"));
    let seen = intruder.expect("probed");
    owner.send("check");
    let after = owner.expect("checked");
    let mut c = Checks::new();
    c.eq(
        field(&seen, "info"),
        "CKR_SESSION_HANDLE_INVALID",
        "C_GetSessionInfo on another app's session handle",
    );
    c.eq(
        field(&seen, "close"),
        "CKR_SESSION_HANDLE_INVALID",
        "C_CloseSession on another app's session handle",
    );
    c.eq(
        field(&seen, "object"),
        "CKR_OBJECT_HANDLE_INVALID",
        "C_GetAttributeValue on another app's session object",
    );
    c.eq(
        field(&seen, "found"),
        "0",
        "C_FindObjects listing another app's session objects (count)",
    );
    c.eq(
        field(&seen, "state"),
        &format!("{:#x}", CKS_RW_PUBLIC_SESSION),
        "new session state while another app is logged in",
    );
    c.eq(field(&seen, "closeall"), "CKR_OK", "C_CloseAllSessions");
    c.eq(
        field(&after, "state"),
        &format!("{:#x}", CKS_RW_USER_FUNCTIONS),
        "owner's session state after the intruder's C_CloseAllSessions",
    );
    c.eq(
        field(&after, "object"),
        "CKR_OK",
        "owner's session object after the intruder's C_CloseAllSessions",
    );
    c.done(&format!("intruder: {seen}; owner: {after}"));
    intruder.finish();
    owner.finish();
}

fn private_owner() {
    let mut api = apps::load_shim();
    let ready = setup::logged_in(&mut api);
    let o = api.must_create(ready.session, &data_object("owner's secret"));
    apps::say(format!("ready s={} o={} slot={}", ready.session, o, ready.slot));
    while let Some(cmd) = apps::command() {
        if cmd == "check" {
            let st = state(&mut api, ready.session);
            let (rv, _) = api.get_attributes(ready.session, o, &[AttrReq::Len(CKA_LABEL)]);
            apps::say(format!("checked state={st} object={}", names::rv(rv)));
        }
    }
    api.finalize();
}

fn private_intruder() {
    let mut api = apps::load_shim();
    let slot = setup::init(&mut api);
    let cmd = apps::command().expect("a probe command");
    let num = |key: &str| {
        field(&cmd, key)
            .parse::<CK_ULONG>()
            .unwrap_or_else(|e| panic!("{key} in {cmd:?}: {e}"))
    };
    let (theirs, object) = (num("s"), num("o"));
    // Before opening a session of its own, so no handle of ours can collide.
    let (info, _) = api.session_info(theirs);
    let close = api.close_session(theirs);
    let mine = api.must_open_session(slot, RW);
    let st = state(&mut api, mine);
    let (object_rv, _) = api.get_attributes(mine, object, &[AttrReq::Len(CKA_LABEL)]);
    let found = api
        .find_all(mine, &Template::new().text(CKA_LABEL, "owner's secret"), 10)
        .len();
    let closeall = api.close_all_sessions(slot);
    apps::say(format!(
        "probed info={} close={} object={} found={found} state={st} closeall={}",
        names::rv(info),
        names::rv(close),
        names::rv(object_rv),
        names::rv(closeall)
    ));
    while apps::command().is_some() {}
    api.finalize();
}

// ---------------------------------------------------------------------------
// Login state is per application.

#[test]
fn login_state_is_per_application() {
    dispatch(login_parent, &[("first", login_first), ("second", login_second)]);
}

fn login_parent() {
    let sidecar = Sidecar::start();
    let mut first = App::spawn(&sidecar, "first");
    first.expect("logged-in");
    let mut second = App::spawn(&sidecar, "second");
    let seen = second.expect("report");
    first.send("check");
    let after = first.expect("checked");
    let mut c = Checks::new();
    c.eq(
        field(&seen, "state"),
        &format!("{:#x}", CKS_RW_PUBLIC_SESSION),
        "second app's session state while the first is logged in",
    );
    // Not checked: what a not-logged-in app may do with private objects
    // while another app of the pod has the backend logged in. The backend
    // has one login for the sidecar, so it allows it (README, "Limits").
    c.eq(
        field(&seen, "logout"),
        "CKR_USER_NOT_LOGGED_IN",
        "C_Logout of an app that never logged in",
    );
    c.eq(
        field(&seen, "wrong"),
        "CKR_PIN_INCORRECT",
        "second app's C_Login with a wrong PIN",
    );
    c.eq(
        field(&seen, "login"),
        "CKR_OK",
        "second app's C_Login with the right PIN",
    );
    c.eq(
        field(&seen, "after"),
        &format!("{:#x}", CKS_RW_USER_FUNCTIONS),
        "second app's state after its login",
    );
    c.eq(field(&seen, "logout2"), "CKR_OK", "second app's C_Logout");
    c.eq(
        field(&after, "state"),
        &format!("{:#x}", CKS_RW_USER_FUNCTIONS),
        "first app's state after the second logged out",
    );
    c.eq(
        field(&after, "private"),
        "CKR_OK",
        "first app creating a private object after the second logged out",
    );
    c.done(&format!("second: {seen}; first: {after}"));
    second.finish();
    first.finish();
}

fn login_first() {
    let mut api = apps::load_shim();
    let ready = setup::logged_in(&mut api);
    apps::say("logged-in");
    while let Some(cmd) = apps::command() {
        if cmd == "check" {
            let st = state(&mut api, ready.session);
            let (rv, _) = api.create_object(ready.session, &data_object("private").bool(CKA_PRIVATE, true));
            apps::say(format!("checked state={st} private={}", names::rv(rv)));
        }
    }
    api.finalize();
}

fn login_second() {
    let mut api = apps::load_shim();
    let slot = setup::init(&mut api);
    let s = api.must_open_session(slot, RW);
    let st = state(&mut api, s);
    let (private, _) = api.create_object(s, &data_object("private").bool(CKA_PRIVATE, true));
    let logout = api.logout(s);
    let wrong = api.login(s, CKU_USER, Some("0000"));
    let login = api.login(s, CKU_USER, Some(USER_PIN));
    let after = state(&mut api, s);
    let logout2 = api.logout(s);
    apps::say(format!(
        "report state={st} private={} logout={} wrong={} login={} after={after} logout2={}",
        names::rv(private),
        names::rv(logout),
        names::rv(wrong),
        names::rv(login),
        names::rv(logout2)
    ));
    while apps::command().is_some() {}
    api.finalize();
}

// ---------------------------------------------------------------------------
// An application that ends with open sessions leaves none behind.
//
// SoftHSM reports ulSessionCount as CK_UNAVAILABLE_INFORMATION, so another
// application observes the backend's sessions through SoftHSM's own rule
// instead: C_Login(CKU_SO) fails with CKR_SESSION_READ_ONLY_EXISTS while any
// read-only session is open on the token, and succeeds once none is left.

#[test]
fn exiting_application_leaves_no_session() {
    dispatch(|| exit_parent(false), &[("holder", holder), ("observer", observer)]);
}

#[test]
fn killed_application_leaves_no_session() {
    dispatch(|| exit_parent(true), &[("holder", holder), ("observer", observer)]);
}

fn exit_parent(kill: bool) {
    let sidecar = Sidecar::start();
    let mut observer = App::spawn(&sidecar, "observer");
    observer.expect("ready");
    observer.send("probe");
    let before = observer.expect("probe");
    assert_eq!(
        before, "CKR_OK",
        "SO login must work while no other application holds a session"
    );
    let mut holder = App::spawn(&sidecar, "holder");
    holder.expect("ready");
    observer.send("probe");
    let during = observer.expect("probe");
    assert_eq!(
        during, "CKR_SESSION_READ_ONLY_EXISTS",
        "the observer cannot see the holder's RO session in the backend, so this test cannot check cleanup"
    );
    if kill {
        holder.kill();
    } else {
        holder.send("exit");
        holder.finish();
    }
    let mut last = String::new();
    let gone = apps::eventually(CLEANUP, || {
        observer.send("probe");
        last = observer.expect("probe");
        last == "CKR_OK"
    });
    assert!(
        gone,
        "the ended application's RO session is still open in the backend after {CLEANUP:?} (SO login: {last})"
    );
    observer.finish();
}

fn holder() {
    let mut api = apps::load_shim();
    let slot = setup::init(&mut api);
    api.must_open_session(slot, RO);
    api.must_open_session(slot, RW);
    api.must_open_session(slot, RO);
    apps::say("ready");
    while let Some(cmd) = apps::command() {
        if cmd == "exit" {
            // No C_CloseSession, no C_Finalize: the process just ends.
            std::process::exit(0);
        }
    }
}

fn observer() {
    let mut api = apps::load_shim();
    let slot = setup::init(&mut api);
    let s = api.must_open_session(slot, RW);
    apps::say("ready");
    while let Some(cmd) = apps::command() {
        if cmd == "probe" {
            let rv = api.login(s, CKU_SO, Some(SO_PIN));
            if rv == CKR_OK {
                api.logout(s);
            }
            apps::say(format!("probe {}", names::rv(rv)));
        }
    }
    api.finalize();
}
