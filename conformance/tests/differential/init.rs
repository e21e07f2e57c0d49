//! C_Initialize / C_Finalize and the library state they govern.

use cryptoki_sys::*;
use hsmbridge_conformance::calls::{Api, InitArgs, Out, RW};
use hsmbridge_conformance::oracle::differential;
use hsmbridge_conformance::sweep::every_function;

/// Some work that needs an initialized library (and a slot list for names).
fn use_library(api: &mut Api) {
    api.get_info();
    let (_, slots) = api.slot_list(false, Out::Auto);
    if let Some(slot) = slots.first().copied() {
        let (rv, s) = api.open_session(slot, RW);
        if rv == CKR_OK {
            api.generate_random(s, 16);
            api.close_session(s);
        }
    }
}

fn args(flags: CK_FLAGS, mutexes: [bool; 4]) -> InitArgs {
    InitArgs::Args {
        flags,
        mutexes,
        reserved: false,
    }
}

#[test]
fn function_list_before_initialize() {
    differential(|api| {
        api.get_function_list();
        api.get_info();
        api.finalize();
    });
}

#[test]
fn bad_initialize_arguments() {
    differential(|api| {
        api.initialize(InitArgs::Args {
            flags: 0,
            mutexes: [false; 4],
            reserved: true,
        });
        api.initialize(InitArgs::Args {
            flags: CKF_OS_LOCKING_OK,
            mutexes: [true; 4],
            reserved: true,
        });
        // Mutex callbacks are all or nothing.
        for partial in [
            [true, false, false, false],
            [false, true, true, true],
            [true, true, true, false],
            [true, true, false, false],
        ] {
            api.initialize(args(0, partial));
            api.initialize(args(CKF_OS_LOCKING_OK, partial));
        }
        // None of that initialized the library.
        api.get_info();
    });
}

#[test]
fn initialize_variants_and_reinitialize() {
    differential(|api| {
        let variants = [
            InitArgs::Null,
            InitArgs::NO_THREADS,
            InitArgs::OS_LOCKING,
            InitArgs::APP_MUTEXES,
            args(CKF_OS_LOCKING_OK, [true; 4]),
            args(CKF_LIBRARY_CANT_CREATE_OS_THREADS, [false; 4]),
            args(CKF_LIBRARY_CANT_CREATE_OS_THREADS | CKF_OS_LOCKING_OK, [false; 4]),
        ];
        for init in variants {
            api.initialize(init);
            api.initialize(init);
            api.initialize(InitArgs::Null);
            use_library(api);
            api.finalize_reserved();
            api.finalize();
            api.get_info();
            api.finalize();
        }
    });
}

#[test]
fn every_function_before_initialize() {
    differential(|api| every_function(api, 0, 1, 1));
}

#[test]
fn every_function_after_finalize() {
    differential(|api| {
        api.initialize(InitArgs::Null);
        let (_, slots) = api.slot_list(false, Out::Auto);
        let slot = slots.first().copied().expect("SoftHSM has a slot");
        let s = api.must_open_session(slot, RW);
        api.finalize();
        every_function(api, slot, s, 1);
    });
}
