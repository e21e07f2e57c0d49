//! Cryptographic operations: encrypt, decrypt, digest, sign, verify (single-
//! and multi-part, with recovery), and the dual-function updates. They come
//! in four shapes, so each shape is written once as a macro. A macro use
//! reads `unsafe fn C_x => Call`: it defines an `unsafe extern "C" fn` whose
//! `# Safety` is the PKCS#11 contract for its arguments, and whose unsafe
//! blocks (with their SAFETY lines) are in the macro below.

use hsmbridge_proto::mechanism;

use crate::prelude::*;

/// `C_xInit(session, mechanism, key)`.
macro_rules! init_fn {
    (unsafe fn $name:ident => $call:ident) => {
        #[doc = concat!("`", stringify!($name), "(session, mechanism, key)`.")]
        ///
        /// # Safety
        /// PKCS#11 caller contract: `mech` is NULL or points to a readable
        /// `CK_MECHANISM` whose parameter memory is valid as the PKCS#11
        /// specification describes for its mechanism type.
        #[no_mangle]
        pub unsafe extern "C" fn $name(
            session: CK_SESSION_HANDLE,
            mech: *mut CK_MECHANISM,
            key: CK_OBJECT_HANDLE,
        ) -> CK_RV {
            guard(|| {
                let mut l = lease()?;
                let session = l.session(session)?;
                let key = l.key(key)?;
                // SAFETY: `mech` is NULL (CKR_ARGUMENTS_BAD) or a valid
                // CK_MECHANISM with valid parameter memory, by this
                // function's contract, which is what `from_c` requires.
                let mechanism = Some(unsafe { mechanism::from_c(mech) }?);
                check(
                    l.call(Call::$call(wire::OperationInit {
                        session,
                        mechanism,
                        key,
                    }))?
                    .rv,
                )
            })
        }
    };
}

/// `C_x(session, in, in_len, out, out_len)`: single-part and updating
/// operations with output.
macro_rules! data_output_fn {
    (unsafe fn $name:ident => $call:ident) => {
        #[doc = concat!("`", stringify!($name), "(session, in, in_len, out, out_len)`.")]
        ///
        /// # Safety
        /// PKCS#11 caller contract: `data` is NULL or valid for reads of
        /// `data_len` bytes; `out_len` is NULL or valid for reads and writes
        /// of a `CK_ULONG`; `out` is NULL or valid for writes of `*out_len`
        /// bytes.
        #[no_mangle]
        pub unsafe extern "C" fn $name(
            session: CK_SESSION_HANDLE,
            data: *mut CK_BYTE,
            data_len: CK_ULONG,
            out: *mut CK_BYTE,
            out_len: *mut CK_ULONG,
        ) -> CK_RV {
            guard(|| {
                let mut l = lease()?;
                let session = l.session(session)?;
                // SAFETY: `data` is NULL or valid for `data_len` bytes, by
                // this function's contract.
                let data = unsafe { input(data, data_len) }?;
                // SAFETY: `out_len` is NULL or a readable CK_ULONG, by this
                // function's contract.
                let (capacity, length_null) = unsafe { out_spec(out, out_len) };
                let r = l.call(Call::$call(wire::DataOutput {
                    session,
                    data,
                    capacity,
                    length_null,
                }))?;
                // SAFETY: `out`/`out_len` are this call's output arguments,
                // whose capacity `out_spec` read above: `out_len` is NULL or
                // writable, `out` NULL or valid for `capacity` bytes.
                unsafe { write_output(r, out, out_len, capacity) }
            })
        }
    };
}

/// `C_xFinal(session, out, out_len)`.
macro_rules! final_fn {
    (unsafe fn $name:ident => $call:ident) => {
        #[doc = concat!("`", stringify!($name), "(session, out, out_len)`.")]
        ///
        /// # Safety
        /// PKCS#11 caller contract: `out_len` is NULL or valid for reads and
        /// writes of a `CK_ULONG`; `out` is NULL or valid for writes of
        /// `*out_len` bytes.
        #[no_mangle]
        pub unsafe extern "C" fn $name(session: CK_SESSION_HANDLE, out: *mut CK_BYTE, out_len: *mut CK_ULONG) -> CK_RV {
            guard(|| {
                let mut l = lease()?;
                let session = l.session(session)?;
                // SAFETY: `out_len` is NULL or a readable CK_ULONG, by this
                // function's contract.
                let (capacity, length_null) = unsafe { out_spec(out, out_len) };
                let r = l.call(Call::$call(wire::SessionOutput {
                    session,
                    capacity,
                    length_null,
                }))?;
                // SAFETY: `out`/`out_len` are this call's output arguments,
                // whose capacity `out_spec` read above: `out_len` is NULL or
                // writable, `out` NULL or valid for `capacity` bytes.
                unsafe { write_output(r, out, out_len, capacity) }
            })
        }
    };
}

/// `C_xUpdate(session, in, in_len)` and `C_VerifyFinal(session, sig, len)`.
macro_rules! data_fn {
    (unsafe fn $name:ident => $call:ident) => {
        #[doc = concat!("`", stringify!($name), "(session, in, in_len)`.")]
        ///
        /// # Safety
        /// PKCS#11 caller contract: `data` is NULL or valid for reads of
        /// `data_len` bytes.
        #[no_mangle]
        pub unsafe extern "C" fn $name(session: CK_SESSION_HANDLE, data: *mut CK_BYTE, data_len: CK_ULONG) -> CK_RV {
            guard(|| {
                let mut l = lease()?;
                let session = l.session(session)?;
                // SAFETY: `data` is NULL or valid for `data_len` bytes, by
                // this function's contract.
                let data = unsafe { input(data, data_len) }?;
                check(l.call(Call::$call(wire::SessionBytes { session, data }))?.rv)
            })
        }
    };
}

init_fn!(unsafe fn C_EncryptInit => EncryptInit);
data_output_fn!(unsafe fn C_Encrypt => Encrypt);
data_output_fn!(unsafe fn C_EncryptUpdate => EncryptUpdate);
final_fn!(unsafe fn C_EncryptFinal => EncryptFinal);

init_fn!(unsafe fn C_DecryptInit => DecryptInit);
data_output_fn!(unsafe fn C_Decrypt => Decrypt);
data_output_fn!(unsafe fn C_DecryptUpdate => DecryptUpdate);
final_fn!(unsafe fn C_DecryptFinal => DecryptFinal);

data_output_fn!(unsafe fn C_Digest => Digest);
data_fn!(unsafe fn C_DigestUpdate => DigestUpdate);
final_fn!(unsafe fn C_DigestFinal => DigestFinal);

init_fn!(unsafe fn C_SignInit => SignInit);
data_output_fn!(unsafe fn C_Sign => Sign);
data_fn!(unsafe fn C_SignUpdate => SignUpdate);
final_fn!(unsafe fn C_SignFinal => SignFinal);
init_fn!(unsafe fn C_SignRecoverInit => SignRecoverInit);
data_output_fn!(unsafe fn C_SignRecover => SignRecover);

init_fn!(unsafe fn C_VerifyInit => VerifyInit);
data_fn!(unsafe fn C_VerifyUpdate => VerifyUpdate);
data_fn!(unsafe fn C_VerifyFinal => VerifyFinal);
init_fn!(unsafe fn C_VerifyRecoverInit => VerifyRecoverInit);
data_output_fn!(unsafe fn C_VerifyRecover => VerifyRecover);

data_output_fn!(unsafe fn C_DigestEncryptUpdate => DigestEncryptUpdate);
data_output_fn!(unsafe fn C_DecryptDigestUpdate => DecryptDigestUpdate);
data_output_fn!(unsafe fn C_SignEncryptUpdate => SignEncryptUpdate);
data_output_fn!(unsafe fn C_DecryptVerifyUpdate => DecryptVerifyUpdate);

/// # Safety
/// PKCS#11 caller contract: `mech` is NULL or points to a readable
/// `CK_MECHANISM` whose parameter memory is valid for its mechanism type.
#[no_mangle]
pub unsafe extern "C" fn C_DigestInit(session: CK_SESSION_HANDLE, mech: *mut CK_MECHANISM) -> CK_RV {
    guard(|| {
        let mut l = lease()?;
        let session = l.session(session)?;
        // SAFETY: `mech` is NULL (CKR_ARGUMENTS_BAD) or a valid CK_MECHANISM
        // with valid parameter memory, by this function's contract.
        let mechanism = Some(unsafe { mechanism::from_c(mech) }?);
        check(
            l.call(Call::DigestInit(wire::OperationInit {
                session,
                mechanism,
                key: 0,
            }))?
            .rv,
        )
    })
}

#[no_mangle]
pub extern "C" fn C_DigestKey(session: CK_SESSION_HANDLE, key: CK_OBJECT_HANDLE) -> CK_RV {
    guard(|| {
        let mut l = lease()?;
        let session = l.session(session)?;
        let object = l.key(key)?;
        check(l.call(Call::DigestKey(wire::Object { session, object }))?.rv)
    })
}

/// # Safety
/// PKCS#11 caller contract: `data` is NULL or valid for reads of `data_len`
/// bytes, `signature` NULL or valid for reads of `signature_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn C_Verify(
    session: CK_SESSION_HANDLE,
    data: *mut CK_BYTE,
    data_len: CK_ULONG,
    signature: *mut CK_BYTE,
    signature_len: CK_ULONG,
) -> CK_RV {
    guard(|| {
        let mut l = lease()?;
        let session = l.session(session)?;
        // SAFETY: `data` is NULL or valid for `data_len` bytes, by this
        // function's contract.
        let data = unsafe { input(data, data_len) }?;
        // SAFETY: `signature` is NULL or valid for `signature_len` bytes, by
        // this function's contract.
        let signature = unsafe { input(signature, signature_len) }?;
        check(
            l.call(Call::Verify(wire::Verify {
                session,
                data,
                signature,
            }))?
            .rv,
        )
    })
}
