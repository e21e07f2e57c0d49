//! Slot and token management: slot lists and info, mechanisms, token and PIN
//! initialization.

use crate::out::fixed;
use crate::prelude::*;

/// # Safety
/// PKCS#11 caller contract: `count` is NULL or valid for reads and writes of
/// a `CK_ULONG`; `list` is NULL or valid for writes of `*count` slot ids.
#[no_mangle]
pub unsafe extern "C" fn C_GetSlotList(token_present: CK_BBOOL, list: *mut CK_SLOT_ID, count: *mut CK_ULONG) -> CK_RV {
    guard(|| {
        let mut l = lease()?;
        // SAFETY: `count` is NULL or a readable CK_ULONG, by this function's
        // contract.
        let (capacity, length_null) = unsafe { out_spec(list, count) };
        let r = l.call(Call::GetSlotList(wire::GetSlotList {
            token_present: token_present != 0,
            capacity,
            length_null,
        }))?;
        // SAFETY: `list`/`count` are this call's output arguments, whose
        // capacity `out_spec` read above: `count` is NULL or writable, `list`
        // NULL or valid for `capacity` elements.
        unsafe { write_ulongs(r, list, count, capacity) }
    })
}

/// # Safety
/// PKCS#11 caller contract: `info` is NULL or valid for writes of a
/// `CK_SLOT_INFO`.
#[no_mangle]
pub unsafe extern "C" fn C_GetSlotInfo(slot: CK_SLOT_ID, info: *mut CK_SLOT_INFO) -> CK_RV {
    guard(|| {
        let mut l = lease()?;
        // SAFETY: `info` is NULL (CKR_ARGUMENTS_BAD) or an aligned, writable
        // CK_SLOT_INFO, by this function's contract.
        let out = unsafe { info.as_mut() }.ok_or(CKR_ARGUMENTS_BAD)?;
        let s = body!(l.call(Call::GetSlotInfo(wire::Slot { slot: slot as u64 }))?, SlotInfo);
        fixed(&mut out.slotDescription, &s.slot_description);
        fixed(&mut out.manufacturerID, &s.manufacturer_id);
        out.flags = s.flags as CK_FLAGS;
        out.hardwareVersion = version(s.hardware_version);
        out.firmwareVersion = version(s.firmware_version);
        Ok(())
    })
}

/// # Safety
/// PKCS#11 caller contract: `info` is NULL or valid for writes of a
/// `CK_TOKEN_INFO`.
#[no_mangle]
pub unsafe extern "C" fn C_GetTokenInfo(slot: CK_SLOT_ID, info: *mut CK_TOKEN_INFO) -> CK_RV {
    guard(|| {
        let mut l = lease()?;
        // SAFETY: `info` is NULL (CKR_ARGUMENTS_BAD) or an aligned, writable
        // CK_TOKEN_INFO, by this function's contract.
        let out = unsafe { info.as_mut() }.ok_or(CKR_ARGUMENTS_BAD)?;
        let t = body!(l.call(Call::GetTokenInfo(wire::Slot { slot: slot as u64 }))?, TokenInfo);
        fixed(&mut out.label, &t.label);
        fixed(&mut out.manufacturerID, &t.manufacturer_id);
        fixed(&mut out.model, &t.model);
        fixed(&mut out.serialNumber, &t.serial_number);
        out.flags = t.flags as CK_FLAGS;
        out.ulMaxSessionCount = t.max_session_count as CK_ULONG;
        out.ulSessionCount = t.session_count as CK_ULONG;
        out.ulMaxRwSessionCount = t.max_rw_session_count as CK_ULONG;
        out.ulRwSessionCount = t.rw_session_count as CK_ULONG;
        out.ulMaxPinLen = t.max_pin_len as CK_ULONG;
        out.ulMinPinLen = t.min_pin_len as CK_ULONG;
        out.ulTotalPublicMemory = t.total_public_memory as CK_ULONG;
        out.ulFreePublicMemory = t.free_public_memory as CK_ULONG;
        out.ulTotalPrivateMemory = t.total_private_memory as CK_ULONG;
        out.ulFreePrivateMemory = t.free_private_memory as CK_ULONG;
        out.hardwareVersion = version(t.hardware_version);
        out.firmwareVersion = version(t.firmware_version);
        fixed(&mut out.utcTime, &t.utc_time);
        Ok(())
    })
}

/// # Safety
/// PKCS#11 caller contract: `count` is NULL or valid for reads and writes of
/// a `CK_ULONG`; `list` is NULL or valid for writes of `*count` mechanism
/// types.
#[no_mangle]
pub unsafe extern "C" fn C_GetMechanismList(
    slot: CK_SLOT_ID,
    list: *mut CK_MECHANISM_TYPE,
    count: *mut CK_ULONG,
) -> CK_RV {
    guard(|| {
        let mut l = lease()?;
        // SAFETY: `count` is NULL or a readable CK_ULONG, by this function's
        // contract.
        let (capacity, length_null) = unsafe { out_spec(list, count) };
        let r = l.call(Call::GetMechanismList(wire::GetMechanismList {
            slot: slot as u64,
            capacity,
            length_null,
        }))?;
        // SAFETY: `list`/`count` are this call's output arguments, whose
        // capacity `out_spec` read above: `count` is NULL or writable, `list`
        // NULL or valid for `capacity` elements.
        unsafe { write_ulongs(r, list, count, capacity) }
    })
}

/// # Safety
/// PKCS#11 caller contract: `info` is NULL or valid for writes of a
/// `CK_MECHANISM_INFO`.
#[no_mangle]
pub unsafe extern "C" fn C_GetMechanismInfo(
    slot: CK_SLOT_ID,
    mechanism: CK_MECHANISM_TYPE,
    info: *mut CK_MECHANISM_INFO,
) -> CK_RV {
    guard(|| {
        let mut l = lease()?;
        // SAFETY: `info` is NULL (CKR_ARGUMENTS_BAD) or an aligned, writable
        // CK_MECHANISM_INFO, by this function's contract.
        let out = unsafe { info.as_mut() }.ok_or(CKR_ARGUMENTS_BAD)?;
        let call = Call::GetMechanismInfo(wire::GetMechanismInfo {
            slot: slot as u64,
            mechanism: mechanism as u64,
        });
        let m = body!(l.call(call)?, MechanismInfo);
        out.ulMinKeySize = m.min_key_size as CK_ULONG;
        out.ulMaxKeySize = m.max_key_size as CK_ULONG;
        out.flags = m.flags as CK_FLAGS;
        Ok(())
    })
}

/// # Safety
/// PKCS#11 caller contract: `pin` is NULL or valid for reads of `pin_len`
/// bytes; `label` is NULL or valid for reads of 32 bytes.
#[no_mangle]
pub unsafe extern "C" fn C_InitToken(
    slot: CK_SLOT_ID,
    pin: *mut CK_UTF8CHAR,
    pin_len: CK_ULONG,
    label: *mut CK_UTF8CHAR,
) -> CK_RV {
    guard(|| {
        let mut l = lease()?;
        // The label is a blank-padded 32-byte field.
        // SAFETY: only a non-NULL `label` is read, and by this function's
        // contract (PKCS#11: pLabel is 32 bytes) it is valid for 32 bytes.
        let label = (!label.is_null()).then(|| unsafe { std::slice::from_raw_parts(label, 32) }.to_vec());
        // SAFETY: `pin` is NULL or valid for `pin_len` bytes, by this
        // function's contract.
        let so_pin = unsafe { optional_input(pin, pin_len) };
        check(
            l.call(Call::InitToken(wire::InitToken {
                slot: slot as u64,
                so_pin,
                label,
            }))?
            .rv,
        )
    })
}

/// # Safety
/// PKCS#11 caller contract: `pin` is NULL or valid for reads of `pin_len`
/// bytes.
#[no_mangle]
pub unsafe extern "C" fn C_InitPIN(session: CK_SESSION_HANDLE, pin: *mut CK_UTF8CHAR, pin_len: CK_ULONG) -> CK_RV {
    guard(|| {
        let mut l = lease()?;
        let session = l.session(session)?;
        // SAFETY: `pin` is NULL or valid for `pin_len` bytes, by this
        // function's contract.
        let data = unsafe { optional_input(pin, pin_len) }.unwrap_or_default();
        check(l.call(Call::InitPin(wire::SessionBytes { session, data }))?.rv)
    })
}

/// # Safety
/// PKCS#11 caller contract: `old` is NULL or valid for reads of `old_len`
/// bytes, `new` NULL or valid for reads of `new_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn C_SetPIN(
    session: CK_SESSION_HANDLE,
    old: *mut CK_UTF8CHAR,
    old_len: CK_ULONG,
    new: *mut CK_UTF8CHAR,
    new_len: CK_ULONG,
) -> CK_RV {
    guard(|| {
        let mut l = lease()?;
        let session = l.session(session)?;
        // SAFETY: `old` and `new` are each NULL or valid for their length, by
        // this function's contract.
        let (old_pin, new_pin) = unsafe { (optional_input(old, old_len), optional_input(new, new_len)) };
        check(
            l.call(Call::SetPin(wire::SetPin {
                session,
                old_pin,
                new_pin,
            }))?
            .rv,
        )
    })
}
