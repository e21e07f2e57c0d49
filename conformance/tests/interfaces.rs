//! PKCS#11 3.0 entry points the shim exports next to C_GetFunctionList
//! (DESIGN.md point 1). SoftHSM 2.6 has none, so this is shim-only.

use std::ffi::CStr;
use std::ptr::null_mut;

use cryptoki_sys::*;
use hsmbridge_conformance::calls::InitArgs;
use hsmbridge_conformance::names;
use hsmbridge_conformance::oracle::on_shim;
use hsmbridge_conformance::sidecar::Sidecar;

type GetInterfaceList = unsafe extern "C" fn(*mut CK_INTERFACE, *mut CK_ULONG) -> CK_RV;
type GetInterface = unsafe extern "C" fn(*mut CK_UTF8CHAR, *mut CK_VERSION, *mut *mut CK_INTERFACE, CK_FLAGS) -> CK_RV;

fn interface_name(i: &CK_INTERFACE) -> String {
    assert!(!i.pInterfaceName.is_null(), "interface with a NULL name");
    // SAFETY: `i` was filled in by the shim's C_GetInterfaceList/C_GetInterface, so its name
    // (not NULL: asserted above) is a NUL-terminated string in the shim's static data, which stays
    // mapped while the test's `api` keeps the library loaded (all callers run inside `on_shim`).
    unsafe { CStr::from_ptr(i.pInterfaceName as *const std::ffi::c_char) }
        .to_string_lossy()
        .into_owned()
}

fn list_version(i: &CK_INTERFACE) -> CK_VERSION {
    assert!(
        !i.pFunctionList.is_null(),
        "interface {} with a NULL function list",
        interface_name(i)
    );
    // Every function list starts with its CK_VERSION.
    // SAFETY: `pFunctionList` (not NULL: asserted above) was set by the shim to one of its
    // static function lists, each a C struct whose first field is a CK_VERSION (so the pointer is
    // aligned for it), mapped while `api` keeps the library loaded.
    unsafe { *(i.pFunctionList as *const CK_VERSION) }
}

#[test]
fn get_interface_list_and_get_interface() {
    on_shim(Sidecar::start, |api| {
        let lib = api.module().library();
        // Plain function pointers: the library stays loaded as long as `api`.
        // SAFETY: `GetInterfaceList` is C_GetInterfaceList's PKCS#11 3.0 prototype
        // (CK_C_GetInterfaceList); the copied pointer is used only in this closure, while `api`
        // (which owns the library) lives.
        let list: GetInterfaceList = *unsafe { lib.get::<GetInterfaceList>(b"C_GetInterfaceList\0") }
            .expect("the shim exports C_GetInterfaceList");
        let get: GetInterface =
            // SAFETY: `GetInterface` is C_GetInterface's PKCS#11 3.0 prototype
            // (CK_C_GetInterface); used only in this closure, while `api` keeps the library loaded.
            *unsafe { lib.get::<GetInterface>(b"C_GetInterface\0") }.expect("the shim exports C_GetInterface");

        // Before C_Initialize, like C_GetFunctionList.
        let mut count: CK_ULONG = 0;
        // SAFETY: `list` is the loaded shim's C_GetInterfaceList; pInterfacesList NULL is the
        // length query, pulCount the live local `count`.
        let rv = unsafe { list(null_mut(), &mut count) };
        assert_eq!(rv, CKR_OK, "C_GetInterfaceList(NULL): {}", names::rv(rv));
        assert!(count >= 1, "no interface listed");
        assert_eq!(
            // SAFETY: `list` is the loaded shim's C_GetInterfaceList; pulCount is deliberately
            // NULL, which its argument validation refuses (CKR_ARGUMENTS_BAD, asserted here)
            // before any write; pInterfacesList NULL asks for no list.
            unsafe { list(null_mut(), null_mut()) },
            CKR_ARGUMENTS_BAD,
            "C_GetInterfaceList(NULL, NULL)"
        );
        let mut interfaces = vec![
            CK_INTERFACE {
                pInterfaceName: null_mut(),
                pFunctionList: null_mut(),
                flags: 0
            };
            count as usize
        ];
        if count > 1 {
            let mut short: CK_ULONG = 1;
            // SAFETY: `list` is the loaded shim's C_GetInterfaceList; `interfaces` has `count` (> 1)
            // writable entries, more than the 1 that `short` offers.
            let rv = unsafe { list(interfaces.as_mut_ptr(), &mut short) };
            assert_eq!(rv, CKR_BUFFER_TOO_SMALL, "short C_GetInterfaceList");
        }
        // SAFETY: `list` is the loaded shim's C_GetInterfaceList; `interfaces` has `count`
        // writable entries, as `count` says.
        let rv = unsafe { list(interfaces.as_mut_ptr(), &mut count) };
        assert_eq!(rv, CKR_OK, "C_GetInterfaceList: {}", names::rv(rv));
        let v2 = interfaces
            .iter()
            .find(|i| interface_name(i) == "PKCS 11" && list_version(i).major == 2)
            .expect("a \"PKCS 11\" interface with a version 2.x function list");
        assert_eq!(list_version(v2).minor, 40, "the v2 interface is 2.40");
        for i in &interfaces {
            api.note(format!(
                "interface {:?} version {}.{} flags {:#x}",
                interface_name(i),
                list_version(i).major,
                list_version(i).minor,
                i.flags
            ));
        }

        // C_GetInterface: default, by name, by name and version, unknown name.
        let mut found: *mut CK_INTERFACE = null_mut();
        assert_eq!(
            // SAFETY: `get` is the loaded shim's C_GetInterface; NULL name and version ask for
            // the default interface; ppInterface is the live local `found`.
            unsafe { get(null_mut(), null_mut(), &mut found, 0) },
            CKR_OK,
            "C_GetInterface(default)"
        );
        assert!(!found.is_null(), "C_GetInterface returned NULL");
        let mut name = *b"PKCS 11\0";
        let mut version = CK_VERSION { major: 2, minor: 40 };
        assert_eq!(
            // SAFETY: `get` is the loaded shim's C_GetInterface; `name` is a NUL-terminated local
            // (only read), `version` a live local CK_VERSION, ppInterface the live local `found`.
            unsafe { get(name.as_mut_ptr(), &mut version, &mut found, 0) },
            CKR_OK,
            "C_GetInterface(PKCS 11, 2.40)"
        );
        // SAFETY: `found` was non-NULL (asserted after the first C_GetInterface), and the
        // CKR_OK just asserted means C_GetInterface set it to one of the shim's static
        // CK_INTERFACEs, which stay valid while `api` keeps the library loaded.
        let by_name = unsafe { &*found };
        assert_eq!(
            list_version(by_name).major,
            2,
            "C_GetInterface(2.40) gave another version"
        );
        assert_eq!(
            // SAFETY: `get` is the loaded shim's C_GetInterface; `name` is a NUL-terminated local;
            // ppInterface is deliberately NULL, which its argument validation refuses
            // (CKR_ARGUMENTS_BAD, asserted here) before any write.
            unsafe { get(name.as_mut_ptr(), null_mut(), null_mut(), 0) },
            CKR_ARGUMENTS_BAD,
            "NULL ppInterface"
        );
        let mut unknown = *b"No Such Interface\0";
        assert_ne!(
            // SAFETY: `get` is the loaded shim's C_GetInterface; `unknown` is a NUL-terminated
            // local (only read), version NULL (any), ppInterface the live local `found`.
            unsafe { get(unknown.as_mut_ptr(), null_mut(), &mut found, 0) },
            CKR_OK,
            "unknown interface name"
        );

        // The function list behind the interface is the module's.
        // SAFETY: `by_name`'s function list is not NULL and is version 2.x (both asserted above
        // via `list_version`), so it is the shim's static CK_FUNCTION_LIST (2.40 layout), valid
        // while `api` keeps the library loaded, i.e. for the rest of this closure.
        let fl = unsafe { &*(by_name.pFunctionList as *const CK_FUNCTION_LIST) };
        assert_eq!(api.initialize(InitArgs::Null), CKR_OK, "C_Initialize");
        // SAFETY: CK_INFO is plain C data (integers, byte arrays, versions): all-zero is a valid
        // value.
        let mut info: CK_INFO = unsafe { std::mem::zeroed() };
        // SAFETY: C_GetInfo is an entry of `fl`, the loaded shim's function list (see above),
        // called after C_Initialize; `info` is a live, writable CK_INFO.
        let rv = unsafe { fl.C_GetInfo.expect("C_GetInfo in the interface's function list")(&mut info) };
        assert_eq!(rv, CKR_OK, "C_GetInfo through the interface: {}", names::rv(rv));
        assert_eq!(api.finalize(), CKR_OK, "C_Finalize");
    });
}
