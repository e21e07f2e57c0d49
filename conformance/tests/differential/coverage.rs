//! The mechanism tests must cover every mechanism the backend lists: a
//! SoftHSM (or OpenSSL) upgrade that adds one makes this fail until a test
//! exercises it.

use std::collections::BTreeSet;

use cryptoki_sys::*;
use hsmbridge_conformance::calls::Out;
use hsmbridge_conformance::names;
use hsmbridge_conformance::oracle::differential;
use hsmbridge_conformance::setup;

/// Every mechanism some test of this suite drives through an operation.
fn covered() -> BTreeSet<CK_MECHANISM_TYPE> {
    let mut all = BTreeSet::new();
    all.extend(super::ciphers::mechanisms());
    all.extend(super::signatures::mechanisms());
    all.extend(super::digests::DIGESTS);
    all.extend(super::keygen::SECRET_KEY_GEN);
    all.extend(super::keygen::KEY_PAIR_GEN);
    all.extend(super::keygen::PARAMETER_GEN);
    all.extend(super::wrapping::WRAP_MECHANISMS);
    all.extend(super::derivation::MECHANISMS);
    all
}

#[test]
fn every_listed_mechanism_is_exercised() {
    differential(|api| {
        let slot = setup::init(api);
        let (rv, listed) = api.mechanism_list(slot, Out::Auto);
        assert_eq!(rv, CKR_OK, "C_GetMechanismList");
        let covered = covered();
        let missing: Vec<String> = listed
            .iter()
            .filter(|m| !covered.contains(m))
            .map(|m| names::mechanism(*m))
            .collect();
        assert!(
            missing.is_empty(),
            "mechanisms the module lists but no test exercises: {missing:?}"
        );
    });
}
