//! Login throttling: failed sign-ins slow down further tries, with delays
//! that double and are capped.
//!
//! Three counters, so that guessing is slow and a real user is not kept out
//! of the field for long by someone else's guessing:
//! - one user name from one address: a few free tries, then up to 15 min;
//! - one address, any user names (credential stuffing): more free tries,
//!   then up to 15 min;
//! - one user name from anywhere (a distributed guess): many free tries,
//!   then at most a minute at a time, so its real owner, from their own
//!   phone, waits a minute at worst.
//!
//! Unknown user names count exactly like real ones, and a throttled try is
//! refused before any password is checked: the replies never tell whether a
//! user exists. Tries being checked count too: once a counter's free tries
//! are spent, its tries are checked one at a time, so a burst of concurrent
//! guesses cannot all pass before the first failure is counted. State lives in this server process (several instances
//! behind a balancer each throttle on their own: the limits then multiply
//! by the instance count, which the caps keep bounded).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

#[derive(Clone, Copy, Debug)]
pub struct ThrottlePolicy {
    /// Failures before the first delay, and the longest delay, per counter.
    pub account_from_address: (u32, i64),
    pub address: (u32, i64),
    pub account: (u32, i64),
    /// The first delay; each further failure doubles it.
    pub base_delay_ms: i64,
    /// A counter with no failure for this long starts again from zero.
    pub forget_after_ms: i64,
}

impl Default for ThrottlePolicy {
    fn default() -> Self {
        ThrottlePolicy {
            account_from_address: (5, 15 * 60_000),
            address: (30, 15 * 60_000),
            account: (50, 60_000),
            base_delay_ms: 1_000,
            forget_after_ms: 60 * 60_000,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    AccountFromAddress(String, IpAddr),
    Address(IpAddr),
    Account(String),
}

#[derive(Clone, Copy, Debug, Default)]
struct Counter {
    failures: u32,
    blocked_until_ms: i64,
    last_failure_ms: i64,
    /// Tries begun and not yet decided (their password is being checked).
    pending: u32,
    last_begun_ms: i64,
}

/// How long a try waits behind another try being checked, once the free
/// tries are spent.
const BEHIND_PENDING_MS: i64 = 1_000;
/// A try not decided within this long (its check failed on the way) no
/// longer holds others back.
const PENDING_EXPIRES_MS: i64 = 60_000;

/// Entries kept at most; beyond it, the ones no longer blocking are dropped.
const MAX_ENTRIES: usize = 100_000;

#[derive(Debug, Default)]
pub struct LoginThrottle {
    policy: ThrottlePolicy,
    counters: Mutex<HashMap<Key, Counter>>,
}

impl LoginThrottle {
    pub fn new(policy: ThrottlePolicy) -> LoginThrottle {
        LoginThrottle { policy, counters: Mutex::default() }
    }

    fn keys(username: &str, address: IpAddr) -> [Key; 3] {
        [Key::AccountFromAddress(username.to_owned(), address), Key::Address(address), Key::Account(username.to_owned())]
    }

    fn limits(&self, key: &Key) -> (u32, i64) {
        match key {
            Key::AccountFromAddress(..) => self.policy.account_from_address,
            Key::Address(_) => self.policy.address,
            Key::Account(_) => self.policy.account,
        }
    }

    /// Milliseconds to wait before this try is allowed, if any.
    pub fn wait_ms(&self, username: &str, address: IpAddr, now_ms: i64) -> Option<i64> {
        let counters = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        self.wait_locked(&counters, username, address, now_ms)
    }

    fn wait_locked(&self, counters: &HashMap<Key, Counter>, username: &str, address: IpAddr, now_ms: i64) -> Option<i64> {
        Self::keys(username, address)
            .iter()
            .filter_map(|key| counters.get(key).map(|counter| (key, counter)))
            .map(|(key, counter)| {
                let pending = if now_ms - counter.last_begun_ms > PENDING_EXPIRES_MS { 0 } else { counter.pending };
                let behind = pending > 0 && counter.failures + pending >= self.limits(key).0;
                (counter.blocked_until_ms - now_ms).max(if behind { BEHIND_PENDING_MS } else { 0 })
            })
            .filter(|wait| *wait > 0)
            .max()
    }

    /// Begin a try: refused with the wait if it must wait, else counted as
    /// being checked until [`LoginThrottle::failed`], [`LoginThrottle::succeeded`]
    /// or [`LoginThrottle::abandoned`] decides it.
    pub fn begin(&self, username: &str, address: IpAddr, now_ms: i64) -> Result<(), i64> {
        let mut counters = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(wait) = self.wait_locked(&counters, username, address, now_ms) {
            return Err(wait);
        }
        for key in Self::keys(username, address) {
            let counter = counters.entry(key).or_default();
            if now_ms - counter.last_begun_ms > PENDING_EXPIRES_MS {
                counter.pending = 0;
            }
            counter.pending += 1;
            counter.last_begun_ms = now_ms;
        }
        Ok(())
    }

    /// A try ended without a verdict on the password (a storage error).
    pub fn abandoned(&self, username: &str, address: IpAddr) {
        let mut counters = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        Self::decided(&mut counters, username, address);
    }

    fn decided(counters: &mut HashMap<Key, Counter>, username: &str, address: IpAddr) {
        for key in Self::keys(username, address) {
            if let Some(counter) = counters.get_mut(&key) {
                counter.pending = counter.pending.saturating_sub(1);
            }
        }
    }

    /// A wrong password (or unknown user): count it on every counter.
    pub fn failed(&self, username: &str, address: IpAddr, now_ms: i64) {
        let mut counters = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        Self::decided(&mut counters, username, address);
        if counters.len() >= MAX_ENTRIES {
            counters.retain(|_, c| c.blocked_until_ms > now_ms || c.pending > 0);
        }
        for key in Self::keys(username, address) {
            let (free, cap_ms) = self.limits(&key);
            let counter = counters.entry(key).or_default();
            if now_ms - counter.last_failure_ms > self.policy.forget_after_ms {
                *counter = Counter { pending: counter.pending, last_begun_ms: counter.last_begun_ms, ..Counter::default() };
            }
            counter.failures += 1;
            counter.last_failure_ms = now_ms;
            if counter.failures >= free {
                let doublings = (counter.failures - free).min(30);
                let delay = self.policy.base_delay_ms.saturating_mul(1 << doublings).min(cap_ms);
                counter.blocked_until_ms = now_ms + delay;
            }
        }
    }

    /// A good password: this user's counters start over (the address's
    /// does not: one success does not clear a stuffing run from it).
    pub fn succeeded(&self, username: &str, address: IpAddr) {
        let mut counters = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        Self::decided(&mut counters, username, address);
        counters.remove(&Key::AccountFromAddress(username.to_owned(), address));
        counters.remove(&Key::Account(username.to_owned()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn delays_start_after_the_free_tries_double_and_are_capped() {
        let throttle = LoginThrottle::default();
        for _ in 0..4 {
            throttle.failed("worker1", A, 0);
        }
        assert_eq!(throttle.wait_ms("worker1", A, 0), None);
        throttle.failed("worker1", A, 0);
        assert_eq!(throttle.wait_ms("worker1", A, 0), Some(1_000));
        throttle.failed("worker1", A, 1_000);
        assert_eq!(throttle.wait_ms("worker1", A, 1_000), Some(2_000));
        for n in 0..20 {
            throttle.failed("worker1", A, 10_000 + n);
        }
        assert_eq!(throttle.wait_ms("worker1", A, 10_019), Some(15 * 60_000));
    }

    #[test]
    fn another_address_waits_at_most_the_account_cap() {
        let throttle = LoginThrottle::default();
        for n in 0..200 {
            throttle.failed("worker1", A, n);
        }
        // The owner, from their own phone: only the account-wide counter.
        assert_eq!(throttle.wait_ms("worker1", B, 200), Some(60_000 - 1));
        assert_eq!(throttle.wait_ms("worker2", B, 200), None);
        throttle.succeeded("worker1", B);
        assert_eq!(throttle.wait_ms("worker1", B, 200), None);
        // The guessing address stays slowed down.
        assert!(throttle.wait_ms("worker1", A, 200).unwrap() > 60_000);
    }

    /// A burst of concurrent guesses: the free tries may be checked at once,
    /// after that one at a time; a decided try lets the next one in.
    #[test]
    fn concurrent_tries_beyond_the_free_ones_wait_for_each_other() {
        let throttle = LoginThrottle::default();
        let begun = (0..20).filter(|_| throttle.begin("worker1", A, 0).is_ok()).count();
        assert_eq!(begun, 5, "the free tries of one name from one address, then wait");
        assert_eq!(throttle.begin("worker1", A, 0), Err(BEHIND_PENDING_MS));
        for _ in 0..5 {
            throttle.failed("worker1", A, 0);
        }
        assert_eq!(throttle.begin("worker1", A, 0), Err(1_000), "now the failures' own delay");
        // A try that ended without a verdict stops holding others back.
        let throttle = LoginThrottle::default();
        for _ in 0..5 {
            throttle.begin("worker2", A, 0).unwrap();
        }
        assert!(throttle.begin("worker2", A, 0).is_err());
        throttle.abandoned("worker2", A);
        assert!(throttle.begin("worker2", A, 0).is_ok());
        // And one never decided expires.
        assert!(throttle.begin("worker2", A, PENDING_EXPIRES_MS + 1).is_ok());
    }

    #[test]
    fn unknown_names_count_like_real_ones_and_old_failures_are_forgotten() {
        let throttle = LoginThrottle::default();
        for _ in 0..5 {
            throttle.failed("nosuchuser", A, 0);
        }
        assert_eq!(throttle.wait_ms("nosuchuser", A, 0), Some(1_000));
        let hour_later = 60 * 60_000 + 1;
        throttle.failed("nosuchuser", A, hour_later);
        assert_eq!(throttle.wait_ms("nosuchuser", A, hour_later), None);
    }
}
