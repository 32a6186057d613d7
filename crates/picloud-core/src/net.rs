//! Address ranges (`10.0.0.0/8`, `::1`), for the proxies whose `X-Forwarded-For` the
//! server believes.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An IP network: an address and a prefix length. A bare address is a network of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid address range {0:?}: expected an IP address or CIDR like 10.0.0.0/8")]
pub struct IpNetError(String);

impl IpNet {
    /// Whether `ip` lies in this network. IPv4 peers of a dual-stack socket arrive as
    /// IPv4-mapped IPv6 addresses; they match the IPv4 ranges they belong to.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = mask::<32>(self.prefix) as u32;
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = mask::<128>(self.prefix);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            (IpAddr::V4(_), IpAddr::V6(_)) | (IpAddr::V6(_), IpAddr::V4(_)) => false,
        }
    }
}

/// The top `prefix` bits of a `BITS`-bit number set.
fn mask<const BITS: u32>(prefix: u8) -> u128 {
    let prefix = u32::from(prefix).min(BITS);
    if prefix == 0 {
        return 0;
    }
    let ones = u128::MAX >> (128 - BITS);
    (ones >> (BITS - prefix)) << (BITS - prefix)
}

impl FromStr for IpNet {
    type Err = IpNetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || IpNetError(s.to_owned());
        let (addr, prefix) = match s.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (s, None),
        };
        let addr = addr.parse::<IpAddr>().map_err(|_| err())?.to_canonical();
        let max = match addr {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        let prefix = match prefix {
            None => max,
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(err)?
            }
            Some(_) => return Err(err()),
        };
        Ok(Self { addr, prefix })
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().expect(s)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect(s)
    }

    #[test]
    fn ranges() {
        assert!(net("10.0.0.0/8").contains(ip("10.255.1.2")));
        assert!(!net("10.0.0.0/8").contains(ip("11.0.0.1")));
        assert!(net("192.168.1.7").contains(ip("192.168.1.7")));
        assert!(!net("192.168.1.7").contains(ip("192.168.1.8")));
        assert!(net("0.0.0.0/0").contains(ip("8.8.8.8")));
        assert!(!net("0.0.0.0/0").contains(ip("::1")));
        assert!(net("::1").contains(ip("::1")));
        assert!(net("fd00::/8").contains(ip("fd12:3456::1")));
        assert!(!net("fd00::/8").contains(ip("fe80::1")));
        // A dual-stack socket's IPv4 peer.
        assert!(net("127.0.0.1/32").contains(ip("::ffff:127.0.0.1")));
        assert!(net("::ffff:10.0.0.1").contains(ip("10.0.0.1")));
        assert_eq!(net("10.1.2.3/16").to_string(), "10.1.2.3/16");
    }

    #[test]
    fn bad_ranges() {
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/",
            "10.0.0.0/-1",
            "10.0.0.0/+8",
            "host",
            "10.0.0/8",
        ] {
            assert!(bad.parse::<IpNet>().is_err(), "{bad}");
        }
    }
}
