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
/// `len` is NULL or valid for reads.
pub unsafe fn out_spec<T>(buf: *const T, len: *const CK_ULONG) -> (Option<u64>, bool) {
    match len.as_ref() {
        None => (None, true),
        Some(n) => ((!buf.is_null()).then_some(*n as u64), false),
    }
}

/// Copies an app input buffer; NULL with a length is CKR_ARGUMENTS_BAD.
///
/// # Safety
/// `p` is NULL or valid for `len` bytes.
pub unsafe fn input(p: *const u8, len: CK_ULONG) -> Rv<Vec<u8>> {
    match hsmbridge_proto::mechanism::copy_bytes(p, len) {
        Some(v) => Ok(v),
        None if len == 0 => Ok(Vec::new()),
        None => Err(CKR_ARGUMENTS_BAD),
    }
}

/// Optional app input: NULL stays `None` (PINs on a protected path).
///
/// # Safety
/// `p` is NULL or valid for `len` bytes.
pub unsafe fn optional_input(p: *const u8, len: CK_ULONG) -> Option<Vec<u8>> {
    hsmbridge_proto::mechanism::copy_bytes(p, len)
}

/// Writes an `Output` answer into `buf`/`len` (capacity as sent).
///
/// # Safety
/// `buf`/`len` are the app's arguments whose capacity was sent.
pub unsafe fn write_output(resp: Response, buf: *mut u8, len: *mut CK_ULONG, capacity: Option<u64>) -> Rv {
    let rv = resp.rv;
    if rv == CKR_OK as u64 || rv == CKR_BUFFER_TOO_SMALL as u64 {
        if let Some(Body::Output(Output { data, length })) = resp.result {
            if let Some(len) = len.as_mut() {
                *len = length as CK_ULONG;
            }
            if rv == CKR_OK as u64 && !buf.is_null() && data.len() as u64 <= capacity.unwrap_or(0) {
                std::ptr::copy_nonoverlapping(data.as_ptr(), buf, data.len());
            }
        }
    }
    check(rv)
}

/// Writes a list of CK_ULONGs (slots, mechanisms) with the same conventions.
///
/// # Safety
/// As for [`write_output`], with `list` valid for `capacity` elements.
pub unsafe fn write_ulongs(resp: Response, list: *mut CK_ULONG, count: *mut CK_ULONG, capacity: Option<u64>) -> Rv {
    let rv = resp.rv;
    if rv == CKR_OK as u64 || rv == CKR_BUFFER_TOO_SMALL as u64 {
        if let Some(Body::Ulongs(u)) = resp.result {
            if let Some(count) = count.as_mut() {
                *count = u.count as CK_ULONG;
            }
            if rv == CKR_OK as u64 && !list.is_null() && u.values.len() as u64 <= capacity.unwrap_or(0) {
                for (i, v) in u.values.iter().enumerate() {
                    *list.add(i) = *v as CK_ULONG;
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
