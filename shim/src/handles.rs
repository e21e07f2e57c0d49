//! Session and object handles the app sees carry the client epoch in their
//! high bits, so that a handle from before a sidecar restart or a
//! C_Finalize can never alias a new backend handle: it is rejected as
//! `*_HANDLE_INVALID` instead of reaching a different key. Epoch 0 (the
//! first C_Initialize of a process) leaves handles exactly as the backend
//! made them.

use cryptoki_sys::CK_ULONG;

const SHIFT: u32 = 40;
const LOW: u64 = (1 << SHIFT) - 1;
const EPOCH_BITS: u64 = 0xffff;

pub fn tag(backend: u64, epoch: u64) -> CK_ULONG {
    if backend == 0 {
        return 0;
    }
    (backend | ((epoch & EPOCH_BITS) << SHIFT)) as CK_ULONG
}

/// The backend handle if `app` belongs to `epoch`; `None` otherwise.
pub fn untag(app: CK_ULONG, epoch: u64) -> Option<u64> {
    let app = app as u64;
    if app == 0 {
        // CK_INVALID_HANDLE means "none" where the API allows it; the backend judges it.
        return Some(0);
    }
    (app >> SHIFT == epoch & EPOCH_BITS).then_some(app & LOW)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_zero_is_transparent_and_other_epochs_do_not_alias() {
        assert_eq!(tag(5, 0), 5);
        assert_eq!(untag(5, 0), Some(5));
        let h = tag(5, 3);
        assert_ne!(h, 5);
        assert_eq!(untag(h, 3), Some(5));
        assert_eq!(untag(h, 0), None);
        assert_eq!(untag(5, 3), None);
        assert_eq!(tag(0, 3), 0);
        assert_eq!(untag(0, 3), Some(0));
    }
}
