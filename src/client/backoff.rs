//! When to reconnect: exponential backoff with full jitter, one policy for
//! both clients.
//!
//! Reading list:
//! - Marc Brooker, "Exponential Backoff And Jitter", AWS Architecture Blog
//!   (2015): "Full Jitter", `sleep = random_between(0, min(cap, base * 2 **
//!   attempt))`, spreads the clients of a restarted server over the whole
//!   window, where plain exponential backoff sends them back in waves.
//! - WHATWG HTML §9.2.3 ("reestablish the connection": wait the reconnection
//!   time, then "optionally, wait some more ... an exponential backoff delay"),
//!   §9.2.6 (`retry:` sets the reconnection time).
//!
//! [`Backoff`] is sans-IO like the protocol layers: time comes in as `now`,
//! randomness from a [`Random`] the caller passes, and it answers with a
//! delay. It never sleeps, so its tests assert exact delays. A blocking
//! client waits those delays on a [`Clock`]: the [`SystemClock`], or in a
//! test one that records each wait and returns at once.

use std::time::{Duration, Instant};

use crate::client::random::Random;

/// How a client reconnects. Start from [`ReconnectPolicy::default`]:
///
/// ```
/// use std::time::Duration;
/// use pushloop::client::backoff::ReconnectPolicy;
/// let policy = ReconnectPolicy { max_attempts: Some(5), ..Default::default() };
/// assert_eq!(policy.max_delay, Duration::from_secs(30));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReconnectPolicy {
    /// The window of the first retry: it waits a random time in
    /// `[0, initial_delay]`; each failure in a row doubles the window. Default
    /// 1 s: a server restarting behind a load balancer is usually back within
    /// a few windows, and a thousand clients spread over one second do not
    /// knock it over again.
    pub initial_delay: Duration,
    /// The largest window. Default 30 s: after a long outage a client notices
    /// the server's return within half a minute (socket.io caps at 5 s, gRPC
    /// at 120 s).
    pub max_delay: Duration,
    /// Give up after this many retries in a row without a stable connection.
    /// Default `None`: never, as browsers do.
    pub max_attempts: Option<u32>,
    /// Give up when the next retry would start more than this long after the
    /// trouble began (the first failure since the last stable connection).
    /// Default `None`: never.
    pub max_elapsed: Option<Duration>,
    /// A connection that stayed up this long was stable: when it ends, the
    /// window and the give-up counts start over. Default 10 s: longer than a
    /// crash-looping server takes to accept and drop, shorter than any proxy's
    /// idle timeout.
    pub stable_after: Duration,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        ReconnectPolicy {
            initial_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
            max_attempts: None,
            max_elapsed: None,
            stable_after: Duration::from_secs(10),
        }
    }
}

/// One client's reconnect state under a [`ReconnectPolicy`].
///
/// Tell it when a connection opens ([`Backoff::connected`]); each time a
/// connection ends or an attempt fails, ask [`Backoff::next_delay`] how long to
/// wait, or whether to give up.
#[derive(Clone, Debug)]
pub struct Backoff<R> {
    policy: ReconnectPolicy,
    random: R,
    /// Retries handed out since the last stable connection.
    attempts: u32,
    /// When the current run of failures began.
    trouble_since: Option<Instant>,
    /// When the open connection opened, if one is open.
    connected_at: Option<Instant>,
}

impl<R: Random> Backoff<R> {
    /// A client that has not connected yet.
    pub fn new(policy: ReconnectPolicy, random: R) -> Self {
        Backoff {
            policy,
            random,
            attempts: 0,
            trouble_since: None,
            connected_at: None,
        }
    }

    /// A connection opened at `now` (for SSE: the server answered `200
    /// text/event-stream`, not merely accepted TCP).
    pub fn connected(&mut self, now: Instant) {
        self.connected_at = Some(now);
    }

    /// Retries handed out since the last stable connection.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The connection ended, or an attempt failed, at `now`: how long to wait
    /// before the next attempt, or `None` to give up.
    ///
    /// The delay is `floor` plus full jitter: a random time in `[0, window]`
    /// with `window = min(max_delay, initial_delay × 2^attempts)`. `floor` is a
    /// wait the server asked for (SSE's `retry:`, WHATWG HTML §9.2.3: wait the
    /// reconnection time, then "optionally, wait some more"); the jitter on top
    /// keeps the clients of one restarted server from all coming back at the
    /// same instant.
    pub fn next_delay(&mut self, now: Instant, floor: Duration) -> Option<Duration> {
        // A connection that lasted `stable_after` ends a run of trouble.
        if let Some(opened) = self.connected_at.take() {
            if now.saturating_duration_since(opened) >= self.policy.stable_after {
                self.attempts = 0;
                self.trouble_since = None;
            }
        }
        let trouble_since = *self.trouble_since.get_or_insert(now);
        if self
            .policy
            .max_attempts
            .is_some_and(|max| self.attempts >= max)
        {
            return None;
        }
        let delay = floor.saturating_add(jitter(self.window(), self.random.next_u64()));
        let starts_at = now
            .saturating_duration_since(trouble_since)
            .saturating_add(delay);
        if self
            .policy
            .max_elapsed
            .is_some_and(|limit| starts_at > limit)
        {
            return None;
        }
        self.attempts = self.attempts.saturating_add(1);
        Some(delay)
    }

    /// `min(max_delay, initial_delay × 2^attempts)`, without overflow.
    fn window(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempts).unwrap_or(u32::MAX);
        self.policy
            .initial_delay
            .saturating_mul(factor)
            .min(self.policy.max_delay)
    }
}

/// Where a reconnecting client reads the time and waits out its delays.
pub trait Clock {
    /// Now.
    fn now(&self) -> Instant;
    /// Waits `duration` (or, for a test clock, moves its time on by it).
    fn sleep(&mut self, duration: Duration);
}

/// The real clock: [`Instant::now`] and [`std::thread::sleep`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn sleep(&mut self, duration: Duration) {
        std::thread::sleep(duration);
    }
}

/// A point in `[0, window]` chosen by `random`, read as a fraction of
/// `2^64`: `0` gives zero, `2^63` half the window, `u64::MAX` the window less
/// under a nanosecond. Multiplying instead of taking a remainder keeps every
/// point equally likely.
fn jitter(window: Duration, random: u64) -> Duration {
    let nanos = (window.as_nanos().saturating_mul(u128::from(random))) >> 64;
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);
    const HALF: u64 = 1 << 63;

    fn policy() -> ReconnectPolicy {
        ReconnectPolicy {
            initial_delay: 100 * MS,
            max_delay: 1000 * MS,
            ..ReconnectPolicy::default()
        }
    }

    /// A backoff whose random source always says `value`.
    fn fixed(policy: ReconnectPolicy, value: u64) -> Backoff<impl Random> {
        Backoff::new(policy, move || value)
    }

    #[test]
    fn windows_double_up_to_the_cap_and_jitter_takes_a_fraction() {
        let start = Instant::now();
        let mut half = fixed(policy(), HALF);
        let delays: Vec<_> = (0..7)
            .map(|_| half.next_delay(start, Duration::ZERO).unwrap())
            .collect();
        // Windows 100, 200, 400, 800, then the 1000 ms cap; half of each.
        assert_eq!(delays, [50, 100, 200, 400, 500, 500, 500].map(|n| n * MS));
        assert_eq!(half.attempts(), 7);

        let mut full = fixed(policy(), u64::MAX);
        let first = full.next_delay(start, Duration::ZERO).unwrap();
        assert!(first < 100 * MS && first > 100 * MS - Duration::from_nanos(2));
        let mut none = fixed(policy(), 0);
        assert_eq!(none.next_delay(start, Duration::ZERO), Some(Duration::ZERO));
    }

    #[test]
    fn jitter_stays_within_its_window_for_any_random_value() {
        let start = Instant::now();
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        // A xorshift sequence: many values across the whole range.
        let mut random = Backoff::new(policy(), move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        });
        let floor = 30 * MS;
        for attempt in 0..1000u32 {
            let window = (100 * MS * 2u32.pow(attempt.min(4))).min(1000 * MS);
            let delay = random.next_delay(start, floor).unwrap();
            assert!(
                delay >= floor && delay <= floor + window,
                "{attempt}: {delay:?}"
            );
        }
    }

    #[test]
    fn the_servers_retry_is_the_floor() {
        let start = Instant::now();
        let mut backoff = fixed(policy(), HALF);
        assert_eq!(backoff.next_delay(start, 3000 * MS), Some(3050 * MS));
        assert_eq!(backoff.next_delay(start, 3000 * MS), Some(3100 * MS));
        let mut zero = fixed(policy(), 0);
        assert_eq!(zero.next_delay(start, 3000 * MS), Some(3000 * MS));
    }

    #[test]
    fn gives_up_after_max_attempts_in_a_row() {
        let start = Instant::now();
        let mut backoff = fixed(
            ReconnectPolicy {
                max_attempts: Some(3),
                ..policy()
            },
            HALF,
        );
        for _ in 0..3 {
            assert!(backoff.next_delay(start, Duration::ZERO).is_some());
        }
        assert_eq!(backoff.next_delay(start, Duration::ZERO), None);
        assert_eq!(backoff.next_delay(start, Duration::ZERO), None);
        assert_eq!(backoff.attempts(), 3);

        let mut never = fixed(
            ReconnectPolicy {
                max_attempts: Some(0),
                ..policy()
            },
            HALF,
        );
        assert_eq!(never.next_delay(start, Duration::ZERO), None);
    }

    #[test]
    fn gives_up_when_the_next_retry_would_start_past_max_elapsed() {
        let start = Instant::now();
        let mut backoff = fixed(
            ReconnectPolicy {
                max_elapsed: Some(1000 * MS),
                ..policy()
            },
            HALF,
        );
        // Trouble begins at `start`; each retry fails the moment it starts.
        let mut now = start;
        let mut delays = Vec::new();
        while let Some(delay) = backoff.next_delay(now, Duration::ZERO) {
            delays.push(delay);
            now += delay;
            assert!(delays.len() < 100, "never gave up");
        }
        // 50 + 100 + 200 + 400 = 750 ms; the next (500 ms) would start at 1250.
        assert_eq!(delays, [50, 100, 200, 400].map(|n| n * MS));
        // At exactly the limit is still allowed.
        let mut edge = fixed(
            ReconnectPolicy {
                max_elapsed: Some(50 * MS),
                ..policy()
            },
            HALF,
        );
        assert_eq!(edge.next_delay(start, Duration::ZERO), Some(50 * MS));
    }

    #[test]
    fn a_stable_connection_starts_the_window_and_the_counts_over() {
        let start = Instant::now();
        let mut backoff = fixed(
            ReconnectPolicy {
                max_attempts: Some(3),
                ..policy()
            },
            HALF,
        );
        for _ in 0..3 {
            backoff.next_delay(start, Duration::ZERO).unwrap();
        }
        // Short-lived: the server accepts and drops; nothing starts over.
        backoff.connected(start);
        assert_eq!(backoff.next_delay(start + 9999 * MS, Duration::ZERO), None);

        let mut backoff = fixed(policy(), HALF);
        for _ in 0..3 {
            backoff.next_delay(start, Duration::ZERO).unwrap();
        }
        backoff.connected(start + 100 * MS);
        assert_eq!(
            backoff.next_delay(start + 5000 * MS, Duration::ZERO),
            Some(400 * MS),
            "up for 4.9 s: not stable, the window keeps growing"
        );
        backoff.connected(start + 6000 * MS);
        assert_eq!(
            backoff.next_delay(start + 16000 * MS, Duration::ZERO),
            Some(50 * MS),
            "up for 10 s: stable, back to the first window"
        );
        assert_eq!(backoff.attempts(), 1);
    }

    #[test]
    fn max_elapsed_counts_from_the_end_of_the_last_stable_connection() {
        let start = Instant::now();
        let mut backoff = fixed(
            ReconnectPolicy {
                max_elapsed: Some(120 * MS),
                ..policy()
            },
            HALF,
        );
        assert_eq!(backoff.next_delay(start, Duration::ZERO), Some(50 * MS));
        backoff.connected(start + 50 * MS);
        // A minute later the stable connection ends: trouble begins anew.
        let later = start + 60_000 * MS;
        assert_eq!(backoff.next_delay(later, Duration::ZERO), Some(50 * MS));
        // 50 ms into it, a 100 ms wait would start at 150 ms: past 120.
        assert_eq!(backoff.next_delay(later + 50 * MS, Duration::ZERO), None);
    }

    #[test]
    fn huge_attempt_counts_and_windows_do_not_overflow() {
        let start = Instant::now();
        let mut backoff = fixed(
            ReconnectPolicy {
                initial_delay: Duration::MAX,
                max_delay: Duration::MAX,
                ..policy()
            },
            u64::MAX,
        );
        backoff.attempts = u32::MAX - 1;
        let delay = backoff.next_delay(start, Duration::MAX).unwrap();
        assert_eq!(delay, Duration::MAX);
        assert_eq!(
            backoff.next_delay(start, Duration::ZERO).map(|_| ()),
            Some(())
        );
        assert_eq!(backoff.attempts(), u32::MAX);
    }
}
