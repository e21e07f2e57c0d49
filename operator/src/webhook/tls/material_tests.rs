use super::*;

fn names() -> Vec<String> {
    names_for("hsmbridge-webhook", "hsmbridge-system", &["127.0.0.1".to_owned()])
}

fn fresh(now: i64) -> Material {
    match plan(None, &names(), now).expect("plan") {
        Plan::Write(m) => m,
        Plan::Keep => panic!("nothing to keep"),
    }
}

fn certs_in(bundle: &str) -> usize {
    CertificateDer::pem_slice_iter(bundle.as_bytes()).count()
}

fn not_after(pem: &str) -> i64 {
    parse(pem, |c| c.validity().not_after.timestamp()).expect("cert")
}

#[test]
fn names_are_the_service_dns_name_then_extras_without_duplicates() {
    assert_eq!(
        names_for(
            "svc",
            "ns",
            &["127.0.0.1".into(), "svc.ns.svc".into(), "x.example".into()]
        ),
        ["svc.ns.svc", "127.0.0.1", "x.example"]
    );
}

#[test]
fn a_new_secret_holds_a_ca_and_a_serving_certificate_for_every_name() {
    let now = now();
    let m = fresh(now);
    assert_eq!(certs_in(&m.ca_bundle), 1);
    let ca = der_of(&m.ca_bundle).expect("ca");
    let leaf = der_of(&m.cert).expect("leaf");
    let (_, ca) = x509_parser::parse_x509_certificate(&ca).expect("ca parses");
    let (_, leaf) = x509_parser::parse_x509_certificate(&leaf).expect("leaf parses");
    assert!(ca.is_ca());
    assert!(!leaf.is_ca());
    assert!(leaf.verify_signature(Some(ca.public_key())).is_ok());
    assert!(has_name(&leaf, "hsmbridge-webhook.hsmbridge-system.svc"));
    assert!(has_name(&leaf, "127.0.0.1"));
    assert!(!has_name(&leaf, "127.0.0.2"));
    assert!(!has_name(&leaf, "other.hsmbridge-system.svc"));
    assert!((not_after(&m.cert) - (now + LEAF_LIFETIME)).abs() <= 1);
    assert!((not_after(&m.ca_bundle) - (now + CA_LIFETIME)).abs() <= 1);
    certified_key(m.cert.as_bytes(), m.key.as_bytes()).expect("cert and key go together");
    assert!(!format!("{m:?}").contains("PRIVATE KEY"), "Debug never shows keys");
}

#[test]
fn a_valid_secret_is_kept() {
    let now = now();
    let m = fresh(now);
    assert!(matches!(plan(Some(&m), &names(), now).expect("plan"), Plan::Keep));
    assert!(matches!(
        plan(Some(&m), &names(), now + LEAF_LIFETIME - RENEW_BEFORE - DAY).expect("plan"),
        Plan::Keep
    ));
}

#[test]
fn thirty_days_before_expiry_the_serving_certificate_is_renewed_from_the_same_ca() {
    let t0 = now();
    let m = fresh(t0);
    let later = t0 + LEAF_LIFETIME - RENEW_BEFORE + DAY;
    let Plan::Write(renewed) = plan(Some(&m), &names(), later).expect("plan") else {
        panic!("not renewed");
    };
    assert_eq!(renewed.ca_bundle, m.ca_bundle, "same CA: the caBundle does not change");
    assert_eq!(renewed.ca_key, m.ca_key);
    assert_ne!(renewed.cert, m.cert);
    assert_ne!(renewed.key, m.key);
    assert!((not_after(&renewed.cert) - (later + LEAF_LIFETIME)).abs() <= 1);
    assert!(matches!(
        plan(Some(&renewed), &names(), later).expect("plan"),
        Plan::Keep
    ));
}

#[test]
fn a_new_name_renews_the_serving_certificate() {
    let now = now();
    let m = fresh(now);
    let mut more = names();
    more.push("hsmbridge-webhook.hsmbridge-system.svc.cluster.local".into());
    let Plan::Write(renewed) = plan(Some(&m), &more, now).expect("plan") else {
        panic!("not renewed");
    };
    assert_eq!(renewed.ca_bundle, m.ca_bundle);
    assert!(matches!(plan(Some(&renewed), &more, now).expect("plan"), Plan::Keep));
}

#[test]
fn an_ageing_ca_is_replaced_and_the_old_one_stays_trusted_while_valid() {
    let t0 = now();
    let m = fresh(t0);
    let later = t0 + CA_LIFETIME - 200 * DAY;
    let Plan::Write(rotated) = plan(Some(&m), &names(), later).expect("plan") else {
        panic!("not rotated");
    };
    assert_ne!(rotated.ca_key, m.ca_key);
    assert_eq!(certs_in(&rotated.ca_bundle), 2);
    assert!(
        rotated.ca_bundle.ends_with(&m.ca_bundle),
        "old CA kept after the new one"
    );
    assert!(matches!(
        plan(Some(&rotated), &names(), later).expect("plan"),
        Plan::Keep
    ));

    // Once the old CA has expired it is dropped at the next rotation.
    let much_later = t0 + CA_LIFETIME + 1;
    let Plan::Write(again) = plan(Some(&m), &names(), much_later).expect("plan") else {
        panic!("not rotated");
    };
    assert_eq!(certs_in(&again.ca_bundle), 1);
}

#[test]
fn broken_material_is_replaced() {
    let now = now();
    let good = fresh(now);
    let other = fresh(now);
    let broken = [
        Material {
            cert: "garbage".into(),
            ..good.clone()
        },
        Material {
            key: other.key.clone(),
            ..good.clone()
        },
        Material {
            ca_bundle: other.ca_bundle.clone(),
            ..good.clone()
        },
        Material {
            ca_bundle: String::new(),
            ca_key: String::new(),
            ..good.clone()
        },
    ];
    for (i, m) in broken.iter().enumerate() {
        let Plan::Write(fixed) = plan(Some(m), &names(), now).expect("plan") else {
            panic!("case {i}: kept broken material");
        };
        assert!(
            matches!(plan(Some(&fixed), &names(), now).expect("plan"), Plan::Keep),
            "case {i}"
        );
    }
    // A CA key that does not match its certificate is not reused.
    let mismatched = Material {
        ca_key: other.ca_key.clone(),
        cert: String::new(),
        ..good.clone()
    };
    let Plan::Write(fixed) = plan(Some(&mismatched), &names(), now).expect("plan") else {
        panic!("kept");
    };
    assert_ne!(fixed.ca_key, other.ca_key);
}

#[test]
fn secret_data_round_trip() {
    let m = fresh(now());
    let data = m.to_secret_data();
    assert_eq!(
        data.keys().map(String::as_str).collect::<Vec<_>>(),
        ["ca.crt", "ca.key", "tls.crt", "tls.key"]
    );
    assert_eq!(Material::from_secret_data(&data), Some(m));
    let mut partial = data.clone();
    partial.remove("ca.key");
    assert_eq!(Material::from_secret_data(&partial), None);
}

#[test]
fn the_resolver_swaps_only_on_change_and_keeps_serving_on_bad_input() {
    let a = fresh(now());
    let b = fresh(now());
    let r = CertResolver::default();
    assert!(!r.is_loaded());
    assert!(r.load(a.cert.as_bytes(), a.key.as_bytes()).expect("load a"));
    assert!(!r.load(a.cert.as_bytes(), a.key.as_bytes()).expect("same a"));
    assert!(
        r.load(a.cert.as_bytes(), b.key.as_bytes()).is_err(),
        "key of another cert"
    );
    assert!(r.load(b"", a.key.as_bytes()).is_err());
    assert!(r.load(a.cert.as_bytes(), b"not a key").is_err());
    assert!(r.is_loaded(), "still serving a");
    assert!(r.load(b.cert.as_bytes(), b.key.as_bytes()).expect("load b"));
}

#[test]
fn first_pem_takes_the_first_certificate_only() {
    let a = fresh(now());
    let b = fresh(now());
    let bundle = format!("{}{}", a.ca_bundle, b.ca_bundle);
    assert_eq!(first_pem(&bundle).as_deref(), Some(a.ca_bundle.as_str()));
    assert_eq!(first_pem("no pem here"), None);
    assert_eq!(first_pem("-----BEGIN CERTIFICATE-----\nabc"), None);
}
