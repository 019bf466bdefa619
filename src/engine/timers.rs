//! The loop's one timer structure: a min-heap of deadlines, and the user's
//! timers in it.
//!
//! A connection arms *one* heap entry, for the earliest of its deadlines
//! (its session's and its own). Moving a deadline later — every read pushes
//! an idle deadline out — costs nothing here: when the armed entry fires,
//! the connection recomputes its earliest deadline and re-arms if it lies in
//! the future. Only moving a deadline earlier pushes a new entry, and the
//! superseded one is recognised as stale when it pops (its time no longer
//! matches what the owner armed). User timers are entries of the same heap,
//! and `poll` sleeps until the top one.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use mio::Token;

use crate::ids::TimerId;
use crate::time::Instant;

/// What a heap entry wakes up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Wake {
    /// A connection: check its deadlines.
    Connection(Token),
    /// A user timer, by slot and generation.
    User(usize, u32),
    /// Accepting was paused (out of file descriptors); try again.
    Accept,
    /// Time to publish this loop's counters again, if they changed (several
    /// loops; see `Core::share_stats`).
    ShareStats,
}

/// A user timer slot.
struct UserTimer {
    generation: u32,
    period: Option<Duration>,
    active: bool,
}

/// The heap, and the user timers' slots.
#[derive(Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<(Instant, Wake)>>,
    user: Vec<UserTimer>,
    free: Vec<usize>,
}

impl Timers {
    /// Schedules `wake` at `when`.
    pub fn arm(&mut self, when: Instant, wake: Wake) {
        self.heap.push(Reverse((when, wake)));
    }

    /// The earliest deadline, if any.
    pub fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((when, _))| *when)
    }

    /// Removes and returns one entry due at or before `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<(Instant, Wake)> {
        match self.heap.peek() {
            Some(Reverse((when, _))) if *when <= now => self.heap.pop().map(|Reverse(entry)| entry),
            _ => None,
        }
    }

    /// Schedules a user timer at `now + delay`, repeating every `period`.
    pub fn set_user(&mut self, now: Instant, delay: Duration, period: Option<Duration>) -> TimerId {
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.user.push(UserTimer {
                    generation: 0,
                    period: None,
                    active: false,
                });
                self.user.len() - 1
            }
        };
        let timer = &mut self.user[slot];
        timer.period = period;
        timer.active = true;
        let id = TimerId {
            slot,
            generation: timer.generation,
        };
        self.arm(now + delay, Wake::User(slot, id.generation));
        id
    }

    /// Cancels a user timer; false if it already fired (a timeout) or was cleared.
    pub fn clear_user(&mut self, id: TimerId) -> bool {
        match self.user.get_mut(id.slot) {
            Some(timer) if timer.active && timer.generation == id.generation => {
                timer.active = false;
                timer.generation = timer.generation.wrapping_add(1);
                self.free.push(id.slot);
                true
            }
            _ => false,
        }
    }

    /// A user timer's heap entry popped at its deadline `when`: the id to
    /// report if it is still live, re-armed from its own deadline when
    /// periodic (so ticks do not drift).
    pub fn user_fired(&mut self, when: Instant, slot: usize, generation: u32) -> Option<TimerId> {
        let timer = self.user.get_mut(slot)?;
        if !timer.active || timer.generation != generation {
            return None;
        }
        let id = TimerId { slot, generation };
        match timer.period {
            Some(period) => self.arm(when + period, Wake::User(slot, generation)),
            None => {
                self.clear_user(id);
            }
        }
        Some(id)
    }

    /// Entries in the heap (live and stale).
    #[cfg(test)]
    fn entries(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> Instant {
        Instant::from_micros(secs * 1_000_000)
    }

    #[test]
    fn pops_in_deadline_order() {
        let mut timers = Timers::default();
        timers.arm(at(3), Wake::Accept);
        timers.arm(at(1), Wake::User(0, 0));
        assert_eq!(timers.next(), Some(at(1)));
        assert_eq!(timers.pop_due(at(0)), None);
        assert_eq!(timers.pop_due(at(5)), Some((at(1), Wake::User(0, 0))));
        assert_eq!(timers.entries(), 1);
    }

    #[test]
    fn a_periodic_timer_rearms_from_its_own_deadline() {
        let mut timers = Timers::default();
        let id = timers.set_user(at(0), Duration::from_secs(2), Some(Duration::from_secs(2)));
        // The loop ran late: the entry pops at 2.5 s, and the next tick is
        // still at 4 s, not 4.5 s.
        let (when, wake) = timers.pop_due(at(3)).unwrap();
        assert_eq!(when, at(2));
        let Wake::User(slot, generation) = wake else {
            panic!("a user timer")
        };
        assert_eq!(timers.user_fired(when, slot, generation), Some(id));
        assert_eq!(timers.next(), Some(at(4)));
        assert!(timers.clear_user(id));
        assert!(!timers.clear_user(id), "cleared once");
        let (when, _) = timers.pop_due(at(4)).unwrap();
        assert_eq!(timers.user_fired(when, slot, generation), None, "stale");
    }

    #[test]
    fn a_timeout_fires_once_and_its_slot_is_reused_with_a_new_generation() {
        let mut timers = Timers::default();
        let first = timers.set_user(at(0), Duration::from_secs(1), None);
        let (when, _) = timers.pop_due(at(1)).unwrap();
        assert_eq!(
            timers.user_fired(when, first.slot, first.generation),
            Some(first)
        );
        assert!(!timers.clear_user(first), "already fired");
        let second = timers.set_user(at(1), Duration::from_secs(1), None);
        assert_eq!(second.slot, first.slot);
        assert_ne!(second, first);
    }
}
