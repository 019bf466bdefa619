//! Feeds: topics (rooms), one id space, who follows what, and replay.
//!
//! A topic is a named, bounded history of events ([`topic::Topic`]). Every
//! event of every topic gets its id from one counter, so ids increase across
//! the whole server and one cursor (`?after=` or `Last-Event-ID`) describes a
//! position in all of them: a connection following several topics resumes
//! with one number, with no loss and no duplicate. Ids start from the wall
//! clock at start-up (microseconds since the Unix epoch), so a cursor from
//! an earlier run is below this run's ids and is recognised; ids stay below
//! 2^53, so JavaScript reads them exactly.
//!
//! A connection of any transport *follows* any number of topics (event
//! streams and WebSockets get each new event) or *waits* on them (a held
//! long-poll, answered by the next event): see [`members`].
//!
//! # Cursors and `resync`
//!
//! A cursor is served exactly when it is `0` (everything kept), the position
//! just before this run's first event, or the id of an event of one of the
//! followed topics that they can still vouch for — and no followed topic has
//! let go of an event after it. Anything else — a cursor from an earlier run
//! or another server, from a topic not followed, or one that fell out of
//! history — gets a `resync` event first: its id is a position that *can*
//! be served (the newest id let go of, or the one before this run's first),
//! and every kept event after that position follows. Never a silent gap.
//!
//! # One loop or several
//!
//! [`Feeds`] is one loop's view: the [`topics`] (names, histories, the id
//! counter) and the loop's own [`members`]. With one loop it owns the topics
//! outright; with several, they live in a [`hub::Hub`] the loops share, and
//! each loop learns of the others' events through its inbox. Either way a
//! publish or a removal comes back to the loop as an [`Arrival`], in id
//! order, which the loop fans out ([`Feeds::next_arrival`]).
//!
//! This layer owns no socket and reads no clock: the server fans the bytes out.

pub mod hub;
pub mod members;
pub mod topic;
pub mod topics;

use std::collections::VecDeque;
use std::sync::Arc;

use mio::Token;

use crate::ids::{ConnId, TopicId};
pub use hub::{Arrival, Hub, InboxLimits};
use members::Members;
pub use topic::{
    Direct, Entry, HistoryLimits, Payload, PublishError, Topic, DEFAULT_EVENT, RESYNC_EVENT,
};
pub use topics::{Replay, Resync, Topics};

/// The longest topic name, in bytes: names travel in URLs and in every JSON
/// copy of every event.
pub const MAX_TOPIC_NAME_BYTES: usize = 64;

/// Is `name` a topic name: 1 to 64 bytes of `A-Z a-z 0-9 - _ . : ~ @`? These
/// need no percent-encoding in a URL (RFC 3986 §2.3 unreserved, plus `:`
/// and `@`, which are allowed in a query, §3.4) and no escaping in JSON, and a
/// comma can never be part of one, so `topics=a,b` is unambiguous.
pub fn is_topic_name(name: &str) -> bool {
    (1..=MAX_TOPIC_NAME_BYTES).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:~@".contains(&b))
}

/// Why a topic could not be created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TopicError {
    /// The name breaks [`is_topic_name`].
    BadName,
    /// `max_topics` topics exist already.
    TooMany,
    /// No topic has this name.
    Unknown,
}

impl std::fmt::Display for TopicError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TopicError::BadName => "a topic name is 1-64 of A-Z a-z 0-9 - _ . : ~ @",
            TopicError::TooMany => "too many topics",
            TopicError::Unknown => "no such topic",
        })
    }
}

impl std::error::Error for TopicError {}

/// Where the topics are: the loop's own, or shared with other loops.
enum Place {
    Alone(Topics),
    Shared { hub: Arc<Hub>, me: usize },
}

/// One loop's view of the feeds: the topics and its own members (see the
/// module doc).
pub struct Feeds {
    place: Place,
    members: Members,
    /// Publishes and removals to fan out, oldest first.
    pending: VecDeque<Arrival>,
    /// The id after which this loop missed events (its inbox was full).
    missed_after: Option<u64>,
    /// Loops to wake at the end of this turn (see [`Feeds::wake_others`]).
    to_wake: Vec<usize>,
}

impl Feeds {
    /// A loop's own feeds; the first event will have id `first_id` (at least 1).
    pub fn new(limits: HistoryLimits, max_topics: usize, first_id: u64) -> Feeds {
        Feeds::from_place(Place::Alone(Topics::new(limits, max_topics, first_id)))
    }

    fn from_place(place: Place) -> Feeds {
        Feeds {
            place,
            members: Members::default(),
            pending: VecDeque::new(),
            missed_after: None,
            to_wake: Vec::new(),
        }
    }

    /// Shares these feeds' topics with `wakers.len() - 1` more loops: this
    /// one stays loop 0 (keeping its members) and the others' views are
    /// returned, in loop order. Feeds already shared are left as they are.
    pub fn share(&mut self, wakers: Vec<Arc<mio::Waker>>, limits: InboxLimits) -> Vec<Feeds> {
        let empty = Topics::new(HistoryLimits::default(), 0, 1);
        let topics = match std::mem::replace(&mut self.place, Place::Alone(empty)) {
            Place::Alone(topics) => topics,
            shared @ Place::Shared { .. } => {
                self.place = shared;
                return Vec::new();
            }
        };
        let hub = Arc::new(Hub::new(topics, wakers, limits));
        self.place = Place::Shared {
            hub: Arc::clone(&hub),
            me: 0,
        };
        (1..hub.loops())
            .map(|me| {
                Feeds::from_place(Place::Shared {
                    hub: Arc::clone(&hub),
                    me,
                })
            })
            .collect()
    }

    fn read<R>(&self, read: impl FnOnce(&Topics) -> R) -> R {
        match &self.place {
            Place::Alone(topics) => read(topics),
            Place::Shared { hub, .. } => hub.read(read),
        }
    }

    fn write<R>(&mut self, write: impl FnOnce(&mut Topics) -> R) -> R {
        match &mut self.place {
            Place::Alone(topics) => write(topics),
            Place::Shared { hub, .. } => hub.write(write),
        }
    }

    // ---- Topics ------------------------------------------------------------------

    /// The topic of that name, created on first use.
    pub fn topic(&mut self, name: &str) -> Result<TopicId, TopicError> {
        self.write(|topics| topics.topic(name))
    }

    /// The topics of a comma-separated list (see [`Topics::list`]).
    pub fn list(&mut self, list: &str, create: bool) -> Result<Vec<TopicId>, TopicError> {
        self.write(|topics| topics.list(list, create))
    }

    /// The topic of that name, if it exists.
    pub fn find(&self, name: &str) -> Option<TopicId> {
        self.read(|topics| topics.find(name))
    }

    /// Whether the topic exists.
    pub fn exists(&self, topic: TopicId) -> bool {
        self.read(|topics| topics.get(topic).is_some())
    }

    /// A topic's name, if it exists.
    pub fn name(&self, topic: TopicId) -> Option<String> {
        self.read(|topics| topics.get(topic).map(|topic| topic.name().to_owned()))
    }

    /// The names of every topic, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names = self.read(|topics| topics.names().map(str::to_owned).collect::<Vec<_>>());
        names.sort_unstable();
        names
    }

    /// The id of the newest event of any topic.
    pub fn latest_id(&self) -> u64 {
        self.read(Topics::latest_id)
    }

    /// Publishes an event (see [`Topics::publish`]); it comes back from
    /// [`Feeds::next_arrival`] to be fanned out, after any arrival before
    /// it. On error nothing changes.
    pub fn publish(
        &mut self,
        topic: TopicId,
        event: Option<&str>,
        payload: Payload,
        except: Option<ConnId>,
    ) -> Result<u64, PublishError> {
        match &mut self.place {
            Place::Alone(topics) => {
                let entry = topics.publish(topic, event, payload)?;
                let id = entry.id;
                self.pending.push_back(Arrival::Event { entry, except });
                Ok(id)
            }
            Place::Shared { hub, me } => {
                let (id, missed) = hub.publish(
                    *me,
                    topic,
                    event,
                    payload,
                    except,
                    &mut self.pending,
                    &mut self.to_wake,
                )?;
                self.note_missed(missed);
                Ok(id)
            }
        }
    }

    /// Removes a topic; the removal comes back from
    /// [`Feeds::next_arrival`]. False if there is no such topic.
    pub fn remove(&mut self, topic: TopicId) -> bool {
        match &mut self.place {
            Place::Alone(topics) => {
                let removed = topics.remove(topic);
                if removed {
                    self.pending.push_back(Arrival::Removed(topic));
                }
                removed
            }
            Place::Shared { hub, me } => {
                let (removed, missed) =
                    hub.remove(*me, topic, &mut self.pending, &mut self.to_wake);
                self.note_missed(missed);
                removed
            }
        }
    }

    fn note_missed(&mut self, missed: Option<u64>) {
        if let Some(after) = missed {
            let earliest = self.missed_after.map_or(after, |known| known.min(after));
            self.missed_after = Some(earliest);
        }
    }

    /// Takes what other loops queued for this one (nothing to do alone).
    pub fn collect_arrivals(&mut self) {
        if let Place::Shared { hub, me } = &self.place {
            let ((), missed) = hub.drain(*me, &mut self.pending, |_| ());
            self.note_missed(missed);
        }
    }

    /// Wakes the loops this one queued events for during its turn (called
    /// at the end of the turn: a loop woken at once by each publish would
    /// write each event to its followers alone instead of together).
    pub fn wake_others(&mut self) {
        if let Place::Shared { hub, .. } = &self.place {
            if !self.to_wake.is_empty() {
                hub.wake(&self.to_wake);
                self.to_wake.clear();
            }
        }
    }

    /// The next publish or removal to fan out, in id order.
    pub fn next_arrival(&mut self) -> Option<Arrival> {
        self.pending.pop_front()
    }

    /// The id after which this loop missed events, once: its followers must
    /// catch up from history after it (see [`hub`]).
    pub fn take_missed(&mut self) -> Option<u64> {
        self.missed_after.take()
    }

    // ---- Replay ------------------------------------------------------------------

    /// What a cursor gets on `topics` (see the module doc). With several
    /// loops this also takes what other loops queued for this one: deliver
    /// those arrivals ([`Feeds::next_arrival`]) before acting on the replay,
    /// and no event is both replayed and delivered live to a new follower.
    pub fn replay(&mut self, topics: &[TopicId], after: u64) -> Replay {
        match &self.place {
            Place::Alone(kept) => kept.replay(topics, after),
            Place::Shared { hub, me } => {
                let (replay, missed) =
                    hub.drain(*me, &mut self.pending, |kept| kept.replay(topics, after));
                self.note_missed(missed);
                replay
            }
        }
    }

    /// The JSON array a poll after `after` on `topics` answers with, and
    /// how many events it holds (see [`Topics::poll_json`]).
    pub fn poll_json(&self, topics: &[TopicId], after: u64) -> (Vec<u8>, u64) {
        self.read(|kept| kept.poll_json(topics, after))
    }

    /// Whether a poll after `after` on `topics` has anything to say now.
    pub fn has_news(&self, topics: &[TopicId], after: u64) -> bool {
        self.read(|kept| kept.has_news(topics, after))
    }

    // ---- This loop's members -----------------------------------------------------

    /// `conn` follows `topic` from now on (again is a no-op). False if the
    /// topic does not exist.
    pub fn follow(&mut self, conn: Token, topic: TopicId) -> bool {
        if !self.exists(topic) {
            return false;
        }
        self.members.follow(conn, topic);
        true
    }

    /// `conn` no longer follows `topic`. False if it did not.
    pub fn unfollow(&mut self, conn: Token, topic: TopicId) -> bool {
        self.members.unfollow(conn, topic)
    }

    /// The topics `conn` follows, in the order it followed them.
    pub fn followed(&self, conn: Token) -> Vec<TopicId> {
        self.members.followed(conn)
    }

    /// Appends the followers of `topic` on this loop to `out`, in
    /// subscription order.
    pub fn followers(&self, topic: TopicId, out: &mut Vec<Token>) {
        self.members.followers(topic, out);
    }

    /// Every connection of this loop that follows anything.
    pub fn all_followers(&self) -> Vec<Token> {
        self.members.all_followers()
    }

    /// Every connection of this loop that waits on anything.
    pub fn all_waiters(&self) -> Vec<Token> {
        self.members.all_waiters()
    }

    /// `conn` waits for the next event of any of `topics` (a held long-poll).
    pub fn wait(&mut self, conn: Token, topics: &[TopicId]) {
        self.members.wait(conn, topics);
    }

    /// Every connection waiting on `topic`; none of them waits any more.
    pub fn take_waiters(&mut self, topic: TopicId) -> Vec<Token> {
        self.members.take_waiters(topic)
    }

    /// `conn` stops waiting (answered by a timeout, or gone).
    pub fn stop_waiting(&mut self, conn: Token) {
        self.members.stop_waiting(conn);
    }

    /// `conn` is gone: it follows and waits on nothing.
    pub fn forget(&mut self, conn: Token) {
        self.members.forget(conn);
    }

    /// A removed topic's members on this loop let go of it.
    pub fn drop_topic(&mut self, topic: TopicId) {
        self.members.drop_topic(topic);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(feeds: &mut Feeds) -> Vec<u64> {
        std::iter::from_fn(|| feeds.next_arrival())
            .filter_map(|arrival| match arrival {
                Arrival::Event { entry, .. } => Some(entry.id),
                Arrival::Removed(_) => None,
            })
            .collect()
    }

    #[test]
    fn alone_a_publish_comes_back_as_an_arrival() {
        let mut feeds = Feeds::new(HistoryLimits::default(), 4, 10);
        let room = feeds.topic("room").unwrap();
        assert_eq!(feeds.publish(room, None, Payload::Text("x"), None), Ok(10));
        assert_eq!(ids(&mut feeds), [10]);
        assert!(feeds.remove(room));
        assert!(matches!(feeds.next_arrival(), Some(Arrival::Removed(t)) if t == room));
        assert!(!feeds.follow(Token(1), room), "no such topic any more");
    }

    #[test]
    fn shared_a_replay_takes_the_inbox_under_the_same_lock() {
        let polls: Vec<mio::Poll> = (0..2).map(|_| mio::Poll::new().unwrap()).collect();
        let wakers = polls
            .iter()
            .map(|poll| Arc::new(mio::Waker::new(poll.registry(), Token(0)).unwrap()))
            .collect();
        let mut first = Feeds::new(HistoryLimits::default(), 4, 10);
        let room = first.topic("room").unwrap();
        let limits = crate::limits::Limits::default().inbox();
        let mut second = first.share(wakers, limits).remove(0);
        first.publish(room, None, Payload::Text("a"), None).unwrap();
        first.publish(room, None, Payload::Text("b"), None).unwrap();
        assert_eq!(second.find("room"), Some(room), "one set of topics");
        let replay = second.replay(&[room], 10);
        assert_eq!(replay.entries.len(), 1, "11 is in history");
        assert_eq!(
            ids(&mut second),
            [10, 11],
            "and pending: deliver these first, then the replay"
        );
        assert_eq!(ids(&mut first), [10, 11]);
    }
}
