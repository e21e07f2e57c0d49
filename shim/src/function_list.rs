//! The v2.40 function list and the PKCS#11 3.0 interface that offers it.

use cryptoki_sys::*;

use crate::{crypto, general, keys, object, random, session, slot_token};

/// Returned by C_GetFunctionList; apps call through it.
pub static FUNCTION_LIST: CK_FUNCTION_LIST = CK_FUNCTION_LIST {
    version: CK_VERSION { major: 2, minor: 40 },
    C_Initialize: Some(general::C_Initialize),
    C_Finalize: Some(general::C_Finalize),
    C_GetInfo: Some(general::C_GetInfo),
    C_GetFunctionList: Some(general::C_GetFunctionList),
    C_GetSlotList: Some(slot_token::C_GetSlotList),
    C_GetSlotInfo: Some(slot_token::C_GetSlotInfo),
    C_GetTokenInfo: Some(slot_token::C_GetTokenInfo),
    C_GetMechanismList: Some(slot_token::C_GetMechanismList),
    C_GetMechanismInfo: Some(slot_token::C_GetMechanismInfo),
    C_InitToken: Some(slot_token::C_InitToken),
    C_InitPIN: Some(slot_token::C_InitPIN),
    C_SetPIN: Some(slot_token::C_SetPIN),
    C_OpenSession: Some(session::C_OpenSession),
    C_CloseSession: Some(session::C_CloseSession),
    C_CloseAllSessions: Some(session::C_CloseAllSessions),
    C_GetSessionInfo: Some(session::C_GetSessionInfo),
    C_GetOperationState: Some(session::C_GetOperationState),
    C_SetOperationState: Some(session::C_SetOperationState),
    C_Login: Some(session::C_Login),
    C_Logout: Some(session::C_Logout),
    C_CreateObject: Some(object::C_CreateObject),
    C_CopyObject: Some(object::C_CopyObject),
    C_DestroyObject: Some(object::C_DestroyObject),
    C_GetObjectSize: Some(object::C_GetObjectSize),
    C_GetAttributeValue: Some(object::C_GetAttributeValue),
    C_SetAttributeValue: Some(object::C_SetAttributeValue),
    C_FindObjectsInit: Some(object::C_FindObjectsInit),
    C_FindObjects: Some(object::C_FindObjects),
    C_FindObjectsFinal: Some(object::C_FindObjectsFinal),
    C_EncryptInit: Some(crypto::C_EncryptInit),
    C_Encrypt: Some(crypto::C_Encrypt),
    C_EncryptUpdate: Some(crypto::C_EncryptUpdate),
    C_EncryptFinal: Some(crypto::C_EncryptFinal),
    C_DecryptInit: Some(crypto::C_DecryptInit),
    C_Decrypt: Some(crypto::C_Decrypt),
    C_DecryptUpdate: Some(crypto::C_DecryptUpdate),
    C_DecryptFinal: Some(crypto::C_DecryptFinal),
    C_DigestInit: Some(crypto::C_DigestInit),
    C_Digest: Some(crypto::C_Digest),
    C_DigestUpdate: Some(crypto::C_DigestUpdate),
    C_DigestKey: Some(crypto::C_DigestKey),
    C_DigestFinal: Some(crypto::C_DigestFinal),
    C_SignInit: Some(crypto::C_SignInit),
    C_Sign: Some(crypto::C_Sign),
    C_SignUpdate: Some(crypto::C_SignUpdate),
    C_SignFinal: Some(crypto::C_SignFinal),
    C_SignRecoverInit: Some(crypto::C_SignRecoverInit),
    C_SignRecover: Some(crypto::C_SignRecover),
    C_VerifyInit: Some(crypto::C_VerifyInit),
    C_Verify: Some(crypto::C_Verify),
    C_VerifyUpdate: Some(crypto::C_VerifyUpdate),
    C_VerifyFinal: Some(crypto::C_VerifyFinal),
    C_VerifyRecoverInit: Some(crypto::C_VerifyRecoverInit),
    C_VerifyRecover: Some(crypto::C_VerifyRecover),
    C_DigestEncryptUpdate: Some(crypto::C_DigestEncryptUpdate),
    C_DecryptDigestUpdate: Some(crypto::C_DecryptDigestUpdate),
    C_SignEncryptUpdate: Some(crypto::C_SignEncryptUpdate),
    C_DecryptVerifyUpdate: Some(crypto::C_DecryptVerifyUpdate),
    C_GenerateKey: Some(keys::C_GenerateKey),
    C_GenerateKeyPair: Some(keys::C_GenerateKeyPair),
    C_WrapKey: Some(keys::C_WrapKey),
    C_UnwrapKey: Some(keys::C_UnwrapKey),
    C_DeriveKey: Some(keys::C_DeriveKey),
    C_SeedRandom: Some(random::C_SeedRandom),
    C_GenerateRandom: Some(random::C_GenerateRandom),
    C_GetFunctionStatus: Some(random::C_GetFunctionStatus),
    C_CancelFunction: Some(random::C_CancelFunction),
    C_WaitForSlotEvent: Some(general::C_WaitForSlotEvent),
};

/// A `CK_INTERFACE` holds raw pointers, to static data only.
pub struct Interface(pub CK_INTERFACE);

// SAFETY: the only `Interface` is the static `INTERFACE`, whose two pointers
// refer to immutable statics (a C string literal and `FUNCTION_LIST`) that
// nothing writes through, so sharing it between threads shares only reads.
unsafe impl Sync for Interface {}

/// The one interface C_GetInterfaceList and C_GetInterface offer.
pub static INTERFACE: Interface = Interface(CK_INTERFACE {
    pInterfaceName: c"PKCS 11".as_ptr() as *mut CK_UTF8CHAR,
    pFunctionList: &FUNCTION_LIST as *const CK_FUNCTION_LIST as *mut std::ffi::c_void,
    flags: 0,
});
