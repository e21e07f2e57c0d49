//! One call of every PKCS#11 v2.40 function with plausible arguments, for
//! checks that must hold for all of them alike (not initialized, finalized,
//! invalid or closed session handle).

use cryptoki_sys::*;

use crate::calls::{Api, Out};
use crate::mechs::Mech;
use crate::template::Template;

/// Calls every function except C_Initialize, C_Finalize and
/// C_GetFunctionList, in the spec's order (except that the calls closing
/// sessions come last), on `slot`, session `s` and object `o`.
pub fn every_function(api: &mut Api, slot: CK_SLOT_ID, s: CK_SESSION_HANDLE, o: CK_OBJECT_HANDLE) {
    let data = [0x5a_u8; 16];
    let label = Template::new().text(CKA_LABEL, "sweep");
    let secret = Template::new()
        .ulong(CKA_CLASS, CKO_SECRET_KEY)
        .ulong(CKA_KEY_TYPE, CKK_AES)
        .ulong(CKA_VALUE_LEN, 16);
    let aes = Mech::new(CKM_AES_ECB);
    let sha = Mech::new(CKM_SHA256);
    let hmac = Mech::new(CKM_SHA256_HMAC);

    api.get_info();
    api.slot_list(false, Out::Query);
    api.slot_info(slot);
    api.token_info(slot);
    api.mechanism_list(slot, Out::Query);
    api.mechanism_info(slot, CKM_AES_ECB);
    api.init_token(slot, "wrong-so-pin", "sweep");
    api.init_pin(s, "4321");
    api.set_pin(s, "1234", "1234");
    api.open_session(slot, crate::calls::RW);
    api.session_info(s);
    api.get_operation_state(s, Out::Query);
    api.set_operation_state(s, &data, 0, 0);
    api.login(s, CKU_USER, Some("1234"));
    api.logout(s);
    api.create_object(s, &label);
    api.copy_object(s, o, &label);
    api.destroy_object(s, o);
    api.object_size(s, o);
    api.get_attributes(s, o, &[crate::calls::AttrReq::Len(CKA_LABEL)]);
    api.set_attributes(s, o, &label);
    api.find_init(s, &label);
    api.find(s, 4);
    api.find_final(s);
    api.encrypt_init(s, &aes, o);
    api.encrypt(s, &data, Out::Size(16));
    api.encrypt_update(s, &data, Out::Size(16));
    api.encrypt_final(s, Out::Size(16));
    api.decrypt_init(s, &aes, o);
    api.decrypt(s, &data, Out::Size(16));
    api.decrypt_update(s, &data, Out::Size(16));
    api.decrypt_final(s, Out::Size(16));
    api.digest_init(s, &sha);
    api.digest(s, &data, Out::Size(32));
    api.digest_update(s, &data);
    api.digest_key(s, o);
    api.digest_final(s, Out::Size(32));
    api.sign_init(s, &hmac, o);
    api.sign(s, &data, Out::Size(32));
    api.sign_update(s, &data);
    api.sign_final(s, Out::Size(32));
    api.sign_recover_init(s, &hmac, o);
    api.sign_recover(s, &data, Out::Size(32));
    api.verify_init(s, &hmac, o);
    api.verify(s, &data, &data);
    api.verify_update(s, &data);
    api.verify_final(s, &data);
    api.verify_recover_init(s, &hmac, o);
    api.verify_recover(s, &data, Out::Size(32));
    api.digest_encrypt_update(s, &data, Out::Size(16));
    api.decrypt_digest_update(s, &data, Out::Size(16));
    api.sign_encrypt_update(s, &data, Out::Size(16));
    api.decrypt_verify_update(s, &data, Out::Size(16));
    api.generate_key(s, &Mech::new(CKM_AES_KEY_GEN), &secret);
    api.generate_key_pair(s, &Mech::new(CKM_EC_KEY_PAIR_GEN), &Template::new(), &Template::new());
    api.wrap_key(s, &Mech::new(CKM_AES_KEY_WRAP), o, o, Out::Query);
    api.unwrap_key(s, &Mech::new(CKM_AES_KEY_WRAP), o, &[0u8; 24], &secret);
    api.derive_key(s, &Mech::string_data(CKM_AES_ECB_ENCRYPT_DATA, &data), o, &secret);
    api.seed_random(s, &data);
    api.generate_random(s, 16);
    api.get_function_status(s);
    api.cancel_function(s);
    api.wait_for_slot_event(CKF_DONT_BLOCK);
    // Last, as they end the session.
    api.close_session(s);
    api.close_all_sessions(slot);
}
