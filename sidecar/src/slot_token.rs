//! Slot and token management, and library info.

use cryptoki_sys::*;
use hsmbridge_proto::wire::{self, response::Result as Body};

use crate::apps::App;
use crate::backend::p11;
use crate::reply;
use crate::service::{Answer, Service};

fn version(v: CK_VERSION) -> Option<wire::Version> {
    Some(wire::Version {
        major: v.major as u32,
        minor: v.minor as u32,
    })
}

impl Service {
    pub(crate) fn get_info(&self) -> Answer {
        let mut i = CK_INFO::default();
        // SAFETY: `i` is a live, aligned CK_INFO for the module to fill.
        let rv = unsafe { p11!(self.backend, C_GetInfo(&mut i)) };
        Ok(reply::on_ok(rv, || {
            Body::Info(wire::Info {
                cryptoki_version: version(i.cryptokiVersion),
                manufacturer_id: i.manufacturerID.to_vec(),
                flags: i.flags as u64,
                library_description: i.libraryDescription.to_vec(),
                library_version: version(i.libraryVersion),
            })
        }))
    }

    pub(crate) fn get_slot_list(&self, c: wire::GetSlotList) -> Answer {
        let present = c.token_present as CK_BBOOL;
        // SAFETY: `with_ulongs`'s buffer and count are valid for the call (see there).
        Ok(reply::with_ulongs(c.capacity, c.length_null, |p, n| unsafe {
            p11!(self.backend, C_GetSlotList(present, p, n))
        }))
    }

    pub(crate) fn get_slot_info(&self, slot: u64) -> Answer {
        let mut s = CK_SLOT_INFO::default();
        // SAFETY: `s` is a live, aligned CK_SLOT_INFO for the module to fill.
        let rv = unsafe { p11!(self.backend, C_GetSlotInfo(slot as CK_SLOT_ID, &mut s)) };
        Ok(reply::on_ok(rv, || {
            Body::SlotInfo(wire::SlotInfo {
                slot_description: s.slotDescription.to_vec(),
                manufacturer_id: s.manufacturerID.to_vec(),
                flags: s.flags as u64,
                hardware_version: version(s.hardwareVersion),
                firmware_version: version(s.firmwareVersion),
            })
        }))
    }

    pub(crate) fn get_token_info(&self, slot: u64) -> Answer {
        let mut t = CK_TOKEN_INFO::default();
        // SAFETY: `t` is a live, aligned CK_TOKEN_INFO for the module to fill.
        let rv = unsafe { p11!(self.backend, C_GetTokenInfo(slot as CK_SLOT_ID, &mut t)) };
        let mut flags = t.flags;
        if self.logins.managed() {
            // The sidecar supplies the PIN: apps log in with a NULL PIN.
            flags |= CKF_PROTECTED_AUTHENTICATION_PATH;
        }
        Ok(reply::on_ok(rv, || {
            Body::TokenInfo(wire::TokenInfo {
                label: t.label.to_vec(),
                manufacturer_id: t.manufacturerID.to_vec(),
                model: t.model.to_vec(),
                serial_number: t.serialNumber.to_vec(),
                flags: flags as u64,
                max_session_count: t.ulMaxSessionCount as u64,
                session_count: t.ulSessionCount as u64,
                max_rw_session_count: t.ulMaxRwSessionCount as u64,
                rw_session_count: t.ulRwSessionCount as u64,
                max_pin_len: t.ulMaxPinLen as u64,
                min_pin_len: t.ulMinPinLen as u64,
                total_public_memory: t.ulTotalPublicMemory as u64,
                free_public_memory: t.ulFreePublicMemory as u64,
                total_private_memory: t.ulTotalPrivateMemory as u64,
                free_private_memory: t.ulFreePrivateMemory as u64,
                hardware_version: version(t.hardwareVersion),
                firmware_version: version(t.firmwareVersion),
                utc_time: t.utcTime.to_vec(),
            })
        }))
    }

    pub(crate) fn get_mechanism_list(&self, c: wire::GetMechanismList) -> Answer {
        let slot = c.slot as CK_SLOT_ID;
        // SAFETY: `with_ulongs`'s buffer and count are valid for the call (see there).
        Ok(reply::with_ulongs(c.capacity, c.length_null, |p, n| unsafe {
            p11!(self.backend, C_GetMechanismList(slot, p, n))
        }))
    }

    pub(crate) fn get_mechanism_info(&self, c: wire::GetMechanismInfo) -> Answer {
        let mut m = CK_MECHANISM_INFO::default();
        // SAFETY: `m` is a live, aligned CK_MECHANISM_INFO for the module to fill.
        let rv = unsafe {
            p11!(
                self.backend,
                C_GetMechanismInfo(c.slot as CK_SLOT_ID, c.mechanism as CK_MECHANISM_TYPE, &mut m)
            )
        };
        Ok(reply::on_ok(rv, || {
            Body::MechanismInfo(wire::MechanismInfo {
                min_key_size: m.ulMinKeySize as u64,
                max_key_size: m.ulMaxKeySize as u64,
                flags: m.flags as u64,
            })
        }))
    }

    pub(crate) fn init_token(&self, c: wire::InitToken) -> Answer {
        if self.logins.managed() {
            // The token's credential belongs to the sidecar, not to apps.
            return Err(CKR_FUNCTION_NOT_SUPPORTED);
        }
        let mut label = c.label.map(|l| {
            let mut field = [b' '; 32];
            let n = l.len().min(32);
            field[..n].copy_from_slice(&l[..n]);
            field
        });
        let label = label.as_mut().map_or(std::ptr::null_mut(), |l| l.as_mut_ptr());
        let mut pin = zeroize::Zeroizing::new(c.so_pin);
        let (p, len) = match pin.as_mut() {
            Some(p) => (p.as_mut_ptr(), p.len() as CK_ULONG),
            None => (std::ptr::null_mut(), 0),
        };
        // SAFETY: `p`/`len` are the SO PIN `pin` owns (or NULL, 0: protected path); `label` points to
        // the 32-byte field PKCS#11 requires, in the (shadowed) padded array above, or is NULL as the
        // app passed it (the module refuses that). Both buffers outlive the call.
        let rv = unsafe { p11!(self.backend, C_InitToken(c.slot as CK_SLOT_ID, p, len, label)) };
        if rv == CKR_OK {
            self.logins.forget_slot(c.slot as CK_SLOT_ID);
        }
        Ok(reply::rv(rv))
    }

    pub(crate) fn init_pin(&self, app: &App, c: wire::SessionBytes) -> Answer {
        let s = self.session(app, c.session)?;
        if self.logins.managed() {
            // The user PIN is the sidecar's.
            return Err(CKR_FUNCTION_NOT_SUPPORTED);
        }
        let mut pin = zeroize::Zeroizing::new(c.data);
        // SAFETY: `pin` owns the PIN bytes given with their length and outlives the call; `s` is the app's.
        Ok(reply::rv(unsafe {
            p11!(self.backend, C_InitPIN(s, pin.as_mut_ptr(), pin.len() as CK_ULONG))
        }))
    }

    pub(crate) fn set_pin(&self, app: &App, c: wire::SetPin) -> Answer {
        let s = self.session(app, c.session)?;
        if self.logins.managed() {
            return Err(CKR_FUNCTION_NOT_SUPPORTED);
        }
        let mut old = zeroize::Zeroizing::new(c.old_pin);
        let mut new = zeroize::Zeroizing::new(c.new_pin);
        let (op, ol) = ptr_len(old.as_mut());
        let (np, nl) = ptr_len(new.as_mut());
        // SAFETY: `op`/`ol` and `np`/`nl` are the PINs `old` and `new` own (or NULL, 0), which outlive the
        // call; `s` is the app's.
        Ok(reply::rv(unsafe { p11!(self.backend, C_SetPIN(s, op, ol, np, nl)) }))
    }
}

/// A byte buffer as (pointer, length), NULL for `None`.
pub fn ptr_len(v: Option<&mut Vec<u8>>) -> (*mut u8, CK_ULONG) {
    match v {
        Some(v) => (v.as_mut_ptr(), v.len() as CK_ULONG),
        None => (std::ptr::null_mut(), 0),
    }
}
