//! Invalid handles and NULL pointer arguments.

use std::ptr::null_mut;

use cryptoki_sys::*;
use hsmbridge_conformance::calls::{Api, Out, BAD_HANDLE, BAD_SLOT, RW};
use hsmbridge_conformance::keys::{Key, Keyring};
use hsmbridge_conformance::mechs::Mech;
use hsmbridge_conformance::oracle::{differential, on_shim};
use hsmbridge_conformance::setup;
use hsmbridge_conformance::sidecar::Sidecar;
use hsmbridge_conformance::sweep::every_function;
use hsmbridge_conformance::template::Template;

// The `api.raw` calls in this file (their SAFETY lines say "`f` as noted at the top") go through
// `f`, the function list `raw` hands its closure: entries of `api`'s loaded module, which stays
// loaded while `api` is borrowed for the call. Each call deliberately passes NULL (or, where its
// SAFETY line says so, another bad value) for a pointer that the module's PKCS#11 argument
// validation must refuse (CKR_ARGUMENTS_BAD or another error) before any access; a module that
// dereferenced it instead would crash the test, which is the bug these tests look for. Every
// other pointer is to a live local of at least the length passed, and inputs cast to `*mut`
// (`d`, the byte-string PINs) are only read by the module.

#[test]
fn invalid_session_handles() {
    differential(|api| {
        let slot = setup::init(api);
        every_function(api, slot, BAD_HANDLE, BAD_HANDLE);
        every_function(api, slot, 0, 0);
    });
}

#[test]
fn closed_session_handle() {
    differential(|api| {
        let slot = setup::init(api);
        let s = api.must_open_session(slot, RW);
        api.close_session(s);
        every_function(api, slot, s, 1);
    });
}

#[test]
fn invalid_object_handles() {
    differential(|api| {
        let ready = setup::logged_in(api);
        every_function(api, ready.slot, ready.session, BAD_HANDLE);
        let s = api.must_open_session(ready.slot, RW);
        every_function(api, ready.slot, s, 0);
    });
}

#[test]
fn invalid_slot_ids() {
    differential(|api| {
        setup::init(api);
        api.slot_info(BAD_SLOT);
        api.token_info(BAD_SLOT);
        api.mechanism_list(BAD_SLOT, Out::Query);
        api.mechanism_info(BAD_SLOT, CKM_SHA256);
        api.open_session(BAD_SLOT, RW);
        api.close_all_sessions(BAD_SLOT);
        api.init_token(BAD_SLOT, "5678", "x");
    });
}

/// The session, slot and key the NULL-pointer calls use.
struct Objects {
    slot: CK_SLOT_ID,
    s: CK_SESSION_HANDLE,
    aes: CK_OBJECT_HANDLE,
}

/// A new session of the same application (the key stays visible), so an
/// operation a NULL argument left active does not mask the next check.
fn fresh(api: &mut Api, o: &Objects) -> CK_SESSION_HANDLE {
    api.must_open_session(o.slot, RW)
}

fn null_general(api: &mut Api, slot: CK_SLOT_ID) {
    let mut count: CK_ULONG = 0;
    // SAFETY: `f` as noted at the top; pInfo is NULL, refused before any write.
    api.raw("C_GetInfo(NULL)", |f| unsafe {
        f.C_GetInfo.expect("C_GetInfo")(null_mut())
    });
    // SAFETY: `f` as noted at the top; ppFunctionList is NULL, refused before any write.
    api.raw("C_GetFunctionList(NULL)", |f| unsafe {
        f.C_GetFunctionList.expect("C_GetFunctionList")(null_mut())
    });
    // SAFETY: `f` as noted at the top; pSlotList NULL is a length query; pulCount is NULL, refused
    // before any write.
    api.raw("C_GetSlotList(list=NULL, count=NULL)", |f| unsafe {
        f.C_GetSlotList.expect("C_GetSlotList")(CK_FALSE, null_mut(), null_mut())
    });
    // SAFETY: `f` as noted at the top; pInfo is NULL, refused before any write.
    api.raw("C_GetSlotInfo(slot, NULL)", |f| unsafe {
        f.C_GetSlotInfo.expect("C_GetSlotInfo")(slot, null_mut())
    });
    // SAFETY: `f` as noted at the top; pInfo is NULL, refused before any write.
    api.raw("C_GetTokenInfo(slot, NULL)", |f| unsafe {
        f.C_GetTokenInfo.expect("C_GetTokenInfo")(slot, null_mut())
    });
    // SAFETY: `f` as noted at the top; pMechanismList NULL is a length query; pulCount is NULL,
    // refused before any write.
    api.raw("C_GetMechanismList(slot, NULL, NULL)", |f| unsafe {
        f.C_GetMechanismList.expect("C_GetMechanismList")(slot, null_mut(), null_mut())
    });
    // SAFETY: `f` as noted at the top; pInfo is NULL, refused before any write.
    api.raw("C_GetMechanismInfo(slot, SHA256, NULL)", |f| unsafe {
        f.C_GetMechanismInfo.expect("C_GetMechanismInfo")(slot, CKM_SHA256, null_mut())
    });
    // SAFETY: `f` as noted at the top; pApplication NULL with no Notify callback is allowed (the
    // module only hands it back to the callback); phSession is NULL, refused before any write.
    api.raw("C_OpenSession(slot, RW, phSession=NULL)", |f| unsafe {
        f.C_OpenSession.expect("C_OpenSession")(slot, RW, null_mut(), None, null_mut())
    });
    // SAFETY: `f` as noted at the top; pPin is NULL with length 4, refused before any read (the
    // token has no protected authentication path); pLabel is a 32-byte temporary (as C_InitToken
    // requires) that lives until the call returns.
    api.raw("C_InitToken(slot, pin=NULL, 4, label)", |f| unsafe {
        f.C_InitToken.expect("C_InitToken")(slot, null_mut(), 4, [b' '; 32].as_mut_ptr())
    });
    // SAFETY: `f` as noted at the top; pPin is the 4 bytes of a static string, only read; pLabel is
    // NULL, refused before any read.
    api.raw("C_InitToken(slot, pin, 4, label=NULL)", |f| unsafe {
        f.C_InitToken.expect("C_InitToken")(slot, b"5678".as_ptr() as *mut u8, 4, null_mut())
    });
    // SAFETY: `f` as noted at the top; pSlot is NULL, refused before any write (or the call is
    // unsupported); pReserved is NULL as required.
    api.raw("C_WaitForSlotEvent(DONT_BLOCK, pSlot=NULL)", |f| unsafe {
        f.C_WaitForSlotEvent.expect("C_WaitForSlotEvent")(CKF_DONT_BLOCK, null_mut(), null_mut())
    });
    // pReserved of C_WaitForSlotEvent must be NULL.
    // SAFETY: `f` as noted at the top; pSlot is the live local `slot_out`; pReserved must be NULL
    // and is refused, and the non-NULL value here points to the live CK_ULONG `count`, so even a
    // module that read it would read valid memory.
    api.raw("C_WaitForSlotEvent(DONT_BLOCK, &slot, pReserved)", |f| unsafe {
        let mut slot_out: CK_SLOT_ID = 0;
        f.C_WaitForSlotEvent.expect("C_WaitForSlotEvent")(
            CKF_DONT_BLOCK,
            &mut slot_out,
            (&mut count as *mut CK_ULONG).cast(),
        )
    });
}

fn null_session_and_objects(api: &mut Api, o: &Objects) {
    let (s, aes) = (o.s, o.aes);
    let mut h: CK_OBJECT_HANDLE = 0;
    let mut len: CK_ULONG = 0;
    let label = Template::new().text(CKA_LABEL, "x");
    // SAFETY: `f` as noted at the top; pInfo is NULL, refused before any write.
    api.raw("C_GetSessionInfo(s, NULL)", |f| unsafe {
        f.C_GetSessionInfo.expect("C_GetSessionInfo")(s, null_mut())
    });
    // SAFETY: `f` as noted at the top; pPin is NULL with length 4, refused before any read (the
    // token has no protected authentication path).
    api.raw("C_Login(s, USER, pin=NULL, 4)", |f| unsafe {
        f.C_Login.expect("C_Login")(s, CKU_USER, null_mut(), 4)
    });
    // SAFETY: `f` as noted at the top; pPin is NULL with length 4, refused before any read (the
    // token has no protected authentication path).
    api.raw("C_InitPIN(s, NULL, 4)", |f| unsafe {
        f.C_InitPIN.expect("C_InitPIN")(s, null_mut(), 4)
    });
    // SAFETY: `f` as noted at the top; pOldPin is NULL with length 4, refused before any read;
    // pNewPin is the 4 bytes of a static string, only read.
    api.raw("C_SetPIN(s, NULL, 4, new, 4)", |f| unsafe {
        f.C_SetPIN.expect("C_SetPIN")(s, null_mut(), 4, b"1234".as_ptr() as *mut u8, 4)
    });
    // SAFETY: `f` as noted at the top; pOldPin is the 4 bytes of a static string, only read;
    // pNewPin is NULL with length 4, refused before any read.
    api.raw("C_SetPIN(s, old, 4, NULL, 4)", |f| unsafe {
        f.C_SetPIN.expect("C_SetPIN")(s, b"1234".as_ptr() as *mut u8, 4, null_mut(), 4)
    });
    // SAFETY: `f` as noted at the top; pTemplate is NULL with count 1, refused before any read;
    // phObject is the live local `h`.
    api.raw("C_CreateObject(s, NULL, 1, &h)", |f| unsafe {
        f.C_CreateObject.expect("C_CreateObject")(s, null_mut(), 1, &mut h)
    });
    // SAFETY: `f` as noted at the top; pTemplate is `label`'s one attribute (live, only read);
    // phObject is NULL, refused before any write.
    api.raw("C_CreateObject(s, t, 1, NULL)", |f| unsafe {
        f.C_CreateObject.expect("C_CreateObject")(s, label.as_ptr(), 1, null_mut())
    });
    // SAFETY: `f` as noted at the top; pTemplate is `label`'s one attribute (live, only read);
    // phNewObject is NULL, refused before any write.
    api.raw("C_CopyObject(s, aes, t, 1, NULL)", |f| unsafe {
        f.C_CopyObject.expect("C_CopyObject")(s, aes, label.as_ptr(), 1, null_mut())
    });
    // SAFETY: `f` as noted at the top; pTemplate is NULL with count 1, refused before any read;
    // phNewObject is the live local `h`.
    api.raw("C_CopyObject(s, aes, NULL, 1, &h)", |f| unsafe {
        f.C_CopyObject.expect("C_CopyObject")(s, aes, null_mut(), 1, &mut h)
    });
    // SAFETY: `f` as noted at the top; pulSize is NULL, refused before any write.
    api.raw("C_GetObjectSize(s, aes, NULL)", |f| unsafe {
        f.C_GetObjectSize.expect("C_GetObjectSize")(s, aes, null_mut())
    });
    // SAFETY: `f` as noted at the top; pTemplate is NULL with count 1, refused before any access.
    api.raw("C_GetAttributeValue(s, aes, NULL, 1)", |f| unsafe {
        f.C_GetAttributeValue.expect("C_GetAttributeValue")(s, aes, null_mut(), 1)
    });
    // SAFETY: `f` as noted at the top; pTemplate is NULL with count 1, refused before any read.
    api.raw("C_SetAttributeValue(s, aes, NULL, 1)", |f| unsafe {
        f.C_SetAttributeValue.expect("C_SetAttributeValue")(s, aes, null_mut(), 1)
    });
    // SAFETY: `f` as noted at the top; pTemplate is NULL with count 1, refused before any read.
    api.raw("C_FindObjectsInit(s, NULL, 1)", |f| unsafe {
        f.C_FindObjectsInit.expect("C_FindObjectsInit")(s, null_mut(), 1)
    });
    api.find_init(s, &Template::new());
    // SAFETY: `f` as noted at the top; phObject is NULL with room for 1, refused before any write;
    // pulObjectCount is the live local `len`.
    api.raw("C_FindObjects(s, NULL, 1, &n)", |f| unsafe {
        f.C_FindObjects.expect("C_FindObjects")(s, null_mut(), 1, &mut len)
    });
    // SAFETY: `f` as noted at the top; phObject is the live local `h`, room for the 1 handle
    // passed; pulObjectCount is NULL, refused before any write.
    api.raw("C_FindObjects(s, &h, 1, NULL)", |f| unsafe {
        f.C_FindObjects.expect("C_FindObjects")(s, &mut h, 1, null_mut())
    });
    api.find_final(s);
    // SAFETY: `f` as noted at the top; pOperationState NULL is a length query; pulOperationStateLen
    // is NULL, refused before any write.
    api.raw("C_GetOperationState(s, NULL, NULL)", |f| unsafe {
        f.C_GetOperationState.expect("C_GetOperationState")(s, null_mut(), null_mut())
    });
    // SAFETY: `f` as noted at the top; pSeed is NULL with length 4, refused before any read.
    api.raw("C_SeedRandom(s, NULL, 4)", |f| unsafe {
        f.C_SeedRandom.expect("C_SeedRandom")(s, null_mut(), 4)
    });
    // SAFETY: `f` as noted at the top; pRandomData is NULL with length 4, refused before any write.
    api.raw("C_GenerateRandom(s, NULL, 4)", |f| unsafe {
        f.C_GenerateRandom.expect("C_GenerateRandom")(s, null_mut(), 4)
    });
}

fn null_crypto(api: &mut Api, o: &Objects) {
    let aes = o.aes;
    let mut out = [0u8; 64];
    let data = [0x11u8; 16];
    let d = data.as_ptr() as *mut u8;
    let ecb = Mech::new(CKM_AES_ECB);
    let sha = Mech::new(CKM_SHA256);
    let cmac = Mech::new(CKM_AES_CMAC);
    let secret = Template::new()
        .ulong(CKA_CLASS, CKO_SECRET_KEY)
        .ulong(CKA_KEY_TYPE, CKK_AES)
        .ulong(CKA_VALUE_LEN, 16);
    let mut h: CK_OBJECT_HANDLE = 0;

    let s = fresh(api, o);
    // SAFETY: `f` as noted at the top; pMechanism is NULL, refused before any read.
    api.raw("C_EncryptInit(s, NULL, aes)", |f| unsafe {
        f.C_EncryptInit.expect("C_EncryptInit")(s, null_mut(), aes)
    });
    // SAFETY: `f` as noted at the top; pMechanism is the live local `m`, whose pParameter is NULL
    // with length 16: the mechanism parameter check refuses it before reading an IV.
    api.raw("C_EncryptInit(s, AES_CBC(param NULL, len 16), aes)", |f| unsafe {
        let mut m = CK_MECHANISM {
            mechanism: CKM_AES_CBC,
            pParameter: null_mut(),
            ulParameterLen: 16,
        };
        f.C_EncryptInit.expect("C_EncryptInit")(s, &mut m, aes)
    });
    api.encrypt_init(s, &ecb, aes);
    // SAFETY: `f` as noted at the top; pData is `d`, the 16 bytes of `data` (only read);
    // pEncryptedData is `out` (64 bytes); pulEncryptedDataLen is NULL, refused before any write.
    api.raw("C_Encrypt(s, data, 16, out, NULL)", |f| unsafe {
        f.C_Encrypt.expect("C_Encrypt")(s, d, 16, out.as_mut_ptr(), null_mut())
    });
    // SAFETY: `f` as noted at the top; pData is NULL with length 16, refused before any read;
    // pEncryptedData is `out`, 64 bytes as `len` says.
    api.raw("C_Encrypt(s, NULL, 16, out, &len)", |f| unsafe {
        let mut len: CK_ULONG = 64;
        f.C_Encrypt.expect("C_Encrypt")(s, null_mut(), 16, out.as_mut_ptr(), &mut len)
    });
    let s = fresh(api, o);
    api.encrypt_init(s, &ecb, aes);
    // SAFETY: `f` as noted at the top; pPart is `d`, the 16 bytes of `data` (only read);
    // pEncryptedPart is `out` (64 bytes); pulEncryptedPartLen is NULL, refused before any write.
    api.raw("C_EncryptUpdate(s, data, 16, out, NULL)", |f| unsafe {
        f.C_EncryptUpdate.expect("C_EncryptUpdate")(s, d, 16, out.as_mut_ptr(), null_mut())
    });
    // SAFETY: `f` as noted at the top; pLastEncryptedPart is `out` (64 bytes);
    // pulLastEncryptedPartLen is NULL, refused before any write.
    api.raw("C_EncryptFinal(s, out, NULL)", |f| unsafe {
        f.C_EncryptFinal.expect("C_EncryptFinal")(s, out.as_mut_ptr(), null_mut())
    });
    api.encrypt_final(s, Out::Auto);
    let s = fresh(api, o);
    api.decrypt_init(s, &ecb, aes);
    // SAFETY: `f` as noted at the top; pEncryptedData is NULL with length 16, refused before any
    // read; pData is `out`, 64 bytes as `len` says.
    api.raw("C_Decrypt(s, NULL, 16, out, &len)", |f| unsafe {
        let mut len: CK_ULONG = 64;
        f.C_Decrypt.expect("C_Decrypt")(s, null_mut(), 16, out.as_mut_ptr(), &mut len)
    });
    let s = fresh(api, o);
    // SAFETY: `f` as noted at the top; pMechanism is NULL, refused before any read.
    api.raw("C_DigestInit(s, NULL)", |f| unsafe {
        f.C_DigestInit.expect("C_DigestInit")(s, null_mut())
    });
    api.digest_init(s, &sha);
    // SAFETY: `f` as noted at the top; pData is `d`, the 16 bytes of `data` (only read); pDigest is
    // `out` (64 bytes); pulDigestLen is NULL, refused before any write.
    api.raw("C_Digest(s, data, 16, out, NULL)", |f| unsafe {
        f.C_Digest.expect("C_Digest")(s, d, 16, out.as_mut_ptr(), null_mut())
    });
    let s = fresh(api, o);
    api.digest_init(s, &sha);
    // SAFETY: `f` as noted at the top; pPart is NULL with length 16, refused before any read.
    api.raw("C_DigestUpdate(s, NULL, 16)", |f| unsafe {
        f.C_DigestUpdate.expect("C_DigestUpdate")(s, null_mut(), 16)
    });
    let s = fresh(api, o);
    api.digest_init(s, &sha);
    // SAFETY: `f` as noted at the top; pDigest is `out` (64 bytes); pulDigestLen is NULL, refused
    // before any write.
    api.raw("C_DigestFinal(s, out, NULL)", |f| unsafe {
        f.C_DigestFinal.expect("C_DigestFinal")(s, out.as_mut_ptr(), null_mut())
    });
    api.digest_final(s, Out::Auto);
    let s = fresh(api, o);
    // SAFETY: `f` as noted at the top; pMechanism is NULL, refused before any read.
    api.raw("C_SignInit(s, NULL, aes)", |f| unsafe {
        f.C_SignInit.expect("C_SignInit")(s, null_mut(), aes)
    });
    api.sign_init(s, &cmac, aes);
    // SAFETY: `f` as noted at the top; pData is `d`, the 16 bytes of `data` (only read); pSignature
    // is `out` (64 bytes); pulSignatureLen is NULL, refused before any write.
    api.raw("C_Sign(s, data, 16, out, NULL)", |f| unsafe {
        f.C_Sign.expect("C_Sign")(s, d, 16, out.as_mut_ptr(), null_mut())
    });
    let s = fresh(api, o);
    // SAFETY: `f` as noted at the top; pMechanism is NULL, refused before any read.
    api.raw("C_VerifyInit(s, NULL, aes)", |f| unsafe {
        f.C_VerifyInit.expect("C_VerifyInit")(s, null_mut(), aes)
    });
    api.verify_init(s, &cmac, aes);
    // SAFETY: `f` as noted at the top; pData is `d`, the 16 bytes of `data` (only read); pSignature
    // is NULL with length 16, refused before any read.
    api.raw("C_Verify(s, data, 16, NULL, 16)", |f| unsafe {
        f.C_Verify.expect("C_Verify")(s, d, 16, null_mut(), 16)
    });
    let s = fresh(api, o);
    // SAFETY: `f` as noted at the top; pMechanism is NULL, refused before any read; the template is
    // `secret`'s `secret.len()` attributes (live, only read); phKey is the live local `h`.
    api.raw("C_GenerateKey(s, NULL, t, n, &h)", |f| unsafe {
        f.C_GenerateKey.expect("C_GenerateKey")(s, null_mut(), secret.as_ptr(), secret.len(), &mut h)
    });
    // SAFETY: `f` as noted at the top; pMechanism is the live local `m` (no parameter); the
    // template is `secret`'s `secret.len()` attributes (live, only read); phKey is NULL, refused
    // before any write.
    api.raw("C_GenerateKey(s, AES_KEY_GEN, t, n, NULL)", |f| unsafe {
        let mut m = Mech::new(CKM_AES_KEY_GEN).ck();
        f.C_GenerateKey.expect("C_GenerateKey")(s, &mut m, secret.as_ptr(), secret.len(), null_mut())
    });
    // SAFETY: `f` as noted at the top; pMechanism is the live local `m` (no parameter); both
    // templates are NULL with count 0 (nothing to read); phPublicKey and phPrivateKey are NULL,
    // refused before any write.
    api.raw("C_GenerateKeyPair(s, EC, NULL, 0, NULL, 0, NULL, NULL)", |f| unsafe {
        let mut m = Mech::new(CKM_EC_KEY_PAIR_GEN).ck();
        f.C_GenerateKeyPair.expect("C_GenerateKeyPair")(s, &mut m, null_mut(), 0, null_mut(), 0, null_mut(), null_mut())
    });
    // SAFETY: `f` as noted at the top; pMechanism is the live local `m` (no parameter); pWrappedKey
    // is `out` (64 bytes); pulWrappedKeyLen is NULL, refused before any write.
    api.raw("C_WrapKey(s, AES_KEY_WRAP, aes, aes, out, NULL)", |f| unsafe {
        let mut m = Mech::new(CKM_AES_KEY_WRAP).ck();
        f.C_WrapKey.expect("C_WrapKey")(s, &mut m, aes, aes, out.as_mut_ptr(), null_mut())
    });
    // SAFETY: `f` as noted at the top; pMechanism is NULL, refused before any read; pWrappedKey
    // NULL is a length query into the live local `len`.
    api.raw("C_WrapKey(s, NULL, aes, aes, NULL, &len)", |f| unsafe {
        let mut len: CK_ULONG = 0;
        f.C_WrapKey.expect("C_WrapKey")(s, null_mut(), aes, aes, null_mut(), &mut len)
    });
    // SAFETY: `f` as noted at the top; pMechanism is the live local `m` (no parameter); pWrappedKey
    // is NULL with length 24, refused before any read; the template is `secret`'s `secret.len()`
    // attributes (live, only read); phKey is the live local `h`.
    api.raw("C_UnwrapKey(s, AES_KEY_WRAP, aes, NULL, 24, t, n, &h)", |f| unsafe {
        let mut m = Mech::new(CKM_AES_KEY_WRAP).ck();
        f.C_UnwrapKey.expect("C_UnwrapKey")(s, &mut m, aes, null_mut(), 24, secret.as_ptr(), secret.len(), &mut h)
    });
    api.raw(
        "C_UnwrapKey(s, AES_KEY_WRAP, aes, wrapped, 24, t, n, NULL)",
        // SAFETY: `f` as noted at the top; pMechanism is the live local `m` (no parameter);
        // pWrappedKey is 24 of `out`'s 64 bytes (only read); the template is `secret`'s
        // `secret.len()` attributes (live, only read); phKey is NULL, refused before any write.
        |f| unsafe {
            let mut m = Mech::new(CKM_AES_KEY_WRAP).ck();
            f.C_UnwrapKey.expect("C_UnwrapKey")(
                s,
                &mut m,
                aes,
                out.as_mut_ptr(),
                24,
                secret.as_ptr(),
                secret.len(),
                null_mut(),
            )
        },
    );
    // SAFETY: `f` as noted at the top; pMechanism is `ck_mech`, pointing into `m` (its
    // CK_KEY_DERIVATION_STRING_DATA over a copy of `data`), both live until the call returns; the
    // template is `secret`'s `secret.len()` attributes (live, only read); phKey is NULL, refused
    // before any write.
    api.raw("C_DeriveKey(s, AES_ECB_ENCRYPT_DATA, aes, t, n, NULL)", |f| unsafe {
        let m = Mech::string_data(CKM_AES_ECB_ENCRYPT_DATA, &data);
        let mut ck_mech = m.ck();
        f.C_DeriveKey.expect("C_DeriveKey")(s, &mut ck_mech, aes, secret.as_ptr(), secret.len(), null_mut())
    });
    api.raw(
        "C_DeriveKey(s, AES_ECB_ENCRYPT_DATA(param NULL), aes, t, n, &h)",
        // SAFETY: `f` as noted at the top; pMechanism is the live local `m`, whose pParameter is
        // NULL (length 0) where a CK_KEY_DERIVATION_STRING_DATA is required: the mechanism
        // parameter check refuses it before any read; the template is `secret`'s `secret.len()`
        // attributes (live, only read); phKey is the live local `h`.
        |f| unsafe {
            let mut m = CK_MECHANISM {
                mechanism: CKM_AES_ECB_ENCRYPT_DATA,
                pParameter: null_mut(),
                ulParameterLen: 0,
            };
            f.C_DeriveKey.expect("C_DeriveKey")(s, &mut m, aes, secret.as_ptr(), secret.len(), &mut h)
        },
    );
}

#[test]
fn null_pointer_arguments() {
    differential(|api| {
        let ready = setup::logged_in(api);
        let mut ring = Keyring::new(ready.session);
        let aes = ring.get(api, Key::Aes128);
        let objects = Objects {
            slot: ready.slot,
            s: ready.session,
            aes,
        };
        null_general(api, ready.slot);
        null_session_and_objects(api, &objects);
        null_crypto(api, &objects);
    });
}

/// Parameter blocks of the wrong size or for a mechanism that takes none.
/// DESIGN.md point 6 lets the shim answer CKR_MECHANISM_PARAM_INVALID for a
/// layout it cannot carry; the backend's own answer is what this compares.
#[test]
fn stray_parameters_and_unparsable_derive_parameters() {
    differential(|api| {
        let ready = setup::logged_in(api);
        let mut ring = Keyring::new(ready.session);
        let aes = ring.get(api, Key::Aes128);
        let ec = ring.get(api, Key::EcPrivate);
        let secret = Template::new()
            .ulong(CKA_CLASS, CKO_SECRET_KEY)
            .ulong(CKA_KEY_TYPE, CKK_GENERIC_SECRET)
            .ulong(CKA_VALUE_LEN, 16);
        let s = api.must_open_session(ready.slot, RW);
        api.encrypt_init(s, &Mech::bytes(CKM_AES_ECB, b"unexpected parameter"), aes);
        api.close_session(s);
        let s = api.must_open_session(ready.slot, RW);
        api.digest_init(s, &Mech::bytes(CKM_SHA256, b"unexpected parameter"));
        api.close_session(s);
        let s = api.must_open_session(ready.slot, RW);
        api.derive_key(s, &Mech::bytes(CKM_ECDH1_DERIVE, &[0u8; 5]), ec, &secret);
        api.close_session(s);
    });
}

/// A parameter struct of the wrong size cannot be deep-copied (its pointers
/// are not where its type says): DESIGN.md point 6 answers
/// CKR_MECHANISM_PARAM_INVALID, where SoftHSM says CKR_ARGUMENTS_BAD.
#[test]
fn wrong_size_parameter_structs_are_param_invalid() {
    on_shim(Sidecar::start, |api| {
        let ready = setup::logged_in(api);
        let mut ring = Keyring::new(ready.session);
        let aes = ring.get(api, Key::Aes128);
        let rsa = ring.get(api, Key::RsaPrivate);
        let s = api.must_open_session(ready.slot, RW);
        for m in [Mech::bytes(CKM_AES_GCM, &[0u8; 7]), Mech::bytes(CKM_AES_CTR, &[0u8; 9])] {
            assert_eq!(
                api.encrypt_init(s, &m, aes),
                CKR_MECHANISM_PARAM_INVALID,
                "{}",
                m.desc()
            );
        }
        let oaep = Mech::bytes(CKM_RSA_PKCS_OAEP, &[1, 2, 3]);
        assert_eq!(api.decrypt_init(s, &oaep, rsa), CKR_MECHANISM_PARAM_INVALID);
        let pss = Mech::bytes(CKM_RSA_PKCS_PSS, &[1, 2, 3]);
        assert_eq!(api.sign_init(s, &pss, rsa), CKR_MECHANISM_PARAM_INVALID);
        // The session is still usable afterwards.
        assert_eq!(api.encrypt_init(s, &Mech::new(CKM_AES_ECB), aes), CKR_OK);
    });
}

/// Whether a call refused for a NULL argument ends the active operation
/// (PKCS#11: an error from an Update/Final or single-part call does):
/// each refusal is followed by a length query that shows it.
#[test]
fn null_arguments_end_operations() {
    differential(|api| {
        let ready = setup::logged_in(api);
        let mut ring = Keyring::new(ready.session);
        let aes = ring.get(api, Key::Aes128);
        let hmac = ring.get(api, Key::Hmac);
        let ecb = Mech::new(CKM_AES_ECB);
        let data = [0x22u8; 16];
        let d = data.as_ptr() as *mut u8;
        let mut out = [0u8; 64];
        let o = out.as_mut_ptr();

        let s = api.must_open_session(ready.slot, RW);
        api.encrypt_init(s, &ecb, aes);
        // SAFETY: `f` as noted at the top; pData is `d`, the 16 bytes of `data` (only read);
        // pEncryptedData is `o`, `out`'s 64 bytes; pulEncryptedDataLen is NULL, refused before any
        // write.
        api.raw("C_Encrypt(s, data, 16, out, NULL)", |f| unsafe {
            f.C_Encrypt.expect("C_Encrypt")(s, d, 16, o, null_mut())
        });
        api.encrypt(s, &data, Out::Query);

        let s = api.must_open_session(ready.slot, RW);
        api.encrypt_init(s, &ecb, aes);
        // SAFETY: `f` as noted at the top; pPart is `d`, the 16 bytes of `data` (only read);
        // pEncryptedPart is `o`, `out`'s 64 bytes; pulEncryptedPartLen is NULL, refused before any
        // write.
        api.raw("C_EncryptUpdate(s, data, 16, out, NULL)", |f| unsafe {
            f.C_EncryptUpdate.expect("C_EncryptUpdate")(s, d, 16, o, null_mut())
        });
        api.encrypt_final(s, Out::Query);

        let s = api.must_open_session(ready.slot, RW);
        api.encrypt_init(s, &ecb, aes);
        // SAFETY: `f` as noted at the top; pLastEncryptedPart is `o`, `out`'s 64 bytes;
        // pulLastEncryptedPartLen is NULL, refused before any write.
        api.raw("C_EncryptFinal(s, out, NULL)", |f| unsafe {
            f.C_EncryptFinal.expect("C_EncryptFinal")(s, o, null_mut())
        });
        api.encrypt_final(s, Out::Query);

        let s = api.must_open_session(ready.slot, RW);
        api.decrypt_init(s, &ecb, aes);
        // SAFETY: `f` as noted at the top; pEncryptedPart is NULL with length 16, refused before
        // any read; pPart is `o`, `out`'s 64 bytes as `len` says.
        api.raw("C_DecryptUpdate(s, NULL, 16, out, &len)", |f| unsafe {
            let mut len: CK_ULONG = 64;
            f.C_DecryptUpdate.expect("C_DecryptUpdate")(s, null_mut(), 16, o, &mut len)
        });
        api.decrypt_final(s, Out::Query);

        let s = api.must_open_session(ready.slot, RW);
        api.digest_init(s, &Mech::new(CKM_SHA256));
        // SAFETY: `f` as noted at the top; pPart is NULL with length 16, refused before any read.
        api.raw("C_DigestUpdate(s, NULL, 16)", |f| unsafe {
            f.C_DigestUpdate.expect("C_DigestUpdate")(s, null_mut(), 16)
        });
        api.digest_final(s, Out::Query);

        let s = api.must_open_session(ready.slot, RW);
        api.sign_init(s, &Mech::new(CKM_SHA256_HMAC), hmac);
        // SAFETY: `f` as noted at the top; pData is `d`, the 16 bytes of `data` (only read);
        // pSignature is `o`, `out`'s 64 bytes; pulSignatureLen is NULL, refused before any write.
        api.raw("C_Sign(s, data, 16, out, NULL)", |f| unsafe {
            f.C_Sign.expect("C_Sign")(s, d, 16, o, null_mut())
        });
        api.sign(s, &data, Out::Query);

        let s = api.must_open_session(ready.slot, RW);
        api.sign_init(s, &Mech::new(CKM_SHA256_HMAC), hmac);
        // SAFETY: `f` as noted at the top; pPart is NULL with length 16, refused before any read.
        api.raw("C_SignUpdate(s, NULL, 16)", |f| unsafe {
            f.C_SignUpdate.expect("C_SignUpdate")(s, null_mut(), 16)
        });
        api.sign_final(s, Out::Query);

        let s = api.must_open_session(ready.slot, RW);
        api.verify_init(s, &Mech::new(CKM_SHA256_HMAC), hmac);
        // SAFETY: `f` as noted at the top; pSignature is NULL with length 32, refused before any
        // read.
        api.raw("C_VerifyFinal(s, NULL, 32)", |f| unsafe {
            f.C_VerifyFinal.expect("C_VerifyFinal")(s, null_mut(), 32)
        });
        api.verify_final(s, &[0u8; 32]);
    });
}
