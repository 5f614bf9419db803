//! Failed attempts per source address (failed API authentications, failed probe hellos): past
//! `max` failures in a window, the address is refused without any further work (no store
//! lookup, no TLS handshake) until the window ends. The table is bounded: a flood from many
//! addresses clears it rather than growing it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Addresses tracked at most.
const MAX_TRACKED: usize = 100_000;

pub struct FailureLimiter {
    max: u32,
    window: Duration,
    table: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

/// What [`FailureLimiter::failed`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The address's first failure of the window (worth one log line).
    First,
    /// Counted; the address is still allowed.
    Counted,
    /// This failure crossed the limit: the address is blocked for the rest of the window (say
    /// so once in the log).
    Crossed,
    /// Already blocked.
    Blocked,
}

impl FailureLimiter {
    /// `max` failures per `window`; `max = 0` turns the limit off.
    pub fn new(max: u32, window: Duration) -> Self {
        Self {
            max,
            window,
            table: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, (Instant, u32)>> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `ip` is blocked now.
    pub fn is_blocked(&self, ip: IpAddr) -> bool {
        if self.max == 0 {
            return false;
        }
        let now = Instant::now();
        self.lock()
            .get(&ip)
            .is_some_and(|(start, n)| now.duration_since(*start) < self.window && *n >= self.max)
    }

    /// Counts one failure of `ip`.
    pub fn failed(&self, ip: IpAddr) -> Failure {
        if self.max == 0 {
            return Failure::Counted;
        }
        let now = Instant::now();
        let mut t = self.lock();
        if t.len() >= MAX_TRACKED && !t.contains_key(&ip) {
            t.retain(|_, (start, _)| now.duration_since(*start) < self.window);
            if t.len() >= MAX_TRACKED {
                t.clear();
            }
        }
        let e = t.entry(ip).or_insert((now, 0));
        if now.duration_since(e.0) >= self.window {
            *e = (now, 0);
        }
        if e.1 >= self.max {
            return Failure::Blocked;
        }
        e.1 += 1;
        if e.1 >= self.max {
            Failure::Crossed
        } else if e.1 == 1 {
            Failure::First
        } else {
            Failure::Counted
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_max_failures_until_the_window_ends() {
        let l = FailureLimiter::new(3, Duration::from_millis(200));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert_eq!(l.failed(a), Failure::First);
        assert_eq!(l.failed(a), Failure::Counted);
        assert!(!l.is_blocked(a));
        assert_eq!(l.failed(a), Failure::Crossed);
        assert!(l.is_blocked(a));
        assert_eq!(l.failed(a), Failure::Blocked);
        assert!(!l.is_blocked(b), "other addresses are not affected");
        std::thread::sleep(Duration::from_millis(250));
        assert!(!l.is_blocked(a));
        assert_eq!(l.failed(a), Failure::First);
        let off = FailureLimiter::new(0, Duration::from_secs(60));
        for _ in 0..10 {
            assert_eq!(off.failed(a), Failure::Counted);
        }
        assert!(!off.is_blocked(a));
    }
}
