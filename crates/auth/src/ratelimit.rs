//! Failed logins per client address in a sliding window: past the limit, the address is
//! refused until its oldest failure ages out.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Addresses tracked at most; beyond it the quietest are forgotten, so a flood of addresses
/// cannot grow memory without bound.
const MAX_TRACKED: usize = 100_000;

pub struct Failures {
    limit: u32,
    window: Duration,
    seen: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
}

impl Failures {
    pub fn new(limit: u32, window: Duration) -> Failures {
        Failures {
            limit,
            window,
            seen: Mutex::new(HashMap::new()),
        }
    }

    pub fn record(&self, ip: IpAddr) {
        let mut seen = self.seen.lock().expect("lock");
        if seen.len() >= MAX_TRACKED && !seen.contains_key(&ip) {
            let now = Instant::now();
            seen.retain(|_, q| q.back().is_some_and(|t| now - *t < self.window));
        }
        let q = seen.entry(ip).or_default();
        q.push_back(Instant::now());
        while q.len() > self.limit as usize + 1 {
            q.pop_front();
        }
    }

    pub fn blocked(&self, ip: IpAddr) -> bool {
        let mut seen = self.seen.lock().expect("lock");
        let Some(q) = seen.get_mut(&ip) else {
            return false;
        };
        let now = Instant::now();
        while q.front().is_some_and(|t| now - *t >= self.window) {
            q.pop_front();
        }
        q.len() > self.limit as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_past_the_limit_then_forgets() {
        let f = Failures::new(3, Duration::from_millis(200));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..3 {
            f.record(a);
        }
        assert!(!f.blocked(a), "three failures are allowed");
        f.record(a);
        assert!(f.blocked(a));
        assert!(!f.blocked(b), "per address");
        std::thread::sleep(Duration::from_millis(250));
        assert!(!f.blocked(a), "the window slides");
    }
}
