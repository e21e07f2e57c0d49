use super::*;

fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

#[test]
fn a_new_config_map_starts_at_1() {
    let (out, generation) = stamp_config(data(&[("primus.cfg", "a")]), None);
    assert_eq!(generation, 1);
    assert_eq!(out, data(&[("primus.cfg", "a"), ("generation", "1")]));
    // A generic module renders nothing: the ConfigMap still carries its generation.
    let (out, generation) = stamp_config(BTreeMap::new(), None);
    assert_eq!((out, generation), (data(&[("generation", "1")]), 1));
}

#[test]
fn unchanged_content_keeps_the_generation() {
    let current = data(&[("primus.cfg", "a"), ("generation", "7")]);
    let (out, generation) = stamp_config(data(&[("primus.cfg", "a")]), Some(&current));
    assert_eq!(generation, 7);
    assert_eq!(out, current, "nothing to write");
    // Again and again (re-reconciles, a restarted operator).
    let (again, generation) = stamp_config(data(&[("primus.cfg", "a")]), Some(&out));
    assert_eq!((again, generation), (current, 7));
}

#[test]
fn changed_content_bumps_it() {
    let current = data(&[("primus.cfg", "a"), ("generation", "7")]);
    let (out, generation) = stamp_config(data(&[("primus.cfg", "b")]), Some(&current));
    assert_eq!(generation, 8);
    assert_eq!(out, data(&[("primus.cfg", "b"), ("generation", "8")]));
    // A key removed or added is a change too.
    let (_, generation) = stamp_config(BTreeMap::new(), Some(&current));
    assert_eq!(generation, 8);
    let (_, generation) = stamp_config(data(&[("primus.cfg", "a"), ("extra", "x")]), Some(&current));
    assert_eq!(generation, 8);
    // A hand edit the operator reverts is a change the sidecar sees: bumped.
    let edited = data(&[("primus.cfg", "edited"), ("generation", "8")]);
    let (_, generation) = stamp_config(data(&[("primus.cfg", "b")]), Some(&edited));
    assert_eq!(generation, 9);
}

#[test]
fn a_missing_or_garbled_generation_counts_as_0() {
    // Written before generations existed, same content: 1.
    let (_, generation) = stamp_config(data(&[("primus.cfg", "a")]), Some(&data(&[("primus.cfg", "a")])));
    assert_eq!(generation, 1);
    for bad in ["", "x", "-3", "1.5", "99999999999999999999"] {
        let current = data(&[("primus.cfg", "a"), ("generation", bad)]);
        let (_, same) = stamp_config(data(&[("primus.cfg", "a")]), Some(&current));
        assert_eq!(same, 1, "{bad:?} unchanged");
        let (_, changed) = stamp_config(data(&[("primus.cfg", "b")]), Some(&current));
        assert_eq!(changed, 1, "{bad:?} changed");
    }
    let max = i64::MAX.to_string();
    let top = data(&[("primus.cfg", "a"), ("generation", max.as_str())]);
    assert_eq!(stamp_config(data(&[("primus.cfg", "b")]), Some(&top)).1, i64::MAX);
}

#[test]
fn parse_accepts_decimals_only() {
    assert_eq!(parse("12"), Some(12));
    assert_eq!(parse(" 3\n"), Some(3));
    assert_eq!(parse("0"), Some(0));
    assert_eq!(parse("-1"), None);
    assert_eq!(parse("0x10"), None);
    assert_eq!(parse(""), None);
}

#[test]
fn the_secret_s_generation() {
    let secret = |pairs: &[(&str, &[u8])]| -> BTreeMap<String, ByteString> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), ByteString(v.to_vec())))
            .collect()
    };
    assert_eq!(of_secret(None), 0);
    assert_eq!(of_secret(Some(&secret(&[("pin", b"x")]))), 0);
    assert_eq!(of_secret(Some(&secret(&[("pin", b"x"), ("generation", b"4")]))), 4);
    assert_eq!(of_secret(Some(&secret(&[("generation", b"\xff")]))), 0);
    assert_eq!(of_secret(Some(&secret(&[("generation", b"two")]))), 0);
}
