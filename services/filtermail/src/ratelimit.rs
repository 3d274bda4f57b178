//! The per-sender rate limit: a generic cell rate algorithm (GCRA) keyed by address.
//!
//! Each sender may send `burst` messages at once and then one more every `60 s / per_minute`.
//! Only a theoretical arrival time per sender is stored; senders whose time lies in the past are
//! forgotten when the table has doubled in size since the last sweep.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Per-key GCRA limiter.
#[derive(Debug)]
pub struct RateLimiter {
    /// Time between two messages at the sustained rate.
    interval: Duration,
    /// How far ahead of `now` the theoretical arrival time may run: `interval * burst`.
    tolerance: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    tat: HashMap<String, Instant>,
    sweep_at: usize,
}

const MIN_SWEEP: usize = 1024;

impl RateLimiter {
    /// `per_minute` messages per minute with bursts of `burst`; zero values are taken as one.
    pub fn new(per_minute: u32, burst: u32) -> RateLimiter {
        let interval = Duration::from_secs(60) / per_minute.max(1);
        RateLimiter {
            interval,
            tolerance: interval * burst.max(1),
            state: Mutex::new(State {
                tat: HashMap::new(),
                sweep_at: MIN_SWEEP,
            }),
        }
    }

    /// Counts one message from `key` at `now`; `Err(wait)` when it is over the limit, with the
    /// time after which the next message would pass.
    pub fn check(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let tat = state.tat.get(key).copied().unwrap_or(now).max(now);
        let new_tat = tat + self.interval;
        let ahead = new_tat - now;
        if ahead > self.tolerance {
            return Err(ahead - self.tolerance);
        }
        state.tat.insert(key.to_owned(), new_tat);
        if state.tat.len() >= state.sweep_at {
            state.tat.retain(|_, tat| *tat > now);
            state.sweep_at = (state.tat.len() * 2).max(MIN_SWEEP);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_sustained_rate() {
        let limiter = RateLimiter::new(60, 10);
        let t0 = Instant::now();
        for i in 0..10 {
            assert_eq!(limiter.check("a@x", t0), Ok(()), "message {i}");
        }
        let wait = limiter.check("a@x", t0).err();
        assert_eq!(wait, Some(Duration::from_secs(1)));
        // Other senders are independent.
        assert_eq!(limiter.check("b@x", t0), Ok(()));
        // One interval later exactly one more passes.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(limiter.check("a@x", t1), Ok(()));
        assert!(limiter.check("a@x", t1).is_err());
        // After a long pause the full burst is available again.
        let t2 = t1 + Duration::from_secs(60);
        for _ in 0..10 {
            assert_eq!(limiter.check("a@x", t2), Ok(()));
        }
        assert!(limiter.check("a@x", t2).is_err());
    }

    #[test]
    fn forgets_idle_senders() {
        let limiter = RateLimiter::new(60, 1);
        let t0 = Instant::now();
        for i in 0..MIN_SWEEP - 1 {
            assert_eq!(limiter.check(&format!("u{i}@x"), t0), Ok(()));
        }
        let later = t0 + Duration::from_secs(5);
        assert_eq!(limiter.check("last@x", later), Ok(()));
        let state = limiter.state.lock().unwrap_or_else(|p| p.into_inner());
        assert_eq!(state.tat.len(), 1);
        assert_eq!(state.sweep_at, MIN_SWEEP);
    }

    #[test]
    fn zero_settings_do_not_divide_by_zero() {
        let limiter = RateLimiter::new(0, 0);
        let t0 = Instant::now();
        assert_eq!(limiter.check("a@x", t0), Ok(()));
        assert_eq!(limiter.check("a@x", t0), Err(Duration::from_secs(60)));
    }
}
