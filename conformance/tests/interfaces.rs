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
    unsafe { *(i.pFunctionList as *const CK_VERSION) }
}

#[test]
fn get_interface_list_and_get_interface() {
    on_shim(Sidecar::start, |api| {
        let lib = api.module().library();
        // Plain function pointers: the library stays loaded as long as `api`.
        let list: GetInterfaceList = *unsafe { lib.get::<GetInterfaceList>(b"C_GetInterfaceList\0") }
            .expect("the shim exports C_GetInterfaceList");
        let get: GetInterface =
            *unsafe { lib.get::<GetInterface>(b"C_GetInterface\0") }.expect("the shim exports C_GetInterface");

        // Before C_Initialize, like C_GetFunctionList.
        let mut count: CK_ULONG = 0;
        let rv = unsafe { list(null_mut(), &mut count) };
        assert_eq!(rv, CKR_OK, "C_GetInterfaceList(NULL): {}", names::rv(rv));
        assert!(count >= 1, "no interface listed");
        assert_eq!(
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
            let rv = unsafe { list(interfaces.as_mut_ptr(), &mut short) };
            assert_eq!(rv, CKR_BUFFER_TOO_SMALL, "short C_GetInterfaceList");
        }
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
            unsafe { get(null_mut(), null_mut(), &mut found, 0) },
            CKR_OK,
            "C_GetInterface(default)"
        );
        assert!(!found.is_null(), "C_GetInterface returned NULL");
        let mut name = *b"PKCS 11\0";
        let mut version = CK_VERSION { major: 2, minor: 40 };
        assert_eq!(
            unsafe { get(name.as_mut_ptr(), &mut version, &mut found, 0) },
            CKR_OK,
            "C_GetInterface(PKCS 11, 2.40)"
        );
        let by_name = unsafe { &*found };
        assert_eq!(
            list_version(by_name).major,
            2,
            "C_GetInterface(2.40) gave another version"
        );
        assert_eq!(
            unsafe { get(name.as_mut_ptr(), null_mut(), null_mut(), 0) },
            CKR_ARGUMENTS_BAD,
            "NULL ppInterface"
        );
        let mut unknown = *b"No Such Interface\0";
        assert_ne!(
            unsafe { get(unknown.as_mut_ptr(), null_mut(), &mut found, 0) },
            CKR_OK,
            "unknown interface name"
        );

        // The function list behind the interface is the module's.
        let fl = unsafe { &*(by_name.pFunctionList as *const CK_FUNCTION_LIST) };
        assert_eq!(api.initialize(InitArgs::Null), CKR_OK, "C_Initialize");
        let mut info: CK_INFO = unsafe { std::mem::zeroed() };
        let rv = unsafe { fl.C_GetInfo.expect("C_GetInfo in the interface's function list")(&mut info) };
        assert_eq!(rv, CKR_OK, "C_GetInfo through the interface: {}", names::rv(rv));
        assert_eq!(api.finalize(), CKR_OK, "C_Finalize");
    });
}
