//! Cryptographic operations: encrypt, decrypt, digest, sign, verify (single-
//! and multi-part, with recovery), and the dual-function updates. They come
//! in four shapes, so each shape is written once as a macro.

use hsmbridge_proto::mechanism;

use crate::prelude::*;

/// `C_xInit(session, mechanism, key)`.
macro_rules! init_fn {
    ($name:ident, $call:ident) => {
        #[no_mangle]
        pub extern "C" fn $name(session: CK_SESSION_HANDLE, mech: *mut CK_MECHANISM, key: CK_OBJECT_HANDLE) -> CK_RV {
            guard(|| {
                let mut l = lease()?;
                let session = l.session(session)?;
                let key = l.key(key)?;
                let mechanism = Some(unsafe { mechanism::from_c(mech) }?);
                check(l.call(Call::$call(wire::OperationInit { session, mechanism, key }))?.rv)
            })
        }
    };
}

/// `C_x(session, in, in_len, out, out_len)`: single-part and updating
/// operations with output.
macro_rules! data_output_fn {
    ($name:ident, $call:ident) => {
        #[no_mangle]
        pub extern "C" fn $name(
            session: CK_SESSION_HANDLE,
            data: *mut CK_BYTE,
            data_len: CK_ULONG,
            out: *mut CK_BYTE,
            out_len: *mut CK_ULONG,
        ) -> CK_RV {
            guard(|| {
                let mut l = lease()?;
                let session = l.session(session)?;
                let data = unsafe { input(data, data_len) }?;
                let (capacity, length_null) = unsafe { out_spec(out, out_len) };
                let r = l.call(Call::$call(wire::DataOutput { session, data, capacity, length_null }))?;
                unsafe { write_output(r, out, out_len, capacity) }
            })
        }
    };
}

/// `C_xFinal(session, out, out_len)`.
macro_rules! final_fn {
    ($name:ident, $call:ident) => {
        #[no_mangle]
        pub extern "C" fn $name(session: CK_SESSION_HANDLE, out: *mut CK_BYTE, out_len: *mut CK_ULONG) -> CK_RV {
            guard(|| {
                let mut l = lease()?;
                let session = l.session(session)?;
                let (capacity, length_null) = unsafe { out_spec(out, out_len) };
                let r = l.call(Call::$call(wire::SessionOutput { session, capacity, length_null }))?;
                unsafe { write_output(r, out, out_len, capacity) }
            })
        }
    };
}

/// `C_xUpdate(session, in, in_len)` and `C_VerifyFinal(session, sig, len)`.
macro_rules! data_fn {
    ($name:ident, $call:ident) => {
        #[no_mangle]
        pub extern "C" fn $name(session: CK_SESSION_HANDLE, data: *mut CK_BYTE, data_len: CK_ULONG) -> CK_RV {
            guard(|| {
                let mut l = lease()?;
                let session = l.session(session)?;
                let data = unsafe { input(data, data_len) }?;
                check(l.call(Call::$call(wire::SessionBytes { session, data }))?.rv)
            })
        }
    };
}

init_fn!(C_EncryptInit, EncryptInit);
data_output_fn!(C_Encrypt, Encrypt);
data_output_fn!(C_EncryptUpdate, EncryptUpdate);
final_fn!(C_EncryptFinal, EncryptFinal);

init_fn!(C_DecryptInit, DecryptInit);
data_output_fn!(C_Decrypt, Decrypt);
data_output_fn!(C_DecryptUpdate, DecryptUpdate);
final_fn!(C_DecryptFinal, DecryptFinal);

data_output_fn!(C_Digest, Digest);
data_fn!(C_DigestUpdate, DigestUpdate);
final_fn!(C_DigestFinal, DigestFinal);

init_fn!(C_SignInit, SignInit);
data_output_fn!(C_Sign, Sign);
data_fn!(C_SignUpdate, SignUpdate);
final_fn!(C_SignFinal, SignFinal);
init_fn!(C_SignRecoverInit, SignRecoverInit);
data_output_fn!(C_SignRecover, SignRecover);

init_fn!(C_VerifyInit, VerifyInit);
data_fn!(C_VerifyUpdate, VerifyUpdate);
data_fn!(C_VerifyFinal, VerifyFinal);
init_fn!(C_VerifyRecoverInit, VerifyRecoverInit);
data_output_fn!(C_VerifyRecover, VerifyRecover);

data_output_fn!(C_DigestEncryptUpdate, DigestEncryptUpdate);
data_output_fn!(C_DecryptDigestUpdate, DecryptDigestUpdate);
data_output_fn!(C_SignEncryptUpdate, SignEncryptUpdate);
data_output_fn!(C_DecryptVerifyUpdate, DecryptVerifyUpdate);

#[no_mangle]
pub extern "C" fn C_DigestInit(session: CK_SESSION_HANDLE, mech: *mut CK_MECHANISM) -> CK_RV {
    guard(|| {
        let mut l = lease()?;
        let session = l.session(session)?;
        let mechanism = Some(unsafe { mechanism::from_c(mech) }?);
        check(l.call(Call::DigestInit(wire::OperationInit { session, mechanism, key: 0 }))?.rv)
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

#[no_mangle]
pub extern "C" fn C_Verify(
    session: CK_SESSION_HANDLE,
    data: *mut CK_BYTE,
    data_len: CK_ULONG,
    signature: *mut CK_BYTE,
    signature_len: CK_ULONG,
) -> CK_RV {
    guard(|| {
        let mut l = lease()?;
        let session = l.session(session)?;
        let data = unsafe { input(data, data_len) }?;
        let signature = unsafe { input(signature, signature_len) }?;
        check(l.call(Call::Verify(wire::Verify { session, data, signature }))?.rv)
    })
}
