//! Application-supplied mutex callbacks for C_Initialize (pthread mutexes).

use std::ffi::c_void;

use cryptoki_sys::*;

unsafe extern "C" fn create(out: *mut *mut c_void) -> CK_RV {
    if out.is_null() {
        return CKR_ARGUMENTS_BAD;
    }
    let m: Box<libc::pthread_mutex_t> = Box::new(libc::PTHREAD_MUTEX_INITIALIZER);
    *out = Box::into_raw(m).cast();
    CKR_OK
}

unsafe extern "C" fn destroy(m: *mut c_void) -> CK_RV {
    if m.is_null() {
        return CKR_MUTEX_BAD;
    }
    libc::pthread_mutex_destroy(m.cast());
    // Allocated by `create` as a Box.
    drop(Box::from_raw(m.cast::<libc::pthread_mutex_t>()));
    CKR_OK
}

unsafe extern "C" fn lock(m: *mut c_void) -> CK_RV {
    if m.is_null() {
        return CKR_MUTEX_BAD;
    }
    if libc::pthread_mutex_lock(m.cast()) == 0 {
        CKR_OK
    } else {
        CKR_GENERAL_ERROR
    }
}

unsafe extern "C" fn unlock(m: *mut c_void) -> CK_RV {
    if m.is_null() {
        return CKR_MUTEX_BAD;
    }
    if libc::pthread_mutex_unlock(m.cast()) == 0 {
        CKR_OK
    } else {
        CKR_MUTEX_NOT_LOCKED
    }
}

/// Which of the four callbacks to pass (`[create, destroy, lock, unlock]`).
pub(crate) fn callbacks(which: [bool; 4]) -> (CK_CREATEMUTEX, CK_DESTROYMUTEX, CK_LOCKMUTEX, CK_UNLOCKMUTEX) {
    (
        which[0].then_some(create as unsafe extern "C" fn(*mut *mut c_void) -> CK_RV),
        which[1].then_some(destroy as unsafe extern "C" fn(*mut c_void) -> CK_RV),
        which[2].then_some(lock as unsafe extern "C" fn(*mut c_void) -> CK_RV),
        which[3].then_some(unlock as unsafe extern "C" fn(*mut c_void) -> CK_RV),
    )
}
