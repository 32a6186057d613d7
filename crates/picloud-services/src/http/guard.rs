//! The SSRF guard's pure half: which addresses, schemes and ports outbound requests may
//! reach, and how a URL's host is read as an address.
//!
//! Scripts learn only the [`Category`] of a refusal, never the address: an error that
//! echoed the resolved IP would turn the guard into an internal-DNS oracle.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use url::{Host, Url};

/// Why a target was refused; the script-visible name is [`Category::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    Loopback,
    Private,
    LinkLocal,
    Cgnat,
    Multicast,
    Reserved,
    Unspecified,
    UniqueLocal,
    Scheme,
    Port,
}

impl Category {
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Loopback => "loopback",
            Category::Private => "private",
            Category::LinkLocal => "link-local",
            Category::Cgnat => "cgnat",
            Category::Multicast => "multicast",
            Category::Reserved => "reserved",
            Category::Unspecified => "unspecified",
            Category::UniqueLocal => "unique-local",
            Category::Scheme => "scheme",
            Category::Port => "port",
        }
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused target. Carries the category only, so no error path can leak the address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("blocked: {0}")]
pub struct Blocked(pub Category);

/// The category an address is refused for, or `None` when it may be reached.
pub fn classify(ip: IpAddr) -> Option<Category> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], prefix: u32) -> bool {
    let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

fn classify_v4(ip: Ipv4Addr) -> Option<Category> {
    let table: &[([u8; 4], u32, Category)] = &[
        ([0, 0, 0, 0], 8, Category::Unspecified),
        ([127, 0, 0, 0], 8, Category::Loopback),
        ([10, 0, 0, 0], 8, Category::Private),
        ([172, 16, 0, 0], 12, Category::Private),
        ([192, 168, 0, 0], 16, Category::Private),
        ([169, 254, 0, 0], 16, Category::LinkLocal),
        ([100, 64, 0, 0], 10, Category::Cgnat),
        ([224, 0, 0, 0], 4, Category::Multicast),
        // 240/4 includes the limited broadcast address 255.255.255.255.
        ([240, 0, 0, 0], 4, Category::Reserved),
        // IETF protocol assignments, documentation, benchmarking, 6to4 relay anycast.
        ([192, 0, 0, 0], 24, Category::Reserved),
        ([192, 0, 2, 0], 24, Category::Reserved),
        ([198, 51, 100, 0], 24, Category::Reserved),
        ([203, 0, 113, 0], 24, Category::Reserved),
        ([198, 18, 0, 0], 15, Category::Reserved),
        ([192, 88, 99, 0], 24, Category::Reserved),
    ];
    table
        .iter()
        .find(|(net, prefix, _)| in_v4(ip, *net, *prefix))
        .map(|(_, _, category)| *category)
}

fn classify_v6(ip: Ipv6Addr) -> Option<Category> {
    if ip.is_unspecified() {
        return Some(Category::Unspecified);
    }
    if ip.is_loopback() {
        return Some(Category::Loopback);
    }
    let seg = ip.segments();
    let o = ip.octets();
    let embedded = Ipv4Addr::new(o[12], o[13], o[14], o[15]);
    // IPv4-mapped (::ffff:a.b.c.d) and IPv4-compatible (::a.b.c.d): the host stack
    // may well deliver these to the IPv4 address inside, so they are that address.
    if seg[..5] == [0; 5] && (seg[5] == 0xffff || seg[5] == 0) {
        return classify_v4(embedded);
    }
    // NAT64 well-known prefix: a translator on the path forwards to the embedded v4.
    if seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return classify_v4(embedded);
    }
    // 6to4 carries the v4 address in bits 16..48.
    if seg[0] == 0x2002 {
        let v4 = Ipv4Addr::new(o[2], o[3], o[4], o[5]);
        if let Some(category) = classify_v4(v4) {
            return Some(category);
        }
    }
    match seg[0] {
        s if s & 0xfe00 == 0xfc00 => Some(Category::UniqueLocal),
        s if s & 0xffc0 == 0xfe80 => Some(Category::LinkLocal),
        s if s & 0xff00 == 0xff00 => Some(Category::Multicast),
        // Teredo (its v4 addresses are obfuscated), documentation, local-use NAT64.
        0x2001 if seg[1] == 0 || seg[1] == 0x0db8 => Some(Category::Reserved),
        0x0064 if seg[1] == 0xff9b => Some(Category::Reserved),
        // Only global unicast (2000::/3) is routable on the internet; the rest of the
        // space (site-local, discard-only, unassigned) is refused.
        s if s & 0xe000 == 0x2000 => None,
        _ => Some(Category::Reserved),
    }
}

/// One part of a loose IPv4 literal: decimal, `0`-prefixed octal or `0x` hex.
fn loose_part(part: &str) -> Option<u64> {
    if part.is_empty() {
        return None;
    }
    let (digits, radix) =
        if let Some(hex) = part.strip_prefix("0x").or_else(|| part.strip_prefix("0X")) {
            (hex, 16)
        } else if part.len() > 1 && part.starts_with('0') {
            (&part[1..], 8)
        } else {
            (part, 10)
        };
    if digits.is_empty() {
        // "0x" alone is zero for inet_aton.
        return Some(0);
    }
    if digits.len() > 12 {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

/// Reads `host` the way `inet_aton` and the WHATWG URL parser do: one to four parts,
/// each decimal, octal or hex, the last filling the remaining bytes (`127.1`,
/// `2130706433`, `0177.0.0.1`, `0x7f000001`). `None` when it is not such a literal.
pub fn parse_loose_ipv4(host: &str) -> Option<Ipv4Addr> {
    let host = host.strip_suffix('.').unwrap_or(host);
    let parts: Vec<&str> = host.split('.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    let values: Vec<u64> = parts.iter().map(|p| loose_part(p)).collect::<Option<_>>()?;
    let (last, head) = values.split_last()?;
    if head.iter().any(|v| *v > 255) {
        return None;
    }
    let rest_bits = 8 * (4 - head.len() as u32);
    if *last >= 1u64 << rest_bits {
        return None;
    }
    let mut n: u64 = 0;
    for (i, v) in head.iter().enumerate() {
        n |= v << (24 - 8 * i as u32);
    }
    n |= last;
    u32::try_from(n).ok().map(Ipv4Addr::from)
}

/// The address a URL host names literally, in any spelling; `None` for a domain name.
pub fn literal_ip(host: &Host<&str>) -> Option<IpAddr> {
    match host {
        Host::Ipv4(v4) => Some(IpAddr::V4(*v4)),
        Host::Ipv6(v6) => Some(IpAddr::V6(*v6)),
        // The URL parser already normalises IPv4 spellings of http(s) hosts; this
        // catches whatever a system resolver would still read as a number.
        Host::Domain(name) => parse_loose_ipv4(name).map(IpAddr::V4),
    }
}

/// What the guard allows: the ports, and whether private addresses are reachable.
#[derive(Debug, Clone)]
pub struct Policy {
    pub allowed_ports: Vec<u16>,
    /// `PICLOUD_HTTP_ALLOW_PRIVATE`: the address checks are off (scheme and port stay).
    pub allow_private: bool,
}

impl Policy {
    /// Whether an address may be connected to.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), Blocked> {
        if self.allow_private {
            return Ok(());
        }
        match classify(ip) {
            Some(category) => Err(Blocked(category)),
            None => Ok(()),
        }
    }

    /// The checks that can be made on a URL before any lookup: scheme, port, and the
    /// address when the host is a literal (the resolver never sees those).
    pub fn check_url(&self, url: &Url) -> Result<(), Blocked> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Blocked(Category::Scheme));
        }
        let port = url.port_or_known_default().unwrap_or(0);
        if !self.allowed_ports.contains(&port) {
            return Err(Blocked(Category::Port));
        }
        match url.host() {
            // A URL without a host cannot be fetched; treat it as nothing reachable.
            None => Err(Blocked(Category::Unspecified)),
            Some(host) => match literal_ip(&host) {
                Some(ip) => self.check_ip(ip),
                None => Ok(()),
            },
        }
    }
}

#[cfg(test)]
#[path = "guard_tests.rs"]
mod tests;
