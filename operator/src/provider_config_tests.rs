use super::*;
use crate::crd::{ClusterMember, Timeouts};

fn member(host: &str, port: u16, priority: u8) -> ClusterMember {
    ClusterMember {
        host: host.to_owned(),
        port,
        priority,
    }
}

fn cluster() -> ClusterSpec {
    ClusterSpec {
        members: vec![member("hsm1.example.net", 2310, 0), member("hsm2.example.net", 2311, 1)],
        user: "PAYMENTS".to_owned(),
        slot_id: 3,
        timeouts: Some(Timeouts {
            wait_delay_seconds: Some(5),
            wait_max_tries: Some(3),
        }),
    }
}

const GOLDEN: &str = r#"# Rendered by hsm-operator from HsmPartition team-a/payments. Do not edit.
hsms = {
  hsm0 = {
    host = "hsm1.example.net";
    port = "2310";
    priority = 0;
    slots = {
      slot0 = {
        id = 3;
        user_name = "PAYMENTS";
      };
    };
  };
  hsm1 = {
    host = "hsm2.example.net";
    port = "2311";
    priority = 1;
    slots = {
      slot0 = {
        id = 3;
        user_name = "PAYMENTS";
      };
    };
  };
};
wait_delay = 5;
wait_max_tries = 3;
log = {
  file = "/dev/stderr";
  write_log_file = true;
  write_syslog = false;
  trace_level = 4;
};
"#;

#[test]
fn primus_cfg_golden() {
    assert_eq!(primus_cfg(&cluster(), "team-a/payments"), GOLDEN);
}

#[test]
fn timeouts_are_omitted_when_not_set() {
    let mut c = cluster();
    c.timeouts = None;
    let cfg = primus_cfg(&c, "ns/p");
    assert!(!cfg.contains("wait_delay"));
    assert!(!cfg.contains("wait_max_tries"));
    c.timeouts = Some(Timeouts {
        wait_delay_seconds: None,
        wait_max_tries: Some(7),
    });
    let cfg = primus_cfg(&c, "ns/p");
    assert!(!cfg.contains("wait_delay ="));
    assert!(cfg.contains("\nwait_max_tries = 7;\n"));
}

#[test]
fn strings_are_escaped() {
    let mut c = cluster();
    c.user = "a\"b\\c\nd\u{1}".to_owned();
    let cfg = primus_cfg(&c, "ns/p\nx");
    assert!(cfg.contains(r#"user_name = "a\"b\\c\nd\x01";"#), "{cfg}");
    assert!(cfg.starts_with("# Rendered by hsm-operator from HsmPartition ns/p x. Do not edit.\n"));
}

#[test]
fn generic_pkcs11_renders_no_primus_cfg() {
    assert!(render(Provider::Pkcs11, Some(&cluster()), "ns/p").is_empty());
    let data = render(Provider::Primus, Some(&cluster()), "team-a/payments");
    assert_eq!(data.get("primus.cfg").map(String::as_str), Some(GOLDEN));
}
