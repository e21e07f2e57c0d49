//! What an audit line records, and which PKCS#11 calls make one.

use std::sync::Arc;
use std::time::SystemTime;

use cryptoki_sys::{CK_MECHANISM_TYPE, CK_RV};
use hsmbridge_proto::wire::request::Call;

use super::KeyName;

/// The kind of event (the line's `event` field).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A private or secret key was used: sign, MAC, decrypt, encrypt, unwrap, derive, wrap.
    KeyUse,
    /// An object was made (create, copy, generate, unwrap, derive).
    ObjectCreated,
    ObjectDestroyed,
    /// C_SetAttributeValue (a key's label, usage flags, ...).
    ObjectModified,
    /// An application's C_Login / C_Logout.
    Login,
    Logout,
    /// C_InitToken, C_InitPIN, C_SetPIN.
    PinAdmin,
    /// A request refused before the module saw it (a limit, a malformed frame).
    Refused,
    /// An application's C_Login that logged the backend in with the PIN the sidecar holds
    /// (managed mode): after a rotation, the line that shows the new credential in use.
    BackendLogin,
    /// The credential file changed and was picked up.
    CredentialChanged,
    /// The module was re-initialized (the provider configuration changed, or the token was lost).
    ModuleReinitialized,
    /// Events dropped while the queue was full (`detail` says how many).
    Dropped,
}

impl Kind {
    /// Events a flood of cheap, failing calls could make: dropped first when the queue fills
    /// (`Audit::record`), so that they cannot push key uses out.
    pub fn is_low_priority(self) -> bool {
        matches!(self, Kind::Refused | Kind::Login | Kind::Logout)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::KeyUse => "key_use",
            Kind::ObjectCreated => "object_created",
            Kind::ObjectDestroyed => "object_destroyed",
            Kind::ObjectModified => "object_modified",
            Kind::Login => "login",
            Kind::Logout => "logout",
            Kind::PinAdmin => "pin_admin",
            Kind::Refused => "refused",
            Kind::BackendLogin => "backend_login",
            Kind::CredentialChanged => "credential_changed",
            Kind::ModuleReinitialized => "module_reinitialized",
            Kind::Dropped => "audit_dropped",
        }
    }
}

/// Who called: what the kernel says about the peer (`SO_PEERCRED`), and what its Hello claims.
/// Across containers the peer's PID is not visible (0): the claimed PID and container name
/// (the webhook sets `HSMBRIDGE_CONTAINER`) are the app's own word, the UID and GID are not.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    /// The peer's PID in the sidecar's PID namespace; 0 when it is not visible there.
    pub peer_pid: u32,
    pub claimed_pid: u32,
    pub claimed_container: String,
}

impl Caller {
    /// The longest claimed container name kept (a DNS label).
    pub const MAX_CONTAINER: usize = 63;

    /// A container name as claimed: kept only if it is a DNS label, else `"(invalid)"`.
    pub fn container_claim(name: &str) -> String {
        let label = !name.is_empty()
            && name.len() <= Self::MAX_CONTAINER
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if label {
            name.to_owned()
        } else if name.is_empty() {
            String::new()
        } else {
            "(invalid)".to_owned()
        }
    }
}

/// One event, as queued for the writer.
#[derive(Debug)]
pub struct Event {
    pub time: SystemTime,
    pub kind: Kind,
    /// The application (the sidecar's number for one shim process); `None` for the sidecar's own.
    pub app: Option<u64>,
    pub caller: Option<Arc<Caller>>,
    pub function: &'static str,
    pub mechanism: Option<CK_MECHANISM_TYPE>,
    /// The key used (key use), or the object destroyed.
    pub key: Option<Arc<KeyName>>,
    /// The object made (creation), or the key wrapped (C_WrapKey).
    pub object: Option<Arc<KeyName>>,
    pub result: CK_RV,
    /// A few words more (a refusal's reason, a generation); never secret.
    pub detail: Option<String>,
}

/// What makes a call an event, read from the request before it runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subject {
    pub kind: Kind,
    pub session: u64,
    /// The key used, or the object destroyed: named before the call.
    pub key: Option<u64>,
    /// C_WrapKey's wrapped key.
    pub other: Option<u64>,
    pub mechanism: Option<CK_MECHANISM_TYPE>,
    /// The call also makes objects (named from its answer).
    pub creates: bool,
    /// C_Login's user type.
    pub user_type: Option<u64>,
}

/// The event `call` is, if any.
pub fn subject(call: &Call) -> Option<Subject> {
    use Call::*;
    let base = |kind, session| Subject {
        kind,
        session,
        key: None,
        other: None,
        mechanism: None,
        creates: false,
        user_type: None,
    };
    let mech = |m: &Option<hsmbridge_proto::wire::Mechanism>| m.as_ref().map(|m| m.r#type as CK_MECHANISM_TYPE);
    Some(match call {
        SignInit(c) | SignRecoverInit(c) | DecryptInit(c) | EncryptInit(c) | VerifyInit(c) | VerifyRecoverInit(c) => {
            Subject {
                key: Some(c.key),
                mechanism: mech(&c.mechanism),
                ..base(Kind::KeyUse, c.session)
            }
        }
        DigestKey(c) => Subject {
            key: Some(c.object),
            ..base(Kind::KeyUse, c.session)
        },
        UnwrapKey(c) => Subject {
            key: Some(c.unwrapping_key),
            mechanism: mech(&c.mechanism),
            creates: true,
            ..base(Kind::KeyUse, c.session)
        },
        DeriveKey(c) => Subject {
            key: Some(c.base_key),
            mechanism: mech(&c.mechanism),
            creates: true,
            ..base(Kind::KeyUse, c.session)
        },
        WrapKey(c) => Subject {
            key: Some(c.wrapping_key),
            other: Some(c.key),
            mechanism: mech(&c.mechanism),
            ..base(Kind::KeyUse, c.session)
        },
        CreateObject(c) => Subject {
            creates: true,
            ..base(Kind::ObjectCreated, c.session)
        },
        CopyObject(c) => Subject {
            key: Some(c.object),
            creates: true,
            ..base(Kind::ObjectCreated, c.session)
        },
        GenerateKey(c) => Subject {
            mechanism: mech(&c.mechanism),
            creates: true,
            ..base(Kind::ObjectCreated, c.session)
        },
        GenerateKeyPair(c) => Subject {
            mechanism: mech(&c.mechanism),
            creates: true,
            ..base(Kind::ObjectCreated, c.session)
        },
        DestroyObject(c) => Subject {
            key: Some(c.object),
            ..base(Kind::ObjectDestroyed, c.session)
        },
        SetAttributeValue(c) => Subject {
            key: Some(c.object),
            ..base(Kind::ObjectModified, c.session)
        },
        Login(c) => Subject {
            user_type: Some(c.user_type),
            ..base(Kind::Login, c.session)
        },
        Logout(c) => base(Kind::Logout, c.session),
        InitPin(c) => base(Kind::PinAdmin, c.session),
        SetPin(c) => base(Kind::PinAdmin, c.session),
        InitToken(_) => base(Kind::PinAdmin, 0),
        _ => return None,
    })
}
