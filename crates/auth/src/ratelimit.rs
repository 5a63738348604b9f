//! Failed logins per user name and client address in a sliding window: once the limit is
//! reached, that name from that address is refused until its oldest failure ages out. Other
//! names from the same address, and the same name from elsewhere, are not affected, so a
//! guesser cannot lock a user out everywhere nor stop a shared office's other users.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// (name, address) pairs tracked at most; beyond it the quietest are forgotten, so a flood
/// of names or addresses cannot grow memory without bound.
const MAX_TRACKED: usize = 100_000;

type Key = (String, IpAddr);

pub struct Failures {
    limit: u32,
    window: Duration,
    seen: Mutex<HashMap<Key, VecDeque<Instant>>>,
}

impl Failures {
    pub fn new(limit: u32, window: Duration) -> Failures {
        Failures {
            limit,
            window,
            seen: Mutex::new(HashMap::new()),
        }
    }

    pub fn record(&self, user: &str, ip: IpAddr) {
        let mut seen = self.seen.lock().expect("lock");
        let key = (user.to_string(), ip);
        if seen.len() >= MAX_TRACKED && !seen.contains_key(&key) {
            let now = Instant::now();
            seen.retain(|_, q| q.back().is_some_and(|t| now - *t < self.window));
        }
        let q = seen.entry(key).or_default();
        q.push_back(Instant::now());
        while q.len() > self.limit as usize {
            q.pop_front();
        }
    }

    /// Whether `limit` failures of `user` from `ip` fall within the window.
    pub fn blocked(&self, user: &str, ip: IpAddr) -> bool {
        let mut seen = self.seen.lock().expect("lock");
        let key = (user.to_string(), ip);
        let Some(q) = seen.get_mut(&key) else {
            return false;
        };
        let now = Instant::now();
        while q.front().is_some_and(|t| now - *t >= self.window) {
            q.pop_front();
        }
        if q.is_empty() {
            seen.remove(&key);
            return false;
        }
        q.len() >= self.limit as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_at_the_limit_per_name_and_address_then_forgets() {
        let f = Failures::new(3, Duration::from_millis(200));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..2 {
            f.record("alice", a);
        }
        assert!(!f.blocked("alice", a), "two failures of three allowed");
        f.record("alice", a);
        assert!(f.blocked("alice", a), "the third failure reaches the limit");
        assert!(!f.blocked("alice", b), "per address");
        assert!(!f.blocked("bob", a), "per user name");
        std::thread::sleep(Duration::from_millis(250));
        assert!(!f.blocked("alice", a), "the window slides");
    }
}
