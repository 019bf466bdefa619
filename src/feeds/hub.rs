//! The topics several loops share, and each loop's inbox of events.
//!
//! With one loop the topics are the loop's own ([`crate::feeds::Feeds`] holds
//! them directly: no lock, no atomic). With several, they move into a [`Hub`]
//! behind one mutex: a publish on any loop (or from a `Handle`, through its
//! loop) takes the lock, gets the next id, is encoded once and kept in
//! history, and is queued — as the same `Arc` bytes — in every loop's
//! inbox, all before the lock is let go. So ids, history and the order of
//! the inboxes agree everywhere: every loop sees the events in id order.
//!
//! A loop drains its inbox when its `mio::Waker` fires, and before
//! anything that reads history for a follower, under the same lock (see
//! [`crate::feeds::Feeds::replay`]), so that no event is both replayed and
//! delivered live. A loop is woken only when its inbox goes from empty to
//! not, and only at the end of the publishing loop's turn
//! ([`Hub::wake`]): sixteen publishes read in one turn cost each other loop
//! one wake-up, and the events it then finds together share its writes.
//!
//! **A full inbox.** An inbox is bounded ([`InboxLimits`]). When a loop has
//! fallen that far behind, further events are not queued for it; it is told
//! the id after which it missed them, and when it drains it moves every one
//! of its followers to catch-up from history (the slow-reader path: replay
//! from the cursor as their queues allow, a `resync` if history let go of
//! some) and answers its long-polls that have news. Memory stays bounded and
//! nothing is silently lost; a loop that keeps up pays nothing for it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use mio::Waker;

use crate::feeds::topic::{Entry, Payload, PublishError};
use crate::feeds::topics::Topics;
use crate::ids::{ConnId, TopicId};

/// How far a loop may fall behind the others before it catches up from
/// history instead (see the module doc; the defaults and their reasons are
/// `Limits::max_inbox_events` and `Limits::max_inbox_bytes`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InboxLimits {
    /// Events queued for a loop.
    pub max_events: usize,
    /// Bytes of the events queued for a loop, counting every encoding. One
    /// event is always queued into an empty inbox, however big.
    pub max_bytes: usize,
}

/// What a loop learns from the feed.
#[derive(Clone, Debug)]
pub enum Arrival {
    /// An event to fan out to this loop's followers and waiters (but not to
    /// `except`, wherever it is).
    Event {
        /// The event, encoded once for every transport.
        entry: Entry,
        /// The connection that must not get it (usually its sender).
        except: Option<ConnId>,
    },
    /// A topic was removed: this loop's members of it let go.
    Removed(TopicId),
}

impl Arrival {
    fn size(&self) -> usize {
        match self {
            Arrival::Event { entry, .. } => entry.size(),
            Arrival::Removed(_) => 0,
        }
    }
}

#[derive(Default)]
struct Inbox {
    arrivals: VecDeque<Arrival>,
    bytes: usize,
    /// Set when an event did not fit: the loop missed every event after this
    /// id (and nothing is queued for it until it has drained).
    missed_after: Option<u64>,
}

impl Inbox {
    /// Nothing queued and nothing missed: the loop has no reason to wake.
    fn is_quiet(&self) -> bool {
        self.arrivals.is_empty() && self.missed_after.is_none()
    }

    fn offer(&mut self, arrival: Arrival, limits: &InboxLimits) {
        if let Arrival::Event { entry, .. } = &arrival {
            let fits = self.arrivals.is_empty()
                || (self.arrivals.len() < limits.max_events
                    && self.bytes + entry.size() <= limits.max_bytes);
            if self.missed_after.is_some() || !fits {
                self.missed_after.get_or_insert(entry.id - 1);
                return;
            }
        }
        // A removal is always queued: there are at most `max_topics` of them.
        self.bytes += arrival.size();
        self.arrivals.push_back(arrival);
    }
}

struct State {
    topics: Topics,
    inboxes: Vec<Inbox>,
}

/// The topics of a server run by several loops, and their inboxes.
pub struct Hub {
    state: Mutex<State>,
    wakers: Vec<Arc<Waker>>,
    limits: InboxLimits,
}

impl Hub {
    /// Shares `topics` between the loops woken by `wakers` (one each, in
    /// loop order).
    pub fn new(topics: Topics, wakers: Vec<Arc<Waker>>, limits: InboxLimits) -> Hub {
        Hub {
            state: Mutex::new(State {
                topics,
                inboxes: wakers.iter().map(|_| Inbox::default()).collect(),
            }),
            wakers,
            limits,
        }
    }

    /// How many loops share it.
    pub fn loops(&self) -> usize {
        self.wakers.len()
    }

    /// The lock. No user code ever runs under it, so a panic cannot leave
    /// the topics half-changed: a poisoned lock is taken as it is.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads the topics under the lock.
    pub fn read<R>(&self, read: impl FnOnce(&Topics) -> R) -> R {
        read(&self.lock().topics)
    }

    /// Changes the topics under the lock (creating one, say).
    pub fn write<R>(&self, write: impl FnOnce(&mut Topics) -> R) -> R {
        write(&mut self.lock().topics)
    }

    /// Moves what is queued for loop `me` onto `pending` and reads the
    /// topics, under one lock: whatever `read` sees that `pending` does not
    /// hold was delivered earlier. Returns what `read` returned, and the id
    /// after which `me` missed events, if it did.
    pub fn drain<R>(
        &self,
        me: usize,
        pending: &mut VecDeque<Arrival>,
        read: impl FnOnce(&Topics) -> R,
    ) -> (R, Option<u64>) {
        let mut state = self.lock();
        let inbox = &mut state.inboxes[me];
        pending.append(&mut inbox.arrivals);
        inbox.bytes = 0;
        let missed = inbox.missed_after.take();
        (read(&state.topics), missed)
    }

    /// Publishes on behalf of loop `me`: the event gets its id and is kept
    /// in history; every other loop gets it in its inbox (those to wake are
    /// added to `to_wake`); `me`'s inbox is drained onto `pending`, followed
    /// by the event (so `me` delivers in id order too). Returns the event's
    /// id, and the id after which `me` missed events, if it did.
    #[allow(clippy::too_many_arguments)]
    pub fn publish(
        &self,
        me: usize,
        topic: TopicId,
        event: Option<&str>,
        payload: Payload,
        except: Option<ConnId>,
        pending: &mut VecDeque<Arrival>,
        to_wake: &mut Vec<usize>,
    ) -> Result<(u64, Option<u64>), PublishError> {
        let mut state = self.lock();
        let entry = state.topics.publish(topic, event, payload)?;
        let id = entry.id;
        let arrival = Arrival::Event { entry, except };
        let missed = self.spread(&mut state, me, pending, to_wake, &arrival);
        pending.push_back(arrival);
        Ok((id, missed))
    }

    /// Removes a topic on behalf of loop `me` (as [`Hub::publish`] does with
    /// an event): every loop's members of it let go. False if there is no
    /// such topic.
    pub fn remove(
        &self,
        me: usize,
        topic: TopicId,
        pending: &mut VecDeque<Arrival>,
        to_wake: &mut Vec<usize>,
    ) -> (bool, Option<u64>) {
        let mut state = self.lock();
        if !state.topics.remove(topic) {
            return (false, None);
        }
        let arrival = Arrival::Removed(topic);
        let missed = self.spread(&mut state, me, pending, to_wake, &arrival);
        pending.push_back(arrival);
        (true, missed)
    }

    /// Offers an arrival to every loop but `me` (noting the loops to wake)
    /// and drains `me`'s inbox onto `pending`.
    fn spread(
        &self,
        state: &mut State,
        me: usize,
        pending: &mut VecDeque<Arrival>,
        to_wake: &mut Vec<usize>,
        arrival: &Arrival,
    ) -> Option<u64> {
        for (index, inbox) in state.inboxes.iter_mut().enumerate() {
            if index == me {
                continue;
            }
            if inbox.is_quiet() && !to_wake.contains(&index) {
                to_wake.push(index);
            }
            inbox.offer(arrival.clone(), &self.limits);
        }
        let inbox = &mut state.inboxes[me];
        pending.append(&mut inbox.arrivals);
        inbox.bytes = 0;
        inbox.missed_after.take()
    }

    /// Wakes loops, outside the lock (a wake-up is a system call). A loop
    /// that has ended cannot be woken, and needs nothing.
    pub fn wake(&self, loops: &[usize]) {
        for &index in loops {
            let _ = self.wakers[index].wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feeds::topic::HistoryLimits;

    const ROOMY: InboxLimits = InboxLimits {
        max_events: 1024,
        max_bytes: 1 << 20,
    };

    /// A hub of `loops` loops (a poll each: mio allows one waker per poll).
    fn hub(loops: usize, limits: InboxLimits) -> (Hub, TopicId, Vec<mio::Poll>) {
        let polls: Vec<mio::Poll> = (0..loops)
            .map(|_| mio::Poll::new().expect("a poll"))
            .collect();
        let wakers = polls
            .iter()
            .map(|poll| Arc::new(Waker::new(poll.registry(), mio::Token(0)).expect("a waker")))
            .collect();
        let mut topics = Topics::new(HistoryLimits::default(), 8, 100);
        let room = topics.topic("room").expect("a topic");
        (Hub::new(topics, wakers, limits), room, polls)
    }

    fn ids(pending: &VecDeque<Arrival>) -> Vec<u64> {
        pending
            .iter()
            .filter_map(|arrival| match arrival {
                Arrival::Event { entry, .. } => Some(entry.id),
                Arrival::Removed(_) => None,
            })
            .collect()
    }

    #[test]
    fn every_loop_sees_every_event_in_id_order() {
        let (hub, room, _poll) = hub(3, ROOMY);
        let mut pending: Vec<VecDeque<Arrival>> = (0..3).map(|_| VecDeque::new()).collect();
        for (publisher, data) in [(0, "a"), (1, "b"), (2, "c"), (1, "d")] {
            let (id, missed) = hub
                .publish(
                    publisher,
                    room,
                    None,
                    Payload::Text(data),
                    None,
                    &mut pending[publisher],
                    &mut Vec::new(),
                )
                .expect("published");
            assert!(id >= 100 && missed.is_none());
        }
        for (me, queue) in pending.iter_mut().enumerate() {
            let ((), missed) = hub.drain(me, queue, |_| ());
            assert_eq!(missed, None);
            assert_eq!(ids(queue), [100, 101, 102, 103], "loop {me}");
        }
    }

    #[test]
    fn the_same_bytes_reach_every_loop() {
        let (hub, room, _poll) = hub(2, ROOMY);
        let (mut mine, mut theirs) = (VecDeque::new(), VecDeque::new());
        hub.publish(
            0,
            room,
            None,
            Payload::Text("x"),
            None,
            &mut mine,
            &mut Vec::new(),
        )
        .expect("published");
        hub.drain(1, &mut theirs, |_| ());
        let (Some(Arrival::Event { entry: a, .. }), Some(Arrival::Event { entry: b, .. })) =
            (mine.front(), theirs.front())
        else {
            panic!("an event on each loop");
        };
        assert!(Arc::ptr_eq(&a.sse, &b.sse), "encoded once, shared");
    }

    #[test]
    fn a_full_inbox_keeps_its_bound_and_says_after_which_id_it_missed() {
        let limits = InboxLimits {
            max_events: 2,
            max_bytes: 1 << 20,
        };
        let (hub, room, _poll) = hub(2, limits);
        let mut mine = VecDeque::new();
        for i in 0..5 {
            hub.publish(
                0,
                room,
                None,
                Payload::Text(&i.to_string()),
                None,
                &mut mine,
                &mut Vec::new(),
            )
            .expect("published");
        }
        let mut theirs = VecDeque::new();
        let ((), missed) = hub.drain(1, &mut theirs, |_| ());
        assert_eq!(ids(&theirs), [100, 101]);
        assert_eq!(missed, Some(101), "missed everything after 101");
        // Drained: it queues again, and the miss is reported once.
        hub.publish(
            0,
            room,
            None,
            Payload::Text("5"),
            None,
            &mut mine,
            &mut Vec::new(),
        )
        .expect("published");
        theirs.clear();
        assert_eq!(hub.drain(1, &mut theirs, |_| ()).1, None);
        assert_eq!(ids(&theirs), [105]);
    }

    #[test]
    fn one_event_larger_than_the_byte_bound_still_fits_an_empty_inbox() {
        let limits = InboxLimits {
            max_events: 10,
            max_bytes: 16,
        };
        let (hub, room, _poll) = hub(2, limits);
        let mut mine = VecDeque::new();
        hub.publish(
            0,
            room,
            None,
            Payload::Text(&"x".repeat(100)),
            None,
            &mut mine,
            &mut Vec::new(),
        )
        .expect("published");
        hub.publish(
            0,
            room,
            None,
            Payload::Text("y"),
            None,
            &mut mine,
            &mut Vec::new(),
        )
        .expect("published");
        let mut theirs = VecDeque::new();
        assert_eq!(hub.drain(1, &mut theirs, |_| ()).1, Some(100));
        assert_eq!(ids(&theirs), [100]);
    }

    #[test]
    fn a_removal_reaches_every_loop_after_the_events_before_it() {
        let (hub, room, _poll) = hub(2, ROOMY);
        let mut mine = VecDeque::new();
        hub.publish(
            0,
            room,
            None,
            Payload::Text("last"),
            None,
            &mut mine,
            &mut Vec::new(),
        )
        .expect("published");
        assert_eq!(
            hub.remove(0, room, &mut mine, &mut Vec::new()),
            (true, None)
        );
        assert_eq!(
            hub.remove(0, room, &mut mine, &mut Vec::new()),
            (false, None)
        );
        let mut theirs = VecDeque::new();
        hub.drain(1, &mut theirs, |_| ());
        assert!(matches!(theirs.pop_front(), Some(Arrival::Event { .. })));
        assert!(matches!(theirs.pop_front(), Some(Arrival::Removed(t)) if t == room));
    }
}
