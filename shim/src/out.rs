//! Writing the backend's answers into the app's output arguments, with the
//! PKCS#11 size-query conventions: a NULL buffer asks for the length, a short
//! buffer gets CKR_BUFFER_TOO_SMALL and the length, nothing else is touched.

use cryptoki_sys::*;
use hsmbridge_proto::wire::{response::Result as Body, Output, Response};

use crate::guard::{check, Rv};

/// An app output buffer as sent: its capacity (`None` for a NULL buffer, a
/// size query) and whether the length pointer itself is NULL. Neither is
/// judged here: the backend decides, so that an operation a bad argument
/// ends in the backend ends here too.
///
/// # Safety
/// `len` is NULL or a properly aligned pointer valid for reads of a
/// `CK_ULONG`. `buf` is only compared with NULL.
pub unsafe fn out_spec<T>(buf: *const T, len: *const CK_ULONG) -> (Option<u64>, bool) {
    // SAFETY: by this function's contract `len` is NULL (None) or aligned and
    // valid for reads of a CK_ULONG.
    match unsafe { len.as_ref() } {
        None => (None, true),
        Some(n) => ((!buf.is_null()).then_some(*n as u64), false),
    }
}

/// Copies an app input buffer; NULL with a length is CKR_ARGUMENTS_BAD.
///
/// # Safety
/// `p` is NULL or valid for reads of `len` bytes.
pub unsafe fn input(p: *const u8, len: CK_ULONG) -> Rv<Vec<u8>> {
    // SAFETY: `copy_bytes` requires exactly this function's contract: `p` is
    // NULL or valid for reads of `len` bytes.
    match unsafe { hsmbridge_proto::mechanism::copy_bytes(p, len) } {
        Some(v) => Ok(v),
        None if len == 0 => Ok(Vec::new()),
        None => Err(CKR_ARGUMENTS_BAD),
    }
}

/// Optional app input: NULL stays `None` (PINs on a protected path).
///
/// # Safety
/// `p` is NULL or valid for reads of `len` bytes.
pub unsafe fn optional_input(p: *const u8, len: CK_ULONG) -> Option<Vec<u8>> {
    // SAFETY: `copy_bytes` requires exactly this function's contract: `p` is
    // NULL or valid for reads of `len` bytes.
    unsafe { hsmbridge_proto::mechanism::copy_bytes(p, len) }
}

/// Writes an `Output` answer into `buf`/`len` (capacity as sent).
///
/// # Safety
/// `buf`/`len` are the app's arguments whose capacity [`out_spec`] read and
/// was sent: `len` is NULL or an aligned pointer valid for writes of a
/// `CK_ULONG`, and `buf` is NULL or valid for writes of `capacity` bytes.
pub unsafe fn write_output(resp: Response, buf: *mut u8, len: *mut CK_ULONG, capacity: Option<u64>) -> Rv {
    let rv = resp.rv;
    if rv == CKR_OK as u64 || rv == CKR_BUFFER_TOO_SMALL as u64 {
        if let Some(Body::Output(Output { data, length })) = resp.result {
            // SAFETY: by this function's contract `len` is NULL (None, not
            // written) or aligned and valid for writes of a CK_ULONG.
            if let Some(len) = unsafe { len.as_mut() } {
                *len = length as CK_ULONG;
            }
            if rv == CKR_OK as u64 && !buf.is_null() && data.len() as u64 <= capacity.unwrap_or(0) {
                // SAFETY: `buf` is not NULL, so by this function's contract it
                // is valid for writes of `capacity` bytes, and `data.len()` is
                // at most `capacity` (both checked just above); `data` is our
                // own freshly decoded Vec, so it cannot overlap the app's buffer.
                unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), buf, data.len()) };
            }
        }
    }
    check(rv)
}

/// Writes a list of CK_ULONGs (slots, mechanisms) with the same conventions.
///
/// # Safety
/// As for [`write_output`]: `count` is NULL or an aligned pointer valid for
/// writes of a `CK_ULONG`, and `list` is NULL or aligned and valid for writes
/// of `capacity` elements.
pub unsafe fn write_ulongs(resp: Response, list: *mut CK_ULONG, count: *mut CK_ULONG, capacity: Option<u64>) -> Rv {
    let rv = resp.rv;
    if rv == CKR_OK as u64 || rv == CKR_BUFFER_TOO_SMALL as u64 {
        if let Some(Body::Ulongs(u)) = resp.result {
            // SAFETY: by this function's contract `count` is NULL (None, not
            // written) or aligned and valid for writes of a CK_ULONG.
            if let Some(count) = unsafe { count.as_mut() } {
                *count = u.count as CK_ULONG;
            }
            if rv == CKR_OK as u64 && !list.is_null() && u.values.len() as u64 <= capacity.unwrap_or(0) {
                for (i, v) in u.values.iter().enumerate() {
                    // SAFETY: `list` is not NULL, so by this function's
                    // contract it is valid for `capacity` elements, and
                    // `i < u.values.len() <= capacity` (checked above).
                    unsafe { *list.add(i) = *v as CK_ULONG };
                }
            }
        }
    }
    check(rv)
}

/// The single CK_ULONG of a successful answer.
pub fn ulong(resp: Response) -> Rv<u64> {
    check(resp.rv)?;
    match resp.result {
        Some(Body::Ulong(v)) => Ok(v),
        _ => Err(CKR_DEVICE_ERROR),
    }
}

/// Copies `src` into a fixed-size blank-padded C field.
pub fn fixed<const N: usize>(dst: &mut [u8; N], src: &[u8]) {
    dst.fill(b' ');
    let n = src.len().min(N);
    dst[..n].copy_from_slice(&src[..n]);
}
