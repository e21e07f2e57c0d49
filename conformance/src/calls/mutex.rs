//! Application-supplied mutex callbacks for C_Initialize (pthread mutexes).

use std::ffi::c_void;

use cryptoki_sys::*;

/// CreateMutex.
///
/// # Safety
/// PKCS#11 CreateMutex contract: `out` is NULL or valid for writes of a
/// pointer.
unsafe extern "C" fn create(out: *mut *mut c_void) -> CK_RV {
    if out.is_null() {
        return CKR_ARGUMENTS_BAD;
    }
    let m: Box<libc::pthread_mutex_t> = Box::new(libc::PTHREAD_MUTEX_INITIALIZER);
    // SAFETY: `out` is not NULL (checked above), so by this function's
    // contract it is valid for writes of a pointer.
    unsafe { *out = Box::into_raw(m).cast() };
    CKR_OK
}

/// DestroyMutex.
///
/// # Safety
/// PKCS#11 DestroyMutex contract: `m` is NULL or a mutex made by [`create`],
/// not locked, and never used again.
unsafe extern "C" fn destroy(m: *mut c_void) -> CK_RV {
    if m.is_null() {
        return CKR_MUTEX_BAD;
    }
    // SAFETY: `m` is not NULL, so by this function's contract it is an
    // initialized, unlocked pthread mutex made by `create`.
    unsafe { libc::pthread_mutex_destroy(m.cast()) };
    // Allocated by `create` as a Box.
    // SAFETY: `create` made `m` with `Box::into_raw` of this type, and by this
    // function's contract nothing uses it after this call, so it is freed once.
    drop(unsafe { Box::from_raw(m.cast::<libc::pthread_mutex_t>()) });
    CKR_OK
}

/// LockMutex.
///
/// # Safety
/// PKCS#11 LockMutex contract: `m` is NULL or a live mutex made by
/// [`create`] (not yet destroyed).
unsafe extern "C" fn lock(m: *mut c_void) -> CK_RV {
    if m.is_null() {
        return CKR_MUTEX_BAD;
    }
    // SAFETY: `m` is not NULL, so by this function's contract it is a live
    // pthread mutex made by `create`.
    if unsafe { libc::pthread_mutex_lock(m.cast()) } == 0 {
        CKR_OK
    } else {
        CKR_GENERAL_ERROR
    }
}

/// UnlockMutex.
///
/// # Safety
/// PKCS#11 UnlockMutex contract: `m` is NULL or a live mutex made by
/// [`create`] (not yet destroyed) that the calling thread holds (POSIX leaves
/// unlocking a default mutex it does not hold undefined).
unsafe extern "C" fn unlock(m: *mut c_void) -> CK_RV {
    if m.is_null() {
        return CKR_MUTEX_BAD;
    }
    // SAFETY: `m` is not NULL, so by this function's contract it is a live
    // pthread mutex made by `create`, held by this thread.
    if unsafe { libc::pthread_mutex_unlock(m.cast()) } == 0 {
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
