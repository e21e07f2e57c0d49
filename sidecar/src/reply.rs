//! Building responses from backend results, with the PKCS#11 output-buffer
//! conventions applied on the backend's side of the socket.

use cryptoki_sys::*;
use hsmbridge_proto::limits::{MAX_DATA, MAX_LIST};
use hsmbridge_proto::wire::{response::Result as Body, Output, Response, Ulongs};

pub fn rv(rv: CK_RV) -> Response {
    Response {
        rv: rv as u64,
        result: None,
        peer_spins: false,
    }
}

/// A CK_RV with a body that only means something on success.
pub fn on_ok(rv: CK_RV, body: impl FnOnce() -> Body) -> Response {
    Response {
        rv: rv as u64,
        result: (rv == CKR_OK).then(body),
        peer_spins: false,
    }
}

pub fn ulong(rv: CK_RV, v: CK_ULONG) -> Response {
    on_ok(rv, || Body::Ulong(v as u64))
}

/// Runs `f` with output arguments shaped like the app's: a NULL buffer for
/// a size query, else `capacity` bytes; a NULL length pointer if the app
/// passed one. The backend's CK_RV, length and bytes go back. A buffer is
/// at most `MAX_DATA` bytes whatever the app's capacity: an output that needs
/// more than that, though the app's buffer would hold it, is CKR_HOST_MEMORY.
///
/// What `f` gets is valid until it returns: the buffer is NULL or a live
/// allocation of the (capped) capacity in bytes, and the length pointer NULL
/// or a live CK_ULONG holding that size (0 with a NULL buffer).
pub fn with_output(
    capacity: Option<u64>,
    length_null: bool,
    f: impl FnOnce(*mut u8, *mut CK_ULONG) -> CK_RV,
) -> Response {
    let cap = capacity.map(|c| c.min(MAX_DATA as u64) as usize);
    if let Err(rv) = crate::answer_budget::reserve(cap.unwrap_or(0)) {
        return self::rv(rv);
    }
    let mut buf = vec![0u8; cap.unwrap_or(0)];
    let mut len = cap.unwrap_or(0) as CK_ULONG;
    let p = if cap.is_some() {
        buf.as_mut_ptr()
    } else {
        std::ptr::null_mut()
    };
    let rv = f(p, if length_null { std::ptr::null_mut() } else { &mut len });
    if rv != CKR_OK && rv != CKR_BUFFER_TOO_SMALL {
        return self::rv(rv);
    }
    if rv == CKR_BUFFER_TOO_SMALL && capacity.is_some_and(|c| c > MAX_DATA as u64 && len as u64 <= c) {
        return self::rv(CKR_HOST_MEMORY);
    }
    let wrote = rv == CKR_OK && cap.is_some() && (len as usize) <= buf.len();
    buf.truncate(if wrote { len as usize } else { 0 });
    Response {
        rv: rv as u64,
        result: Some(Body::Output(Output {
            data: buf,
            length: len as u64,
        })),
        peer_spins: false,
    }
}

/// The same for lists of CK_ULONGs (slots, mechanisms): the buffer is NULL
/// or live for the (capped) capacity in CK_ULONGs, and the count pointer NULL
/// or a live CK_ULONG holding that count.
pub fn with_ulongs(
    capacity: Option<u64>,
    length_null: bool,
    f: impl FnOnce(*mut CK_ULONG, *mut CK_ULONG) -> CK_RV,
) -> Response {
    let cap = capacity.map(|c| c.min(MAX_LIST as u64) as usize);
    let mut buf: Vec<CK_ULONG> = vec![0; cap.unwrap_or(0)];
    let mut count = cap.unwrap_or(0) as CK_ULONG;
    let p = if cap.is_some() {
        buf.as_mut_ptr()
    } else {
        std::ptr::null_mut()
    };
    let rv = f(p, if length_null { std::ptr::null_mut() } else { &mut count });
    if rv != CKR_OK && rv != CKR_BUFFER_TOO_SMALL {
        return self::rv(rv);
    }
    let wrote = rv == CKR_OK && cap.is_some() && (count as usize) <= buf.len();
    buf.truncate(if wrote { count as usize } else { 0 });
    let values = buf.into_iter().map(|v| v as u64).collect();
    Response {
        rv: rv as u64,
        result: Some(Body::Ulongs(Ulongs {
            values,
            count: count as u64,
        })),
        peer_spins: false,
    }
}
