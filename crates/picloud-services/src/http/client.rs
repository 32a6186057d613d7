//! The one shared reqwest client and its guarded resolver.
//!
//! reqwest calls the resolver for every connection it opens to a host name, on every
//! redirect hop, and connects to exactly the addresses the resolver hands back. So
//! checking the resolved addresses here covers redirects and DNS rebinding (a second
//! lookup answering differently is checked again). IP literals never reach a resolver;
//! [`super::guard::Policy::check_url`] covers those, hop by hop.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use super::guard::{Blocked, Policy};

/// Fixed answers for host names, consulted before DNS. Only tests build these (there is
/// no configuration that does): they let a test name resolve to a chosen address, and
/// mark a test server's name as reachable although its address is loopback.
#[derive(Debug, Clone, Default)]
pub struct TestHosts {
    entries: HashMap<String, (Vec<IpAddr>, bool)>,
}

impl TestHosts {
    /// `name` resolves to `addrs`, checked by the guard like any DNS answer.
    pub fn resolve(mut self, name: &str, addrs: Vec<IpAddr>) -> Self {
        self.entries
            .insert(name.to_ascii_lowercase(), (addrs, false));
        self
    }

    /// `name` resolves to `addrs` and the guard lets it through: the stand-in for a
    /// public host, served by a local test server.
    pub fn trusted(mut self, name: &str, addrs: Vec<IpAddr>) -> Self {
        self.entries
            .insert(name.to_ascii_lowercase(), (addrs, true));
        self
    }
}

/// Why a lookup produced no address to connect to.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ResolveError {
    #[error(transparent)]
    Blocked(#[from] Blocked),
    #[error("could not resolve host")]
    NotFound,
}

struct GuardedResolver {
    policy: Arc<Policy>,
    hosts: Arc<TestHosts>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        let hosts = self.hosts.clone();
        let host = name.as_str().to_ascii_lowercase();
        Box::pin(async move {
            let (addrs, trusted) = match hosts.entries.get(&host) {
                Some((addrs, trusted)) => (addrs.clone(), *trusted),
                None => {
                    let found = tokio::net::lookup_host((host.as_str(), 0))
                        .await
                        .map_err(|e| {
                            tracing::debug!(error = %e, "outbound http: lookup failed");
                            ResolveError::NotFound
                        })?;
                    (found.map(|a| a.ip()).collect(), false)
                }
            };
            let allowed = screen(&policy, &addrs, trusted)?;
            let addrs: Addrs = Box::new(allowed.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

/// The addresses that may be connected to. Blocked ones are dropped; when none is
/// left the lookup fails with the first one's category.
fn screen(policy: &Policy, addrs: &[IpAddr], trusted: bool) -> Result<Vec<IpAddr>, ResolveError> {
    if trusted {
        return Ok(addrs.to_vec());
    }
    let mut first_blocked = None;
    let allowed: Vec<IpAddr> = addrs
        .iter()
        .copied()
        .filter(|ip| match policy.check_ip(*ip) {
            Ok(()) => true,
            Err(blocked) => {
                first_blocked.get_or_insert(blocked);
                false
            }
        })
        .collect();
    match (allowed.is_empty(), first_blocked) {
        (false, _) => Ok(allowed),
        (true, Some(blocked)) => Err(blocked.into()),
        (true, None) => Err(ResolveError::NotFound),
    }
}

/// Builds the process's one client: connections are pooled across runs and apps.
pub(crate) fn build(
    policy: Arc<Policy>,
    hosts: TestHosts,
) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        // HTTP(S)_PROXY would send every request to the proxy's address and the
        // resolver would never see the target.
        .no_proxy()
        // Redirects are followed by the service, hop by hop: a shared client cannot
        // take per-request limits, and reqwest keeps Authorization on a change of
        // scheme alone.
        .redirect(reqwest::redirect::Policy::none())
        .referer(false)
        // The workspace's reqwest has HTTP/2 compiled in (object_store needs it);
        // outbound calls stay HTTP/1.1, the protocol their limits were written for.
        .http1_only()
        .dns_resolver(Arc::new(GuardedResolver {
            policy,
            hosts: Arc::new(hosts),
        }))
        .build()
}

/// The guard's refusal inside a reqwest error, if that is what failed.
pub(crate) fn find_cause<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a ResolveError> {
    let mut current = Some(e);
    while let Some(err) = current {
        if let Some(found) = err.downcast_ref::<ResolveError>() {
            return Some(found);
        }
        current = err.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::super::guard::Category;
    use super::*;

    fn policy() -> Policy {
        Policy {
            allowed_ports: vec![80],
            allow_private: false,
        }
    }

    #[test]
    fn blocked_answers_are_dropped_and_all_blocked_is_refused() {
        let public = IpAddr::V4(Ipv4Addr::new(93, 184, 216, 34));
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let ula = IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1));
        assert_eq!(
            screen(&policy(), &[lo, public], false).ok(),
            Some(vec![public])
        );
        assert!(matches!(
            screen(&policy(), &[ula, lo], false),
            Err(ResolveError::Blocked(Blocked(Category::UniqueLocal)))
        ));
        assert!(matches!(
            screen(&policy(), &[], false),
            Err(ResolveError::NotFound)
        ));
        assert_eq!(screen(&policy(), &[lo], true).ok(), Some(vec![lo]));
    }

    /// A host name that really resolves to loopback is refused by the resolver.
    #[tokio::test]
    async fn localhost_is_refused_after_lookup() {
        let resolver = GuardedResolver {
            policy: Arc::new(policy()),
            hosts: Arc::default(),
        };
        let name: Name = "localhost".parse().expect("name");
        let err = match resolver.resolve(name).await {
            Ok(_) => panic!("localhost resolved to an allowed address"),
            Err(e) => e,
        };
        let found = find_cause(err.as_ref());
        assert!(
            matches!(
                found,
                Some(ResolveError::Blocked(Blocked(Category::Loopback)))
            ),
            "{err}"
        );
    }
}
