//! `bench __setup` (a child process, SOFTHSM2_CONF set): initializes the
//! benchmark token on SoftHSM and generates the keys every backend uses, as
//! token objects so the p11-kit server and the sidecar see them too.

use cryptoki_sys::*;
use hsmbridge_conformance::module::Module;

use crate::p11::{self, call, check, Template};
use crate::workload::{AES_KEY, EC_KEY, RSA_KEY};

/// DER OID of prime256v1 (secp256r1), the CKA_EC_PARAMS of a P-256 key.
const P256_OID: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

pub fn run(module: &str, label: &str, so_pin: &str, user_pin: &str) -> Result<(), String> {
    let m = Module::load(module)?;
    let f = m.fl();

    p11::initialize(f)?;
    p11::init_token(f, label, so_pin, user_pin)?;
    // SoftHSM gives an initialized token a new slot id; a fresh C_Initialize sees it.
    p11::finalize(f)?;
    p11::initialize(f)?;

    let slot = p11::find_slot(f, label)?;
    let s = p11::open_session(f, slot, true)?;
    p11::login(f, s, CKU_USER, user_pin)?;
    let result = generate_keys(f, s);
    p11::close_session(f, s);
    p11::finalize(f)?;
    result
}

fn generate_keys(f: p11::Fl, s: CK_SESSION_HANDLE) -> Result<(), String> {
    let private = |label: &str| {
        Template::default()
            .bool(CKA_TOKEN, true)
            .bool(CKA_PRIVATE, true)
            .bool(CKA_SENSITIVE, true)
            .bool(CKA_SIGN, true)
            .bytes(CKA_LABEL, label.as_bytes())
    };
    let public = |label: &str| {
        Template::default()
            .bool(CKA_TOKEN, true)
            .bool(CKA_VERIFY, true)
            .bytes(CKA_LABEL, label.as_bytes())
    };

    let ec_pub = public(EC_KEY).bytes(CKA_EC_PARAMS, &P256_OID);
    key_pair(f, s, CKM_EC_KEY_PAIR_GEN, ec_pub, private(EC_KEY))?;

    let rsa_pub = public(RSA_KEY)
        .ulong(CKA_MODULUS_BITS, 2048)
        .bytes(CKA_PUBLIC_EXPONENT, &[0x01, 0x00, 0x01]);
    key_pair(f, s, CKM_RSA_PKCS_KEY_PAIR_GEN, rsa_pub, private(RSA_KEY))?;

    let mut aes = Template::default()
        .bool(CKA_TOKEN, true)
        .bool(CKA_PRIVATE, true)
        .bool(CKA_SENSITIVE, true)
        .bool(CKA_ENCRYPT, true)
        .ulong(CKA_VALUE_LEN, 32)
        .bytes(CKA_LABEL, AES_KEY.as_bytes());
    let mut m = CK_MECHANISM {
        mechanism: CKM_AES_KEY_GEN,
        pParameter: std::ptr::null_mut(),
        ulParameterLen: 0,
    };
    let mut key = CK_INVALID_HANDLE;
    // SAFETY: `f` is a loaded module's list (see `p11::Fl`); `m` is a live mechanism without parameter,
    // `aes` holds `aes.len()` attributes whose values it owns, `key` is a live,
    // writable handle.
    check("C_GenerateKey(AES)", unsafe {
        call!(f, C_GenerateKey, s, &mut m, aes.as_mut_ptr(), aes.len(), &mut key)
    })
}

fn key_pair(
    f: p11::Fl,
    s: CK_SESSION_HANDLE,
    kind: CK_MECHANISM_TYPE,
    mut public: Template,
    mut private: Template,
) -> Result<(), String> {
    let mut m = CK_MECHANISM {
        mechanism: kind,
        pParameter: std::ptr::null_mut(),
        ulParameterLen: 0,
    };
    let (mut pubk, mut privk) = (CK_INVALID_HANDLE, CK_INVALID_HANDLE);
    check(
        &format!("C_GenerateKeyPair({kind:#x})"),
        // SAFETY: `f` is a loaded module's list (see `p11::Fl`); `m` is a live mechanism without
        // parameter, `public` and `private` hold that many attributes whose
        // values they own, `pubk` and `privk` are live, writable handles.
        unsafe {
            call!(
                f,
                C_GenerateKeyPair,
                s,
                &mut m,
                public.as_mut_ptr(),
                public.len(),
                private.as_mut_ptr(),
                private.len(),
                &mut pubk,
                &mut privk
            )
        },
    )
}
