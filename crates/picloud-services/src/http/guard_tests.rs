use std::net::{IpAddr, Ipv4Addr};

use url::Url;

use super::*;

fn policy() -> Policy {
    Policy {
        allowed_ports: vec![80, 443, 8080, 8443],
        allow_private: false,
    }
}

fn check(raw: &str) -> Result<(), Blocked> {
    let url = Url::parse(raw).map_err(|_| Blocked(Category::Scheme))?;
    policy().check_url(&url)
}

/// Every category and every spelling the brief lists; each must be refused with the
/// expected category, and the message must not carry the address.
#[test]
fn hostile_targets_are_refused_by_category() {
    use Category::*;
    let table: &[(&str, Category)] = &[
        ("http://127.0.0.1/", Loopback),
        ("http://127.1/", Loopback),
        ("http://2130706433/", Loopback),
        ("http://0177.0.0.1/", Loopback),
        ("http://0x7f000001/", Loopback),
        ("http://0x7f.1/", Loopback),
        ("http://0x7f.0.0.1/", Loopback),
        ("http://127.0.0.1./", Loopback),
        ("http://10.0.0.1/", Private),
        ("http://172.16.0.1/", Private),
        ("http://172.31.255.254/", Private),
        ("http://192.168.1.1/", Private),
        ("http://169.254.169.254/latest/meta-data/", LinkLocal),
        ("http://100.64.0.1/", Cgnat),
        ("http://224.0.0.1/", Multicast),
        ("http://240.0.0.1/", Reserved),
        ("http://255.255.255.255/", Reserved),
        ("http://192.0.2.1/", Reserved),
        ("http://0.0.0.0/", Unspecified),
        ("http://0/", Unspecified),
        ("http://[::1]/", Loopback),
        ("http://[::]/", Unspecified),
        ("http://[fc00::1]/", UniqueLocal),
        ("http://[fd12:3456::1]/", UniqueLocal),
        ("http://[fe80::1]/", LinkLocal),
        ("http://[ff02::1]/", Multicast),
        ("http://[::ffff:127.0.0.1]/", Loopback),
        ("http://[::ffff:7f00:1]/", Loopback),
        ("http://[::ffff:10.0.0.1]/", Private),
        ("http://[::ffff:169.254.169.254]/", LinkLocal),
        ("http://[::127.0.0.1]/", Loopback),
        ("http://[::192.168.0.1]/", Private),
        ("http://[64:ff9b::7f00:1]/", Loopback),
        ("http://[64:ff9b::a9fe:a9fe]/", LinkLocal),
        ("http://[2002:7f00:1::]/", Loopback),
        ("http://[2001:db8::1]/", Reserved),
        ("http://[100::1]/", Reserved),
        ("https://[::ffff:100.64.0.1]:8443/", Cgnat),
        ("ftp://example.com/", Scheme),
        ("file:///etc/passwd", Scheme),
        ("gopher://example.com/", Scheme),
        ("http://example.com:22/", Port),
        ("https://example.com:6379/", Port),
        ("http://127.0.0.1:22/", Port),
    ];
    assert!(table.len() >= 25);
    for (raw, expected) in table {
        let got = check(raw);
        assert_eq!(got, Err(Blocked(*expected)), "{raw}");
        let message = format!("{}", Blocked(*expected));
        assert!(
            !message.contains("127.") && !message.contains("::"),
            "{raw}"
        );
    }
}

#[test]
fn public_targets_pass() {
    for raw in [
        "http://example.com/",
        "https://example.com:8443/x",
        "http://93.184.216.34/",
        "https://[2606:2800:220:1:248:1893:25c8:1946]/",
        "http://8.8.8.8:8080/",
        "http://[64:ff9b::808:808]/",
        "http://[::ffff:8.8.8.8]/",
        "http://172.32.0.1/",
        "http://100.128.0.1/",
    ] {
        assert_eq!(check(raw), Ok(()), "{raw}");
    }
}

#[test]
fn allow_private_keeps_scheme_and_port_checks() {
    let open = Policy {
        allow_private: true,
        ..policy()
    };
    let url = |s: &str| Url::parse(s).expect("url");
    assert_eq!(open.check_url(&url("http://127.0.0.1/")), Ok(()));
    assert_eq!(open.check_url(&url("http://[::1]:8080/")), Ok(()));
    assert_eq!(
        open.check_url(&url("ftp://127.0.0.1/")),
        Err(Blocked(Category::Scheme))
    );
    assert_eq!(
        open.check_url(&url("http://127.0.0.1:22/")),
        Err(Blocked(Category::Port))
    );
}

#[test]
fn loose_ipv4_spellings() {
    let lo = Some(Ipv4Addr::new(127, 0, 0, 1));
    for s in [
        "127.0.0.1",
        "127.1",
        "127.0.1",
        "2130706433",
        "0177.0.0.1",
        "0x7f000001",
        "0x7f.1",
        "0X7F.0.0.1",
        "017700000001",
        "127.0.0.1.",
    ] {
        assert_eq!(parse_loose_ipv4(s), lo, "{s}");
    }
    for s in [
        "example.com",
        "256.0.0.1",
        "1.2.3.4.5",
        "",
        "08.0.0.1",
        "4294967296",
        "1..1",
    ] {
        assert_eq!(parse_loose_ipv4(s), None, "{s}");
    }
    assert_eq!(
        literal_ip(&url::Host::Domain("0x7f.1")),
        Some(IpAddr::V4(Ipv4Addr::LOCALHOST))
    );
}
