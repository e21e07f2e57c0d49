//! Cryptographic functions: encrypt, decrypt, digest, sign, verify (and
//! their recover and dual-function forms), key generation, wrapping,
//! derivation.

use cryptoki_sys::*;

use super::{ck, input, Api, Out};
use crate::mechs::{Mech, Use};
use crate::template::Template;

type InitFn = unsafe extern "C" fn(CK_SESSION_HANDLE, *mut CK_MECHANISM, CK_OBJECT_HANDLE) -> CK_RV;
type OutFn = unsafe extern "C" fn(CK_SESSION_HANDLE, *mut u8, CK_ULONG, *mut u8, *mut CK_ULONG) -> CK_RV;
type FinalFn = unsafe extern "C" fn(CK_SESSION_HANDLE, *mut u8, *mut CK_ULONG) -> CK_RV;
type InFn = unsafe extern "C" fn(CK_SESSION_HANDLE, *mut u8, CK_ULONG) -> CK_RV;

impl Api {
    fn op_init(
        &mut self,
        name: &str,
        f: InitFn,
        s: CK_SESSION_HANDLE,
        m: &Mech,
        key: CK_OBJECT_HANDLE,
        usage: Option<Use>,
    ) -> CK_RV {
        let mut ck_mech = m.ck();
        // SAFETY: `f` is an entry of `self`'s loaded module (see `ck!`): every caller passes
        // `ck!(self, …)`; `ck_mech` is a live CK_MECHANISM whose parameter `m` owns.
        let rv = unsafe { f(s, &mut ck_mech, key) };
        self.mark_exercised(rv, m);
        if let Some(u) = usage {
            let random = m.randomized(u) || self.is_random(key);
            self.randomized.insert((s, u), random);
        }
        let key_name = if key == 0 {
            String::new()
        } else {
            format!(", {}", self.t.object(key))
        };
        let call = format!("{name}({}, {}{key_name})", self.t.session(s), m.desc());
        self.line(&call, rv, "")
    }

    fn is_randomized(&self, s: CK_SESSION_HANDLE, u: Use) -> bool {
        self.randomized.get(&(s, u)).copied().unwrap_or(false)
    }

    /// A call with input data and an output buffer.
    fn data_out(
        &mut self,
        name: &str,
        f: OutFn,
        s: CK_SESSION_HANDLE,
        data: &[u8],
        out: Out,
        random: bool,
    ) -> (CK_RV, Vec<u8>) {
        let (p, n) = input(data);
        let label = format!("{name}({}, in={}B)", self.t.session(s), data.len());
        // SAFETY: `f` is an entry of `self`'s loaded module (see `ck!`): every caller passes
        // `ck!(self, …)`; `p` holds the `n` input bytes, `o`/`ol` come from `out_call`.
        self.out_call(&label, out, random, |o, ol| unsafe { f(s, p, n, o, ol) })
    }

    fn final_out(&mut self, name: &str, f: FinalFn, s: CK_SESSION_HANDLE, out: Out, random: bool) -> (CK_RV, Vec<u8>) {
        let label = format!("{name}({})", self.t.session(s));
        // SAFETY: `f` is an entry of `self`'s loaded module (see `ck!`): every caller passes
        // `ck!(self, …)`; `o`/`ol` come from `out_call`.
        self.out_call(&label, out, random, |o, ol| unsafe { f(s, o, ol) })
    }

    fn data_in(&mut self, name: &str, f: InFn, s: CK_SESSION_HANDLE, data: &[u8]) -> CK_RV {
        let (p, n) = input(data);
        // SAFETY: `f` is an entry of `self`'s loaded module (see `ck!`): every caller passes
        // `ck!(self, …)`; `p` holds the `n` input bytes.
        let rv = unsafe { f(s, p, n) };
        let call = format!("{name}({}, in={}B)", self.t.session(s), data.len());
        self.line(&call, rv, "")
    }

    // Encryption.

    pub fn encrypt_init(&mut self, s: CK_SESSION_HANDLE, m: &Mech, key: CK_OBJECT_HANDLE) -> CK_RV {
        self.op_init("C_EncryptInit", ck!(self, C_EncryptInit), s, m, key, Some(Use::Encrypt))
    }
    pub fn encrypt(&mut self, s: CK_SESSION_HANDLE, data: &[u8], out: Out) -> (CK_RV, Vec<u8>) {
        let r = self.is_randomized(s, Use::Encrypt);
        self.data_out("C_Encrypt", ck!(self, C_Encrypt), s, data, out, r)
    }
    pub fn encrypt_update(&mut self, s: CK_SESSION_HANDLE, data: &[u8], out: Out) -> (CK_RV, Vec<u8>) {
        let r = self.is_randomized(s, Use::Encrypt);
        self.data_out("C_EncryptUpdate", ck!(self, C_EncryptUpdate), s, data, out, r)
    }
    pub fn encrypt_final(&mut self, s: CK_SESSION_HANDLE, out: Out) -> (CK_RV, Vec<u8>) {
        let r = self.is_randomized(s, Use::Encrypt);
        self.final_out("C_EncryptFinal", ck!(self, C_EncryptFinal), s, out, r)
    }

    // Decryption: the plaintext is always reproducible.

    pub fn decrypt_init(&mut self, s: CK_SESSION_HANDLE, m: &Mech, key: CK_OBJECT_HANDLE) -> CK_RV {
        self.op_init("C_DecryptInit", ck!(self, C_DecryptInit), s, m, key, None)
    }
    pub fn decrypt(&mut self, s: CK_SESSION_HANDLE, data: &[u8], out: Out) -> (CK_RV, Vec<u8>) {
        self.data_out("C_Decrypt", ck!(self, C_Decrypt), s, data, out, false)
    }
    pub fn decrypt_update(&mut self, s: CK_SESSION_HANDLE, data: &[u8], out: Out) -> (CK_RV, Vec<u8>) {
        self.data_out("C_DecryptUpdate", ck!(self, C_DecryptUpdate), s, data, out, false)
    }
    pub fn decrypt_final(&mut self, s: CK_SESSION_HANDLE, out: Out) -> (CK_RV, Vec<u8>) {
        self.final_out("C_DecryptFinal", ck!(self, C_DecryptFinal), s, out, false)
    }

    // Message digesting.

    pub fn digest_init(&mut self, s: CK_SESSION_HANDLE, m: &Mech) -> CK_RV {
        let mut ck_mech = m.ck();
        // SAFETY: C_DigestInit is an entry of `self`'s loaded module (see `ck!`); `ck_mech` is a
        // live CK_MECHANISM whose parameter `m` owns.
        let rv = unsafe { ck!(self, C_DigestInit)(s, &mut ck_mech) };
        self.mark_exercised(rv, m);
        let call = format!("C_DigestInit({}, {})", self.t.session(s), m.desc());
        self.line(&call, rv, "")
    }
    pub fn digest(&mut self, s: CK_SESSION_HANDLE, data: &[u8], out: Out) -> (CK_RV, Vec<u8>) {
        self.data_out("C_Digest", ck!(self, C_Digest), s, data, out, false)
    }
    pub fn digest_update(&mut self, s: CK_SESSION_HANDLE, data: &[u8]) -> CK_RV {
        self.data_in("C_DigestUpdate", ck!(self, C_DigestUpdate), s, data)
    }
    pub fn digest_key(&mut self, s: CK_SESSION_HANDLE, key: CK_OBJECT_HANDLE) -> CK_RV {
        // SAFETY: C_DigestKey is an entry of `self`'s loaded module (see `ck!`); it takes no
        // pointers.
        let rv = unsafe { ck!(self, C_DigestKey)(s, key) };
        let call = format!("C_DigestKey({}, {})", self.t.session(s), self.t.object(key));
        self.line(&call, rv, "")
    }
    pub fn digest_final(&mut self, s: CK_SESSION_HANDLE, out: Out) -> (CK_RV, Vec<u8>) {
        self.final_out("C_DigestFinal", ck!(self, C_DigestFinal), s, out, false)
    }

    // Signing and MACing.

    pub fn sign_init(&mut self, s: CK_SESSION_HANDLE, m: &Mech, key: CK_OBJECT_HANDLE) -> CK_RV {
        self.op_init("C_SignInit", ck!(self, C_SignInit), s, m, key, Some(Use::Sign))
    }
    pub fn sign(&mut self, s: CK_SESSION_HANDLE, data: &[u8], out: Out) -> (CK_RV, Vec<u8>) {
        let r = self.is_randomized(s, Use::Sign);
        self.data_out("C_Sign", ck!(self, C_Sign), s, data, out, r)
    }
    pub fn sign_update(&mut self, s: CK_SESSION_HANDLE, data: &[u8]) -> CK_RV {
        self.data_in("C_SignUpdate", ck!(self, C_SignUpdate), s, data)
    }
    pub fn sign_final(&mut self, s: CK_SESSION_HANDLE, out: Out) -> (CK_RV, Vec<u8>) {
        let r = self.is_randomized(s, Use::Sign);
        self.final_out("C_SignFinal", ck!(self, C_SignFinal), s, out, r)
    }
    pub fn sign_recover_init(&mut self, s: CK_SESSION_HANDLE, m: &Mech, key: CK_OBJECT_HANDLE) -> CK_RV {
        self.op_init(
            "C_SignRecoverInit",
            ck!(self, C_SignRecoverInit),
            s,
            m,
            key,
            Some(Use::Sign),
        )
    }
    pub fn sign_recover(&mut self, s: CK_SESSION_HANDLE, data: &[u8], out: Out) -> (CK_RV, Vec<u8>) {
        let r = self.is_randomized(s, Use::Sign);
        self.data_out("C_SignRecover", ck!(self, C_SignRecover), s, data, out, r)
    }

    // Verifying signatures and MACs.

    pub fn verify_init(&mut self, s: CK_SESSION_HANDLE, m: &Mech, key: CK_OBJECT_HANDLE) -> CK_RV {
        self.op_init("C_VerifyInit", ck!(self, C_VerifyInit), s, m, key, None)
    }
    pub fn verify(&mut self, s: CK_SESSION_HANDLE, data: &[u8], sig: &[u8]) -> CK_RV {
        let (d, dn) = input(data);
        let (g, gn) = input(sig);
        // SAFETY: C_Verify is an entry of `self`'s loaded module (see `ck!`); `d` holds the `dn`
        // data bytes, `g` the `gn` signature bytes.
        let rv = unsafe { ck!(self, C_Verify)(s, d, dn, g, gn) };
        let call = format!(
            "C_Verify({}, in={}B, sig={}B)",
            self.t.session(s),
            data.len(),
            sig.len()
        );
        self.line(&call, rv, "")
    }
    pub fn verify_update(&mut self, s: CK_SESSION_HANDLE, data: &[u8]) -> CK_RV {
        self.data_in("C_VerifyUpdate", ck!(self, C_VerifyUpdate), s, data)
    }
    pub fn verify_final(&mut self, s: CK_SESSION_HANDLE, sig: &[u8]) -> CK_RV {
        self.data_in("C_VerifyFinal", ck!(self, C_VerifyFinal), s, sig)
    }
    pub fn verify_recover_init(&mut self, s: CK_SESSION_HANDLE, m: &Mech, key: CK_OBJECT_HANDLE) -> CK_RV {
        self.op_init("C_VerifyRecoverInit", ck!(self, C_VerifyRecoverInit), s, m, key, None)
    }
    pub fn verify_recover(&mut self, s: CK_SESSION_HANDLE, sig: &[u8], out: Out) -> (CK_RV, Vec<u8>) {
        self.data_out("C_VerifyRecover", ck!(self, C_VerifyRecover), s, sig, out, false)
    }

    // Dual-function operations.

    pub fn digest_encrypt_update(&mut self, s: CK_SESSION_HANDLE, data: &[u8], out: Out) -> (CK_RV, Vec<u8>) {
        let r = self.is_randomized(s, Use::Encrypt);
        self.data_out(
            "C_DigestEncryptUpdate",
            ck!(self, C_DigestEncryptUpdate),
            s,
            data,
            out,
            r,
        )
    }
    pub fn decrypt_digest_update(&mut self, s: CK_SESSION_HANDLE, data: &[u8], out: Out) -> (CK_RV, Vec<u8>) {
        self.data_out(
            "C_DecryptDigestUpdate",
            ck!(self, C_DecryptDigestUpdate),
            s,
            data,
            out,
            false,
        )
    }
    pub fn sign_encrypt_update(&mut self, s: CK_SESSION_HANDLE, data: &[u8], out: Out) -> (CK_RV, Vec<u8>) {
        let r = self.is_randomized(s, Use::Encrypt);
        self.data_out("C_SignEncryptUpdate", ck!(self, C_SignEncryptUpdate), s, data, out, r)
    }
    pub fn decrypt_verify_update(&mut self, s: CK_SESSION_HANDLE, data: &[u8], out: Out) -> (CK_RV, Vec<u8>) {
        self.data_out(
            "C_DecryptVerifyUpdate",
            ck!(self, C_DecryptVerifyUpdate),
            s,
            data,
            out,
            false,
        )
    }

    // Key management.

    pub fn generate_key(&mut self, s: CK_SESSION_HANDLE, m: &Mech, t: &Template) -> (CK_RV, CK_OBJECT_HANDLE) {
        let mut ck_mech = m.ck();
        let mut h: CK_OBJECT_HANDLE = 0;
        // SAFETY: C_GenerateKey is an entry of `self`'s loaded module (see `ck!`); `ck_mech` is a
        // live mechanism whose parameter `m` owns, `t` holds `t.len()` attributes whose values it
        // owns, `h` is a live, writable handle.
        let rv = unsafe { ck!(self, C_GenerateKey)(s, &mut ck_mech, t.as_ptr(), t.len(), &mut h) };
        self.mark_exercised(rv, m);
        if rv == CKR_OK {
            self.mark_random(h);
        }
        let details = if rv == CKR_OK {
            self.t.new_object(h)
        } else {
            String::new()
        };
        let call = format!("C_GenerateKey({}, {}, [{}])", self.t.session(s), m.desc(), t.describe());
        self.line(&call, rv, &details);
        (rv, h)
    }

    /// Returns (rv, public key, private key).
    pub fn generate_key_pair(
        &mut self,
        s: CK_SESSION_HANDLE,
        m: &Mech,
        public: &Template,
        private: &Template,
    ) -> (CK_RV, CK_OBJECT_HANDLE, CK_OBJECT_HANDLE) {
        let mut ck_mech = m.ck();
        let (mut pubh, mut privh): (CK_OBJECT_HANDLE, CK_OBJECT_HANDLE) = (0, 0);
        // SAFETY: C_GenerateKeyPair is an entry of `self`'s loaded module (see `ck!`); `ck_mech` is
        // a live mechanism whose parameter `m` owns, `public` and `private` hold that many
        // attributes whose values they own, `pubh` and `privh` are live, writable handles.
        let rv = unsafe {
            ck!(self, C_GenerateKeyPair)(
                s,
                &mut ck_mech,
                public.as_ptr(),
                public.len(),
                private.as_ptr(),
                private.len(),
                &mut pubh,
                &mut privh,
            )
        };
        self.mark_exercised(rv, m);
        let details = if rv == CKR_OK {
            self.mark_random(pubh);
            self.mark_random(privh);
            let p = self.t.new_object(pubh);
            format!("{p} {}", self.t.new_object(privh))
        } else {
            String::new()
        };
        let call = format!(
            "C_GenerateKeyPair({}, {}, [{}], [{}])",
            self.t.session(s),
            m.desc(),
            public.describe(),
            private.describe()
        );
        self.line(&call, rv, &details);
        (rv, pubh, privh)
    }

    pub fn wrap_key(
        &mut self,
        s: CK_SESSION_HANDLE,
        m: &Mech,
        wrapping: CK_OBJECT_HANDLE,
        key: CK_OBJECT_HANDLE,
        out: Out,
    ) -> (CK_RV, Vec<u8>) {
        let f = ck!(self, C_WrapKey);
        let label = format!(
            "C_WrapKey({}, {}, {}, {})",
            self.t.session(s),
            m.desc(),
            self.t.object(wrapping),
            self.t.object(key)
        );
        let mut ck_mech = m.ck();
        let random = m.randomized(Use::Wrap) || self.is_random(wrapping) || self.is_random(key);
        // SAFETY: `f` is C_WrapKey, an entry of `self`'s loaded module (see `ck!`); `ck_mech` is a
        // live mechanism whose parameter `m` owns, `o`/`ol` come from `out_call`.
        let (rv, wrapped) = self.out_call(&label, out, random, |o, ol| unsafe {
            f(s, &mut ck_mech, wrapping, key, o, ol)
        });
        self.mark_exercised(rv, m);
        (rv, wrapped)
    }

    pub fn unwrap_key(
        &mut self,
        s: CK_SESSION_HANDLE,
        m: &Mech,
        unwrapping: CK_OBJECT_HANDLE,
        wrapped: &[u8],
        t: &Template,
    ) -> (CK_RV, CK_OBJECT_HANDLE) {
        let mut ck_mech = m.ck();
        let (p, n) = input(wrapped);
        let mut h: CK_OBJECT_HANDLE = 0;
        // SAFETY: C_UnwrapKey is an entry of `self`'s loaded module (see `ck!`); `ck_mech` is a
        // live mechanism whose parameter `m` owns, `p` holds the `n` wrapped bytes, `t` holds
        // `t.len()` attributes whose values it owns, `h` is a live, writable handle.
        let rv = unsafe { ck!(self, C_UnwrapKey)(s, &mut ck_mech, unwrapping, p, n, t.as_ptr(), t.len(), &mut h) };
        self.mark_exercised(rv, m);
        let details = if rv == CKR_OK {
            self.t.new_object(h)
        } else {
            String::new()
        };
        let call = format!(
            "C_UnwrapKey({}, {}, {}, {}B, [{}])",
            self.t.session(s),
            m.desc(),
            self.t.object(unwrapping),
            wrapped.len(),
            t.describe()
        );
        self.line(&call, rv, &details);
        (rv, h)
    }

    pub fn derive_key(
        &mut self,
        s: CK_SESSION_HANDLE,
        m: &Mech,
        base: CK_OBJECT_HANDLE,
        t: &Template,
    ) -> (CK_RV, CK_OBJECT_HANDLE) {
        let mut ck_mech = m.ck();
        let mut h: CK_OBJECT_HANDLE = 0;
        // SAFETY: C_DeriveKey is an entry of `self`'s loaded module (see `ck!`); `ck_mech` is a
        // live mechanism whose parameter `m` owns, `t` holds `t.len()` attributes whose values it
        // owns, `h` is a live, writable handle.
        let rv = unsafe { ck!(self, C_DeriveKey)(s, &mut ck_mech, base, t.as_ptr(), t.len(), &mut h) };
        self.mark_exercised(rv, m);
        if rv == CKR_OK && self.is_random(base) {
            self.mark_random(h);
        }
        let details = if rv == CKR_OK {
            self.t.new_object(h)
        } else {
            String::new()
        };
        let call = format!(
            "C_DeriveKey({}, {}, {}, [{}])",
            self.t.session(s),
            m.desc(),
            self.t.object(base),
            t.describe()
        );
        self.line(&call, rv, &details);
        (rv, h)
    }
}
