//! The loop's one timer structure: a min-heap of deadlines.
//!
//! Connections keep their own small table of deadlines (handshake, idle,
//! heartbeat, close, keep-alive, long-poll) and arm *one* heap entry for the
//! earliest of them. Moving a deadline later (every read pushes the idle
//! deadline out) costs nothing here: when the armed entry fires, the connection
//! recomputes its earliest deadline and re-arms if it lies in the future. Only
//! moving a deadline earlier pushes a new entry, and the superseded one is
//! recognised as stale when it pops (its time no longer matches what the owner
//! armed). User timers are entries of the same heap. `poll` sleeps until the top.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

use mio::Token;

/// What a heap entry wakes up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Wake {
    /// A connection: check its deadline table.
    Connection(Token),
    /// A user timer, by slot and generation.
    User(usize, u32),
    /// Accepting was paused (out of file descriptors); try again.
    Accept,
}

/// Min-heap of `(when, what)`.
#[derive(Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<(Instant, Wake)>>,
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

    /// Entries in the heap (live and stale).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.heap.len()
    }
}

/// The deadlines one connection can have, as indexes into its [`Deadlines`] table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deadline {
    /// A request head must be complete by then (slowloris bound).
    Handshake = 0,
    /// The peer must have sent something by then.
    Idle = 1,
    /// WebSocket: send a ping then, or (ping sent) the pong must be in by then.
    Heartbeat = 2,
    /// The close handshake / lingering close must be over by then.
    Close = 3,
    /// SSE keep-alive comment due, or a held long-poll's time is up.
    Stream = 4,
}

/// A connection's deadline table: no heap, no tree; the next deadline is its minimum.
#[derive(Clone, Copy, Debug, Default)]
pub struct Deadlines {
    table: [Option<Instant>; 5],
    /// The time of the heap entry armed for this connection, if any.
    armed: Option<Instant>,
}

impl Deadlines {
    /// Sets or clears one deadline.
    pub fn set(&mut self, which: Deadline, when: Option<Instant>) {
        self.table[which as usize] = when;
    }

    /// One deadline.
    pub fn get(&self, which: Deadline) -> Option<Instant> {
        self.table[which as usize]
    }

    /// The earliest deadline.
    pub fn next(&self) -> Option<Instant> {
        self.table.iter().flatten().min().copied()
    }

    /// Deadlines that have passed at `now`, earliest first.
    pub fn due(&self, now: Instant) -> impl Iterator<Item = Deadline> + '_ {
        const ALL: [Deadline; 5] = [
            Deadline::Handshake,
            Deadline::Idle,
            Deadline::Heartbeat,
            Deadline::Close,
            Deadline::Stream,
        ];
        ALL.into_iter()
            .filter(move |d| self.get(*d).is_some_and(|when| when <= now))
    }

    /// Arms a heap entry if the earliest deadline is earlier than the armed one.
    pub fn rearm(&mut self, timers: &mut Timers, token: Token) {
        if let Some(next) = self.next() {
            if self.armed.is_none_or(|armed| next < armed) {
                self.armed = Some(next);
                timers.arm(next, Wake::Connection(token));
            }
        }
    }

    /// Called when a heap entry for this connection pops: true when it is the
    /// armed one (not a superseded, stale entry). The caller handles due
    /// deadlines and then calls [`Deadlines::rearm`].
    pub fn fired(&mut self, when: Instant) -> bool {
        if self.armed == Some(when) {
            self.armed = None;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn pops_in_deadline_order() {
        let now = Instant::now();
        let mut timers = Timers::default();
        timers.arm(now + Duration::from_secs(3), Wake::Accept);
        timers.arm(now + Duration::from_secs(1), Wake::User(0, 0));
        assert_eq!(timers.next(), Some(now + Duration::from_secs(1)));
        assert_eq!(timers.pop_due(now), None);
        let (_, wake) = timers.pop_due(now + Duration::from_secs(5)).unwrap();
        assert_eq!(wake, Wake::User(0, 0));
    }

    #[test]
    fn moving_a_deadline_later_arms_nothing_and_earlier_supersedes() {
        let now = Instant::now();
        let mut timers = Timers::default();
        let mut deadlines = Deadlines::default();
        let token = Token(7);
        deadlines.set(Deadline::Idle, Some(now + Duration::from_secs(10)));
        deadlines.rearm(&mut timers, token);
        deadlines.set(Deadline::Idle, Some(now + Duration::from_secs(20)));
        deadlines.rearm(&mut timers, token);
        assert_eq!(timers.len(), 1, "later deadline: no new entry");
        deadlines.set(Deadline::Close, Some(now + Duration::from_secs(1)));
        deadlines.rearm(&mut timers, token);
        assert_eq!(timers.len(), 2);
        let (when, _) = timers.pop_due(now + Duration::from_secs(1)).unwrap();
        assert!(deadlines.fired(when));
        assert!(
            !deadlines.fired(now + Duration::from_secs(10)),
            "superseded entry is stale"
        );
        assert_eq!(
            deadlines
                .due(now + Duration::from_secs(1))
                .collect::<Vec<_>>(),
            [Deadline::Close]
        );
    }
}
