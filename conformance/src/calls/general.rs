//! General-purpose functions, slot and token management.

use std::ffi::c_void;

use cryptoki_sys::*;

use super::{ck, input, mutex, version, Api, Out};
use crate::names;

/// The `pInitArgs` of C_Initialize.
#[derive(Clone, Copy, Debug)]
pub enum InitArgs {
    /// `pInitArgs == NULL`.
    Null,
    /// A `CK_C_INITIALIZE_ARGS` with these flags, these of the four mutex
    /// callbacks (`[create, destroy, lock, unlock]`) and a non-NULL
    /// `pReserved` if `reserved`.
    Args {
        flags: CK_FLAGS,
        mutexes: [bool; 4],
        reserved: bool,
    },
}

impl InitArgs {
    pub const OS_LOCKING: InitArgs = InitArgs::Args {
        flags: CKF_OS_LOCKING_OK,
        mutexes: [false; 4],
        reserved: false,
    };
    pub const NO_THREADS: InitArgs = InitArgs::Args {
        flags: 0,
        mutexes: [false; 4],
        reserved: false,
    };
    pub const APP_MUTEXES: InitArgs = InitArgs::Args {
        flags: 0,
        mutexes: [true; 4],
        reserved: false,
    };
}

impl Api {
    pub fn initialize(&mut self, args: InitArgs) -> CK_RV {
        let mut reserved_target = 0u8;
        match args {
            InitArgs::Null => {
                // SAFETY: C_Initialize is an entry of `self`'s loaded module (see `ck!`); pInitArgs
                // NULL is allowed.
                let rv = unsafe { ck!(self, C_Initialize)(std::ptr::null_mut()) };
                self.line("C_Initialize(NULL)", rv, "")
            }
            InitArgs::Args {
                flags,
                mutexes,
                reserved,
            } => {
                let (create, destroy, lock, unlock) = mutex::callbacks(mutexes);
                let mut a = CK_C_INITIALIZE_ARGS {
                    CreateMutex: create,
                    DestroyMutex: destroy,
                    LockMutex: lock,
                    UnlockMutex: unlock,
                    flags,
                    pReserved: if reserved {
                        (&mut reserved_target as *mut u8).cast()
                    } else {
                        std::ptr::null_mut()
                    },
                };
                // SAFETY: C_Initialize is an entry of `self`'s loaded module (see `ck!`); `a` is a
                // live CK_C_INITIALIZE_ARGS, its callbacks (if any) the `mutex` ones and its
                // pReserved NULL or the live `reserved_target`.
                let rv = unsafe { ck!(self, C_Initialize)((&mut a as *mut CK_C_INITIALIZE_ARGS).cast()) };
                let m: String = mutexes.iter().map(|&b| if b { '1' } else { '0' }).collect();
                self.line(
                    &format!("C_Initialize(flags={flags:#x}, mutexes={m}, reserved={reserved})"),
                    rv,
                    "",
                )
            }
        }
    }

    pub fn finalize(&mut self) -> CK_RV {
        // SAFETY: C_Finalize is an entry of `self`'s loaded module (see `ck!`); pReserved NULL.
        let rv = unsafe { ck!(self, C_Finalize)(std::ptr::null_mut()) };
        self.line("C_Finalize(NULL)", rv, "")
    }

    /// C_Finalize with a non-NULL pReserved (must be CKR_ARGUMENTS_BAD).
    pub fn finalize_reserved(&mut self) -> CK_RV {
        let mut target = 0u8;
        // SAFETY: C_Finalize is an entry of `self`'s loaded module (see `ck!`); the non-NULL
        // pReserved points to the live `target` (the module must refuse it without reading it).
        let rv = unsafe { ck!(self, C_Finalize)((&mut target as *mut u8).cast::<c_void>()) };
        self.line("C_Finalize(reserved)", rv, "")
    }

    pub fn get_info(&mut self) -> CK_RV {
        // SAFETY: CK_INFO is plain C data (integers, byte arrays, versions): all-zero is a valid
        // value.
        let mut info: CK_INFO = unsafe { std::mem::zeroed() };
        // SAFETY: C_GetInfo is an entry of `self`'s loaded module (see `ck!`); `info` is a live,
        // writable CK_INFO.
        let rv = unsafe { ck!(self, C_GetInfo)(&mut info) };
        let details = if rv == CKR_OK {
            format!(
                "cryptoki={} manufacturer={:?} flags={:#x} description={:?} version={}",
                version(&info.cryptokiVersion),
                names::padded(&info.manufacturerID),
                info.flags,
                names::padded(&info.libraryDescription),
                version(&info.libraryVersion)
            )
        } else {
            String::new()
        };
        self.line("C_GetInfo()", rv, &details)
    }

    /// C_GetFunctionList through the function list itself, and the list's version.
    pub fn get_function_list(&mut self) -> CK_RV {
        let mut list: *mut CK_FUNCTION_LIST = std::ptr::null_mut();
        // SAFETY: C_GetFunctionList is an entry of `self`'s loaded module (see `ck!`); `list` is a
        // live, writable pointer.
        let rv = unsafe { ck!(self, C_GetFunctionList)(&mut list) };
        let details = if rv == CKR_OK && !list.is_null() {
            let same = std::ptr::eq(list, self.fl());
            // SAFETY: `list` is not NULL (checked above) and the module returned it with CKR_OK, so
            // it points to its function list, valid while the module is loaded (`self` holds it).
            format!("version={} same_list={same}", version(unsafe { &(*list).version }))
        } else {
            format!("null={}", list.is_null())
        };
        self.line("C_GetFunctionList()", rv, &details)
    }

    /// Lists slots (all, or those with a token). A complete list of all
    /// slots names the slots (`slot0`, …) for the rest of the transcript.
    pub fn slot_list(&mut self, token_present: bool, out: Out) -> (CK_RV, Vec<CK_SLOT_ID>) {
        let f = ck!(self, C_GetSlotList);
        let label = format!("C_GetSlotList(present={token_present})");
        let present = if token_present { CK_TRUE } else { CK_FALSE };
        let show = move |api: &mut Api, ids: &[CK_SLOT_ID]| {
            if !token_present {
                api.t.set_slots(ids);
            }
            ids.iter().map(|s| api.t.slot(*s)).collect::<Vec<_>>().join(" ")
        };
        // SAFETY: `f` is C_GetSlotList, an entry of `self`'s loaded module (see `ck!`); `p`/`n`
        // come from `list_call`.
        self.list_call(&label, out, |p, n| unsafe { f(present, p, n) }, show)
    }

    pub fn slot_info(&mut self, slot: CK_SLOT_ID) -> CK_RV {
        // SAFETY: CK_SLOT_INFO is plain C data (integers, byte arrays, versions): all-zero is a
        // valid value.
        let mut info: CK_SLOT_INFO = unsafe { std::mem::zeroed() };
        // SAFETY: C_GetSlotInfo is an entry of `self`'s loaded module (see `ck!`); `info` is a
        // live, writable CK_SLOT_INFO.
        let rv = unsafe { ck!(self, C_GetSlotInfo)(slot, &mut info) };
        let details = if rv == CKR_OK {
            format!(
                "description={:?} manufacturer={:?} flags={:#x} hw={} fw={}",
                self.t.scrub_slot_ids(&names::padded(&info.slotDescription)),
                names::padded(&info.manufacturerID),
                info.flags,
                version(&info.hardwareVersion),
                version(&info.firmwareVersion)
            )
        } else {
            String::new()
        };
        let call = format!("C_GetSlotInfo({})", self.t.slot(slot));
        self.line(&call, rv, &details)
    }

    /// C_GetTokenInfo; the serial number and clock differ per token and are left out.
    pub fn token_info(&mut self, slot: CK_SLOT_ID) -> (CK_RV, Option<CK_TOKEN_INFO>) {
        // SAFETY: CK_TOKEN_INFO is plain C data (integers, byte arrays, versions): all-zero is a
        // valid value.
        let mut info: CK_TOKEN_INFO = unsafe { std::mem::zeroed() };
        // SAFETY: C_GetTokenInfo is an entry of `self`'s loaded module (see `ck!`); `info` is a
        // live, writable CK_TOKEN_INFO.
        let rv = unsafe { ck!(self, C_GetTokenInfo)(slot, &mut info) };
        let details = if rv == CKR_OK {
            token_info_text(&info)
        } else {
            String::new()
        };
        let call = format!("C_GetTokenInfo({})", self.t.slot(slot));
        self.line(&call, rv, &details);
        (rv, (rv == CKR_OK).then_some(info))
    }

    pub fn mechanism_list(&mut self, slot: CK_SLOT_ID, out: Out) -> (CK_RV, Vec<CK_MECHANISM_TYPE>) {
        let f = ck!(self, C_GetMechanismList);
        let label = format!("C_GetMechanismList({})", self.t.slot(slot));
        let show = |_: &mut Api, ms: &[CK_MECHANISM_TYPE]| {
            ms.iter().map(|m| names::mechanism(*m)).collect::<Vec<_>>().join(" ")
        };
        // SAFETY: `f` is C_GetMechanismList, an entry of `self`'s loaded module (see `ck!`);
        // `p`/`n` come from `list_call`.
        self.list_call(&label, out, |p, n| unsafe { f(slot, p, n) }, show)
    }

    pub fn mechanism_info(&mut self, slot: CK_SLOT_ID, mech: CK_MECHANISM_TYPE) -> CK_RV {
        let mut info = CK_MECHANISM_INFO {
            ulMinKeySize: 0,
            ulMaxKeySize: 0,
            flags: 0,
        };
        // SAFETY: C_GetMechanismInfo is an entry of `self`'s loaded module (see `ck!`); `info` is a
        // live, writable CK_MECHANISM_INFO.
        let rv = unsafe { ck!(self, C_GetMechanismInfo)(slot, mech, &mut info) };
        let details = if rv == CKR_OK {
            format!(
                "min={} max={} flags={:#x}",
                info.ulMinKeySize, info.ulMaxKeySize, info.flags
            )
        } else {
            String::new()
        };
        let call = format!("C_GetMechanismInfo({}, {})", self.t.slot(slot), names::mechanism(mech));
        self.line(&call, rv, &details)
    }

    pub fn init_token(&mut self, slot: CK_SLOT_ID, so_pin: &str, label: &str) -> CK_RV {
        let mut padded = [b' '; 32];
        padded[..label.len()].copy_from_slice(label.as_bytes());
        let (pin, len) = input(so_pin.as_bytes());
        // SAFETY: C_InitToken is an entry of `self`'s loaded module (see `ck!`); `pin` holds the
        // `len` PIN bytes (see `input`), `padded` is the 32-byte label PKCS#11 requires.
        let rv = unsafe { ck!(self, C_InitToken)(slot, pin, len, padded.as_mut_ptr()) };
        let call = format!("C_InitToken({}, so_pin={so_pin:?}, label={label:?})", self.t.slot(slot));
        self.line(&call, rv, "")
    }

    pub fn wait_for_slot_event(&mut self, flags: CK_FLAGS) -> CK_RV {
        let mut slot: CK_SLOT_ID = BAD_SLOT;
        // SAFETY: C_WaitForSlotEvent is an entry of `self`'s loaded module (see `ck!`); `slot` is a
        // live, writable slot id, pReserved NULL.
        let rv = unsafe { ck!(self, C_WaitForSlotEvent)(flags, &mut slot, std::ptr::null_mut()) };
        let details = if rv == CKR_OK { self.t.slot(slot) } else { String::new() };
        self.line(&format!("C_WaitForSlotEvent(flags={flags:#x})"), rv, &details)
    }
}

/// A slot id no module uses here.
pub const BAD_SLOT: CK_SLOT_ID = 0x0bad_51de;

pub(crate) fn token_info_text(i: &CK_TOKEN_INFO) -> String {
    format!(
        "label={:?} manufacturer={:?} model={:?} flags={:#x} sessions={}/{} rw={}/{} pin={}..{} \
         public={}/{} private={}/{} hw={} fw={}",
        names::padded(&i.label),
        names::padded(&i.manufacturerID),
        names::padded(&i.model),
        i.flags,
        i.ulSessionCount,
        i.ulMaxSessionCount,
        i.ulRwSessionCount,
        i.ulMaxRwSessionCount,
        i.ulMinPinLen,
        i.ulMaxPinLen,
        i.ulFreePublicMemory,
        i.ulTotalPublicMemory,
        i.ulFreePrivateMemory,
        i.ulTotalPrivateMemory,
        version(&i.hardwareVersion),
        version(&i.firmwareVersion)
    )
}
