//! Who is on the other end: the TCP peer, or, behind proxies the operator trusts
//! (`PICLOUD_TRUSTED_PROXIES`), the client they name in `X-Forwarded-For`.
//!
//! Each proxy appends the address it received the request from, so the list reads
//! `client, proxy1, proxy2`, and everything left of what our own proxies appended was
//! written by the client and may be forged. Walking from the right, the first address
//! that is not a trusted proxy is the client: the right-most untrusted hop.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use picloud_core::net::IpNet;

use crate::state::AppState;

pub const FORWARDED_FOR: &str = "x-forwarded-for";

/// The client's address for a request that came from `peer`.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let peer = peer.to_canonical();
    let is_trusted = |ip: IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let hops: Vec<&str> = headers
        .get_all(FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    for hop in hops.into_iter().rev() {
        // A hop a trusted proxy wrote is an address; anything else was written by
        // the client, so the last trusted hop is as far as the list can be believed.
        let Some(ip) = parse_hop(hop) else {
            return client;
        };
        client = ip;
        if !is_trusted(ip) {
            return ip;
        }
    }
    client
}

/// `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1` or `[2001:db8::1]:5678`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .or_else(|_| hop.parse::<SocketAddr>().map(|s| s.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

/// The client address of a request, as the login throttle and the audit log see it;
/// `None` when the server was not given peer addresses (a router driven in-process).
pub fn of_parts(parts: &Parts, state: &AppState) -> Option<IpAddr> {
    of(&parts.extensions, &parts.headers, state)
}

/// [`of_parts`] for a request's extensions and headers.
pub fn of(
    extensions: &axum::http::Extensions,
    headers: &axum::http::HeaderMap,
    state: &AppState,
) -> Option<IpAddr> {
    let peer = extensions.get::<ConnectInfo<SocketAddr>>()?.0.ip();
    Some(client_ip(peer, headers, &state.config.trusted_proxies))
}

/// Extractor of the client's address.
pub struct ClientIp(pub IpAddr);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(
            of_parts(parts, state).unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn client(peer: &str, forwarded: &[&str], trusted: &[&str]) -> String {
        let mut headers = HeaderMap::new();
        for value in forwarded {
            headers.append(FORWARDED_FOR, HeaderValue::from_str(value).expect("ascii"));
        }
        let trusted: Vec<IpNet> = trusted.iter().map(|t| t.parse().expect("net")).collect();
        client_ip(peer.parse().expect("peer"), &headers, &trusted).to_string()
    }

    #[test]
    fn right_most_untrusted_hop() {
        let proxy = ["127.0.0.1", "10.0.0.0/8"];
        // No trusted proxies: the header means nothing.
        assert_eq!(client("127.0.0.1", &["203.0.113.9"], &[]), "127.0.0.1");
        // An untrusted peer cannot name someone else.
        assert_eq!(
            client("198.51.100.1", &["203.0.113.9"], &proxy),
            "198.51.100.1"
        );
        assert_eq!(client("127.0.0.1", &["203.0.113.9"], &proxy), "203.0.113.9");
        // What the client wrote in front of our proxies' entries is skipped.
        assert_eq!(
            client("127.0.0.1", &["192.0.2.1, 203.0.113.9, 10.1.2.3"], &proxy),
            "203.0.113.9"
        );
        // Several header lines are one list, in order.
        assert_eq!(
            client(
                "127.0.0.1",
                &["192.0.2.1", "203.0.113.9", "10.1.2.3"],
                &proxy
            ),
            "203.0.113.9"
        );
        // Garbage left of a trusted hop stops the walk at that hop.
        assert_eq!(client("127.0.0.1", &["evil, 10.1.2.3"], &proxy), "10.1.2.3");
        assert_eq!(client("127.0.0.1", &["unknown"], &proxy), "127.0.0.1");
        // All hops trusted: the left-most is as close to the client as we know.
        assert_eq!(
            client("127.0.0.1", &["10.0.0.7, 10.0.0.8"], &proxy),
            "10.0.0.7"
        );
        assert_eq!(client("127.0.0.1", &[], &proxy), "127.0.0.1");
        // Ports and IPv6 forms, and a dual-stack socket's mapped IPv4 peer.
        assert_eq!(
            client("::ffff:127.0.0.1", &["203.0.113.9:4711"], &proxy),
            "203.0.113.9"
        );
        assert_eq!(
            client("127.0.0.1", &["[2001:db8::1]:443"], &proxy),
            "2001:db8::1"
        );
        assert_eq!(client("127.0.0.1", &["2001:db8::2"], &proxy), "2001:db8::2");
    }
}
