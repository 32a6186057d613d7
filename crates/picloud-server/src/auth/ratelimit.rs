//! Login throttling: at most [`MAX_FAILURES`] failed logins per minute per client
//! address and per account. Beyond that, 429 with `Retry-After` until the oldest
//! failure leaves the window. In memory, per node: good enough to make online password
//! guessing impractical without shared state.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

pub const MAX_FAILURES: usize = 10;
pub const WINDOW: Duration = Duration::from_secs(60);
/// Bounds memory under a flood of distinct keys.
const MAX_TRACKED: usize = 100_000;

#[derive(Default)]
pub struct LoginLimiter {
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl LoginLimiter {
    /// `Err(wait)` when any of `keys` has used up its failures.
    pub fn check(&self, keys: &[String]) -> Result<(), Duration> {
        let now = Instant::now();
        let mut failures = self.failures.lock();
        let mut wait = Duration::ZERO;
        for key in keys {
            if let Some(times) = failures.get_mut(key) {
                while times
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= WINDOW)
                {
                    times.pop_front();
                }
                if times.len() >= MAX_FAILURES {
                    if let Some(oldest) = times.front() {
                        wait = wait.max(WINDOW.saturating_sub(now.duration_since(*oldest)));
                    }
                }
            }
        }
        if wait.is_zero() {
            Ok(())
        } else {
            Err(wait)
        }
    }

    pub fn record_failure(&self, keys: &[String]) {
        let now = Instant::now();
        let mut failures = self.failures.lock();
        if failures.len() >= MAX_TRACKED {
            failures.retain(|_, times| {
                times
                    .back()
                    .is_some_and(|t| now.duration_since(*t) < WINDOW)
            });
        }
        for key in keys {
            let times = failures.entry(key.clone()).or_default();
            times.push_back(now);
            if times.len() > MAX_FAILURES {
                times.pop_front();
            }
        }
    }

    /// A successful login clears the account's count (not the address's).
    pub fn record_success(&self, account_key: &str) {
        self.failures.lock().remove(account_key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_eleventh_failure_is_refused() {
        let limiter = LoginLimiter::default();
        let keys = vec!["ip:1.2.3.4".to_owned(), "account:a@b.c".to_owned()];
        for _ in 0..MAX_FAILURES {
            assert!(limiter.check(&keys).is_ok());
            limiter.record_failure(&keys);
        }
        let wait = limiter.check(&keys).expect_err("throttled");
        assert!(wait > Duration::from_secs(50) && wait <= WINDOW);
        // Another account from another address is unaffected.
        assert!(limiter
            .check(&["ip:5.6.7.8".to_owned(), "account:x@y.z".to_owned()])
            .is_ok());
    }
}
