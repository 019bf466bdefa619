//! Time, as the caller passes it in.
//!
//! The state machines of this crate decide *when* things must happen (a ping
//! is due, a close handshake has taken too long) but never read a clock: the
//! caller passes `now` in and asks for the next deadline. `core` has no
//! `Instant`, so this crate has its own: microseconds since an origin the
//! caller picks (pushloop's loop uses the moment it started). Only differences
//! between instants mean anything, so any origin works as long as one session
//! always gets instants from the same clock.

use core::num::NonZeroU64;
use core::ops::Add;
use core::time::Duration;

/// A point in time: microseconds since the caller's origin.
///
/// ```
/// use core::time::Duration;
/// use pushloop_proto::time::Instant;
///
/// let start = Instant::from_micros(1_000);
/// let later = start + Duration::from_millis(5);
/// assert_eq!(later.saturating_duration_since(start), Duration::from_millis(5));
/// assert_eq!(start.saturating_duration_since(later), Duration::ZERO);
/// ```
///
/// Kept as microseconds plus one in a `NonZeroU64`, so that an
/// `Option<Instant>` takes 8 bytes instead of 16 (the zero is its `None`):
/// a server connection keeps two of them (its own deadline and the timer it
/// armed), 16 bytes of every idle connection. The latest instant,
/// `u64::MAX - 1` µs (half a million years), is where adding saturates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(NonZeroU64);

impl Instant {
    /// The origin itself.
    pub const ZERO: Instant = Instant(NonZeroU64::MIN);

    /// The instant `micros` microseconds after the origin (saturating at the
    /// latest instant).
    pub const fn from_micros(micros: u64) -> Instant {
        match NonZeroU64::new(micros.saturating_add(1)) {
            Some(plus_one) => Instant(plus_one),
            None => Instant::ZERO,
        }
    }

    /// The instant `since_origin` after the origin (saturating far in the future).
    pub fn from_duration(since_origin: Duration) -> Instant {
        Instant::from_micros(u64::try_from(since_origin.as_micros()).unwrap_or(u64::MAX))
    }

    /// Microseconds since the origin.
    pub const fn as_micros(self) -> u64 {
        self.0.get() - 1
    }

    /// How long after `earlier` this is; zero if it is not after it.
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_micros(self.as_micros().saturating_sub(earlier.as_micros()))
    }
}

impl Default for Instant {
    fn default() -> Instant {
        Instant::ZERO
    }
}

/// Adding a duration saturates instead of overflowing: a deadline "never"
/// is far away, not a panic.
impl Add<Duration> for Instant {
    type Output = Instant;

    fn add(self, duration: Duration) -> Instant {
        let micros = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
        Instant::from_micros(self.as_micros().saturating_add(micros))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adding_a_huge_duration_saturates() {
        let far = Instant::from_micros(10) + Duration::MAX;
        assert_eq!(far.as_micros(), u64::MAX - 1);
        assert!(far > Instant::from_micros(10));
        assert_eq!(Instant::from_micros(u64::MAX), far);
    }

    #[test]
    fn an_optional_instant_takes_no_more_room_than_an_instant() {
        assert_eq!(core::mem::size_of::<Option<Instant>>(), 8);
        assert_eq!(Instant::default(), Instant::from_micros(0));
        assert_eq!(Instant::ZERO.as_micros(), 0);
    }

    #[test]
    fn orders_by_time() {
        let a = Instant::from_duration(Duration::from_secs(1));
        assert!(a < a + Duration::from_micros(1));
        assert_eq!(a.as_micros(), 1_000_000);
    }
}
