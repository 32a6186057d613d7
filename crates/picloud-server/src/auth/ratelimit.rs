//! Login throttling that slows guessing without letting anyone lock an account.
//!
//! - Per (account, client address): [`LoginLimits::per_pair`] failures per
//!   [`LoginLimits::pair_window`], then 429 with `Retry-After` for that address only.
//!   A guesser slows down; the owner, elsewhere, is not affected.
//! - Per account, from everywhere: [`LoginLimits::per_account`] failures per
//!   [`LoginLimits::account_window`], a slower cap on what many addresses together may
//!   try. Beyond it, addresses the account signed in from within
//!   [`LoginLimits::known_for`] keep their own budget; only unknown addresses wait.
//!   So there is no hard per-account lock: the owner's usual addresses always get in.
//!
//! Behind a proxy every client would share the proxy's address; the client address
//! comes from `X-Forwarded-For` when the proxy is in `PICLOUD_TRUSTED_PROXIES`.
//! In memory, per node: enough to make online guessing impractical without shared state.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Bounds memory under a flood of distinct keys.
const MAX_TRACKED: usize = 100_000;

#[derive(Debug, Clone, Copy)]
pub struct LoginLimits {
    pub per_pair: usize,
    pub pair_window: Duration,
    pub per_account: usize,
    pub account_window: Duration,
    pub known_for: Duration,
}

impl Default for LoginLimits {
    fn default() -> Self {
        Self {
            per_pair: 10,
            pair_window: Duration::from_secs(60),
            per_account: 100,
            account_window: Duration::from_secs(3600),
            known_for: Duration::from_secs(30 * 86_400),
        }
    }
}

type Pair = (String, IpAddr);

#[derive(Default)]
struct Tracked {
    pairs: HashMap<Pair, VecDeque<Instant>>,
    accounts: HashMap<String, VecDeque<Instant>>,
    /// When each (account, address) last signed in successfully.
    known: HashMap<Pair, Instant>,
}

#[derive(Default)]
pub struct LoginLimiter {
    limits: LoginLimits,
    tracked: Mutex<Tracked>,
}

/// Drops the failures older than `window`; `Some(wait)` when `max` remain, the wait
/// being until the oldest of them leaves the window.
fn full(
    times: &mut VecDeque<Instant>,
    max: usize,
    window: Duration,
    now: Instant,
) -> Option<Duration> {
    while times
        .front()
        .is_some_and(|t| now.duration_since(*t) >= window)
    {
        times.pop_front();
    }
    if times.len() < max {
        return None;
    }
    let oldest = times.front()?;
    Some(window.saturating_sub(now.duration_since(*oldest)))
}

fn push(times: &mut VecDeque<Instant>, max: usize, now: Instant) {
    times.push_back(now);
    while times.len() > max {
        times.pop_front();
    }
}

impl LoginLimiter {
    pub fn new(limits: LoginLimits) -> Self {
        Self {
            limits,
            tracked: Mutex::default(),
        }
    }

    /// `Err(wait)` when this address must wait before trying this account again.
    pub fn check(&self, account: &str, ip: IpAddr) -> Result<(), Duration> {
        self.check_at(account, ip, Instant::now())
    }

    fn check_at(&self, account: &str, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let l = self.limits;
        let mut t = self.tracked.lock();
        let pair = (account.to_owned(), ip);
        if let Some(times) = t.pairs.get_mut(&pair) {
            if let Some(wait) = full(times, l.per_pair, l.pair_window, now) {
                return Err(wait.max(Duration::from_secs(1)));
            }
        }
        let known = t
            .known
            .get(&pair)
            .is_some_and(|at| now.duration_since(*at) < l.known_for);
        if !known {
            if let Some(times) = t.accounts.get_mut(account) {
                if let Some(wait) = full(times, l.per_account, l.account_window, now) {
                    return Err(wait.max(Duration::from_secs(1)));
                }
            }
        }
        Ok(())
    }

    pub fn record_failure(&self, account: &str, ip: IpAddr) {
        self.record_failure_at(account, ip, Instant::now());
    }

    fn record_failure_at(&self, account: &str, ip: IpAddr, now: Instant) {
        let l = self.limits;
        let mut t = self.tracked.lock();
        if t.pairs.len() >= MAX_TRACKED {
            t.pairs.retain(|_, times| {
                times
                    .back()
                    .is_some_and(|at| now.duration_since(*at) < l.pair_window)
            });
        }
        if t.accounts.len() >= MAX_TRACKED {
            t.accounts.retain(|_, times| {
                times
                    .back()
                    .is_some_and(|at| now.duration_since(*at) < l.account_window)
            });
        }
        push(
            t.pairs.entry((account.to_owned(), ip)).or_default(),
            l.per_pair,
            now,
        );
        push(
            t.accounts.entry(account.to_owned()).or_default(),
            l.per_account,
            now,
        );
    }

    /// A successful sign-in clears this address's failures for the account and makes
    /// it a known address of the account. The account-wide count stays: another
    /// address's success must not reopen a guesser's budget.
    pub fn record_success(&self, account: &str, ip: IpAddr) {
        self.record_success_at(account, ip, Instant::now());
    }

    fn record_success_at(&self, account: &str, ip: IpAddr, now: Instant) {
        let known_for = self.limits.known_for;
        let mut t = self.tracked.lock();
        let pair = (account.to_owned(), ip);
        t.pairs.remove(&pair);
        if t.known.len() >= MAX_TRACKED {
            t.known.retain(|_, at| now.duration_since(*at) < known_for);
            if t.known.len() >= MAX_TRACKED {
                // Still full of fresh entries: forget the oldest half.
                let mut ages: Vec<Instant> = t.known.values().copied().collect();
                ages.sort_unstable();
                let cutoff = ages[ages.len() / 2];
                t.known.retain(|_, at| *at > cutoff);
            }
        }
        t.known.insert(pair, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([203, 0, 113, n])
    }

    #[test]
    fn one_address_is_throttled_per_account_and_no_one_else() {
        let limiter = LoginLimiter::default();
        let now = Instant::now();
        for _ in 0..10 {
            assert!(limiter.check_at("a@b.c", ip(1), now).is_ok());
            limiter.record_failure_at("a@b.c", ip(1), now);
        }
        let wait = limiter
            .check_at("a@b.c", ip(1), now)
            .expect_err("throttled");
        assert_eq!(wait, Duration::from_secs(60));
        let later = now + Duration::from_secs(45);
        assert_eq!(
            limiter.check_at("a@b.c", ip(1), later),
            Err(Duration::from_secs(15))
        );
        // The same address on another account, and another address on this one.
        assert!(limiter.check_at("x@y.z", ip(1), now).is_ok());
        assert!(limiter.check_at("a@b.c", ip(2), now).is_ok());
        // The window passes.
        assert!(limiter
            .check_at("a@b.c", ip(1), now + Duration::from_secs(60))
            .is_ok());
    }

    #[test]
    fn the_account_cap_spares_known_addresses() {
        let limiter = LoginLimiter::new(LoginLimits {
            per_account: 20,
            ..LoginLimits::default()
        });
        let now = Instant::now();
        // The owner signed in from their usual address some days ago.
        limiter.record_success_at("a@b.c", ip(200), now);
        let now = now + Duration::from_secs(5 * 86_400);
        // A botnet: two guesses from each of ten addresses.
        for n in 0..10 {
            for _ in 0..2 {
                assert!(limiter.check_at("a@b.c", ip(n), now).is_ok());
                limiter.record_failure_at("a@b.c", ip(n), now);
            }
        }
        // Unknown addresses now wait for the account window...
        let wait = limiter.check_at("a@b.c", ip(50), now).expect_err("capped");
        assert_eq!(wait, Duration::from_secs(3600));
        // ...the owner's address does not, and other accounts are untouched.
        assert!(limiter.check_at("a@b.c", ip(200), now).is_ok());
        assert!(limiter.check_at("x@y.z", ip(50), now).is_ok());
        // A success elsewhere does not reopen the guessers' budget.
        limiter.record_success_at("a@b.c", ip(200), now);
        assert!(limiter.check_at("a@b.c", ip(51), now).is_err());
        // The owner still has their own per-address budget, nothing more.
        for _ in 0..10 {
            limiter.record_failure_at("a@b.c", ip(200), now);
        }
        assert!(limiter.check_at("a@b.c", ip(200), now).is_err());
        // Knowing an address expires.
        let much_later = now + Duration::from_secs(31 * 86_400);
        for _ in 0..20 {
            limiter.record_failure_at("a@b.c", ip(7), much_later);
        }
        assert!(limiter.check_at("a@b.c", ip(200), much_later).is_err());
    }

    #[test]
    fn success_clears_only_its_own_address() {
        let limiter = LoginLimiter::default();
        let now = Instant::now();
        for _ in 0..9 {
            limiter.record_failure_at("a@b.c", ip(1), now);
            limiter.record_failure_at("a@b.c", ip(2), now);
        }
        limiter.record_success_at("a@b.c", ip(1), now);
        limiter.record_failure_at("a@b.c", ip(1), now);
        limiter.record_failure_at("a@b.c", ip(2), now);
        assert!(limiter.check_at("a@b.c", ip(1), now).is_ok());
        assert!(limiter.check_at("a@b.c", ip(2), now).is_err());
    }
}
