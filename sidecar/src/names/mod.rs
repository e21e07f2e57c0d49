//! Names people read: of PKCS#11 functions (metrics labels, audit lines), CK_RV values and
//! mechanisms. The CK_RV and CKM_ tables are generated from cryptoki-sys (`ck_tables.rs`).

use std::borrow::Cow;

use cryptoki_sys::{CKM_VENDOR_DEFINED, CKR_VENDOR_DEFINED, CK_MECHANISM_TYPE, CK_RV};
use hsmbridge_proto::wire::request::Call;

mod ck_tables;

/// The PKCS#11 function a request calls (`"C_Sign"`); `"Hello"` for the connection's first message.
pub fn function(call: &Call) -> &'static str {
    use Call::*;
    match call {
        Hello(_) => "Hello",
        CancelFunction(_) => "C_CancelFunction",
        CloseAllSessions(_) => "C_CloseAllSessions",
        CloseSession(_) => "C_CloseSession",
        CopyObject(_) => "C_CopyObject",
        CreateObject(_) => "C_CreateObject",
        Decrypt(_) => "C_Decrypt",
        DecryptDigestUpdate(_) => "C_DecryptDigestUpdate",
        DecryptFinal(_) => "C_DecryptFinal",
        DecryptInit(_) => "C_DecryptInit",
        DecryptUpdate(_) => "C_DecryptUpdate",
        DecryptVerifyUpdate(_) => "C_DecryptVerifyUpdate",
        DeriveKey(_) => "C_DeriveKey",
        DestroyObject(_) => "C_DestroyObject",
        Digest(_) => "C_Digest",
        DigestEncryptUpdate(_) => "C_DigestEncryptUpdate",
        DigestFinal(_) => "C_DigestFinal",
        DigestInit(_) => "C_DigestInit",
        DigestKey(_) => "C_DigestKey",
        DigestUpdate(_) => "C_DigestUpdate",
        Encrypt(_) => "C_Encrypt",
        EncryptFinal(_) => "C_EncryptFinal",
        EncryptInit(_) => "C_EncryptInit",
        EncryptUpdate(_) => "C_EncryptUpdate",
        FindObjects(_) => "C_FindObjects",
        FindObjectsFinal(_) => "C_FindObjectsFinal",
        FindObjectsInit(_) => "C_FindObjectsInit",
        GenerateKey(_) => "C_GenerateKey",
        GenerateKeyPair(_) => "C_GenerateKeyPair",
        GenerateRandom(_) => "C_GenerateRandom",
        GetAttributeValue(_) => "C_GetAttributeValue",
        GetFunctionStatus(_) => "C_GetFunctionStatus",
        GetInfo(_) => "C_GetInfo",
        GetMechanismInfo(_) => "C_GetMechanismInfo",
        GetMechanismList(_) => "C_GetMechanismList",
        GetObjectSize(_) => "C_GetObjectSize",
        GetOperationState(_) => "C_GetOperationState",
        GetSessionInfo(_) => "C_GetSessionInfo",
        GetSlotInfo(_) => "C_GetSlotInfo",
        GetSlotList(_) => "C_GetSlotList",
        GetTokenInfo(_) => "C_GetTokenInfo",
        InitPin(_) => "C_InitPIN",
        InitToken(_) => "C_InitToken",
        Login(_) => "C_Login",
        Logout(_) => "C_Logout",
        OpenSession(_) => "C_OpenSession",
        SeedRandom(_) => "C_SeedRandom",
        SetAttributeValue(_) => "C_SetAttributeValue",
        SetOperationState(_) => "C_SetOperationState",
        SetPin(_) => "C_SetPIN",
        Sign(_) => "C_Sign",
        SignEncryptUpdate(_) => "C_SignEncryptUpdate",
        SignFinal(_) => "C_SignFinal",
        SignInit(_) => "C_SignInit",
        SignRecover(_) => "C_SignRecover",
        SignRecoverInit(_) => "C_SignRecoverInit",
        SignUpdate(_) => "C_SignUpdate",
        UnwrapKey(_) => "C_UnwrapKey",
        Verify(_) => "C_Verify",
        VerifyFinal(_) => "C_VerifyFinal",
        VerifyInit(_) => "C_VerifyInit",
        VerifyRecover(_) => "C_VerifyRecover",
        VerifyRecoverInit(_) => "C_VerifyRecoverInit",
        VerifyUpdate(_) => "C_VerifyUpdate",
        WaitForSlotEvent(_) => "C_WaitForSlotEvent",
        WrapKey(_) => "C_WrapKey",
    }
}

fn lookup(table: &'static [(u64, &'static str)], value: u64) -> Option<&'static str> {
    table.binary_search_by_key(&value, |(v, _)| *v).ok().map(|i| table[i].1)
}

/// The name of a CK_RV, from a bounded set (a metric label): the standard names,
/// `CKR_VENDOR_DEFINED` for vendor values and `CKR_UNKNOWN` for anything else.
pub fn rv(rv: CK_RV) -> &'static str {
    match lookup(&ck_tables::RV_NAMES, rv as u64) {
        Some(name) => name,
        None if rv >= CKR_VENDOR_DEFINED => "CKR_VENDOR_DEFINED",
        None => "CKR_UNKNOWN",
    }
}

/// The name of a mechanism; vendor and unknown ones by number (`CKM_VENDOR_DEFINED+0x1f`).
pub fn mechanism(m: CK_MECHANISM_TYPE) -> Cow<'static, str> {
    match lookup(&ck_tables::MECHANISM_NAMES, m as u64) {
        Some(name) => Cow::Borrowed(name),
        None if m >= CKM_VENDOR_DEFINED => Cow::Owned(format!("CKM_VENDOR_DEFINED+{:#x}", m - CKM_VENDOR_DEFINED)),
        None => Cow::Owned(format!("CKM_{m:#x}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cryptoki_sys::*;

    #[test]
    fn tables_are_sorted_so_lookups_find_every_name() {
        for table in [&ck_tables::RV_NAMES[..], &ck_tables::MECHANISM_NAMES[..]] {
            assert!(table.windows(2).all(|w| w[0].0 < w[1].0));
        }
    }

    #[test]
    fn names() {
        assert_eq!(rv(CKR_OK), "CKR_OK");
        assert_eq!(rv(CKR_PIN_INCORRECT), "CKR_PIN_INCORRECT");
        assert_eq!(rv(CKR_KEY_HANDLE_INVALID), "CKR_KEY_HANDLE_INVALID");
        assert_eq!(rv(CKR_VENDOR_DEFINED + 0x5017), "CKR_VENDOR_DEFINED");
        assert_eq!(rv(0x7777), "CKR_UNKNOWN");
        assert_eq!(mechanism(CKM_ECDSA), "CKM_ECDSA");
        assert_eq!(mechanism(CKM_SHA256_HMAC), "CKM_SHA256_HMAC");
        assert_eq!(mechanism(CKM_VENDOR_DEFINED + 0x1f), "CKM_VENDOR_DEFINED+0x1f");
    }
}
