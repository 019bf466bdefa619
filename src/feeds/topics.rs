//! Every topic of a server: names, histories and the one id counter.
//!
//! This is the part of the feeds that several loops share (behind the hub's
//! lock, see [`crate::feeds::hub`]); who follows what is each loop's own
//! business ([`crate::feeds::members`]).

use std::collections::HashMap;

use crate::feeds::topic::{Entry, HistoryLimits, Payload, PublishError, Topic};
use crate::feeds::topic::{DEFAULT_EVENT, RESYNC_EVENT};
use crate::feeds::{is_topic_name, TopicError};
use crate::ids::TopicId;

/// Why a cursor could not be served exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resync {
    /// Events after the cursor were let go of (bounded history).
    FellOutOfHistory,
    /// The cursor is not an id of this run and of the followed topics (an
    /// earlier run, another server, another topic, or not an id at all).
    UnknownId,
}

impl Resync {
    /// The reason, as the notice's data says it.
    pub fn reason(self) -> &'static str {
        match self {
            Resync::FellOutOfHistory => "fell out of history",
            Resync::UnknownId => "unknown id",
        }
    }
}

/// What a cursor gets: maybe a resync notice, then kept events in id order.
#[derive(Debug)]
pub struct Replay {
    /// Set when the cursor could not be served exactly: send `notice` first.
    pub resync: Option<Resync>,
    /// The resync notice, when there is one ([`Topics::resync_entry`]).
    pub notice: Option<Entry>,
    /// Where the events start: the cursor, or (after a resync) the position
    /// the notice carries as its id.
    pub from: u64,
    /// The events after `from`, oldest first, across the followed topics.
    pub entries: Vec<Entry>,
}

struct Slot {
    generation: u32,
    topic: Option<Topic>,
}

/// Every topic, by name and by id, and the id counter.
pub struct Topics {
    limits: HistoryLimits,
    max_topics: usize,
    slots: Vec<Slot>,
    free: Vec<u32>,
    by_name: HashMap<Box<str>, TopicId>,
    /// The first id of this run: a cursor below `first_id - 1` is from before.
    first_id: u64,
    next_id: u64,
}

impl Topics {
    /// No topics yet; the first event will have id `first_id` (at least 1).
    pub fn new(limits: HistoryLimits, max_topics: usize, first_id: u64) -> Topics {
        let first_id = first_id.max(1);
        Topics {
            limits,
            max_topics,
            slots: Vec::new(),
            free: Vec::new(),
            by_name: HashMap::new(),
            first_id,
            next_id: first_id,
        }
    }

    /// The topic of that name, created on first use.
    pub fn topic(&mut self, name: &str) -> Result<TopicId, TopicError> {
        if let Some(&id) = self.by_name.get(name) {
            return Ok(id);
        }
        if !is_topic_name(name) {
            return Err(TopicError::BadName);
        }
        if self.by_name.len() >= self.max_topics {
            return Err(TopicError::TooMany);
        }
        let index = match self.free.pop() {
            Some(index) => index,
            None => {
                let index = u32::try_from(self.slots.len()).map_err(|_| TopicError::TooMany)?;
                self.slots.push(Slot {
                    generation: 0,
                    topic: None,
                });
                index
            }
        };
        let slot = &mut self.slots[index as usize];
        slot.topic = Some(Topic::new(name));
        let id = TopicId {
            index,
            generation: slot.generation,
        };
        self.by_name.insert(name.into(), id);
        Ok(id)
    }

    /// The topics of a comma-separated list (`topics=a,b`): each must exist,
    /// or with `create`, be a name that can be created. An empty element
    /// (`a,,b`, a trailing comma) makes the list malformed (`BadName`); a
    /// name twice counts once.
    pub fn list(&mut self, list: &str, create: bool) -> Result<Vec<TopicId>, TopicError> {
        let mut topics = Vec::new();
        for name in list.split(',') {
            let topic = match self.find(name) {
                Some(topic) => topic,
                None if !is_topic_name(name) => return Err(TopicError::BadName),
                None if create => self.topic(name)?,
                None => return Err(TopicError::Unknown),
            };
            if !topics.contains(&topic) {
                topics.push(topic);
            }
        }
        Ok(topics)
    }

    /// The topic of that name, if it exists (a hash lookup).
    pub fn find(&self, name: &str) -> Option<TopicId> {
        self.by_name.get(name).copied()
    }

    /// A topic's history, if the topic exists.
    pub fn get(&self, id: TopicId) -> Option<&Topic> {
        let slot = self.slots.get(id.index as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        slot.topic.as_ref()
    }

    fn get_mut(&mut self, id: TopicId) -> Option<&mut Topic> {
        let slot = self.slots.get_mut(id.index as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        slot.topic.as_mut()
    }

    /// The id of the newest event of any topic (the one before the first
    /// when nothing was published yet).
    pub fn latest_id(&self) -> u64 {
        self.next_id - 1
    }

    /// The names of every topic, in no particular order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(|name| &**name)
    }

    /// How many topics exist.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// True when no topic exists.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Publishes an event: gives it the next id, encodes it and keeps it in
    /// the topic's history. On error nothing changes (no id is used up).
    pub fn publish(
        &mut self,
        topic: TopicId,
        event: Option<&str>,
        payload: Payload,
    ) -> Result<Entry, PublishError> {
        let id = self.next_id;
        let limits = self.limits;
        let kept = self.get_mut(topic).ok_or(PublishError::UnknownTopic)?;
        let entry = Entry::encode(
            id,
            topic,
            kept.name(),
            event.unwrap_or(DEFAULT_EVENT),
            payload,
            limits.max_event_bytes,
        )?;
        kept.keep(&entry, &limits);
        self.next_id += 1;
        Ok(entry)
    }

    /// Removes a topic. Its name may be used again; its id never is. False
    /// if there is no such topic.
    pub fn remove(&mut self, topic: TopicId) -> bool {
        let Some(slot) = self.slots.get_mut(topic.index as usize) else {
            return false;
        };
        if slot.generation != topic.generation {
            return false;
        }
        let Some(removed) = slot.topic.take() else {
            return false;
        };
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(topic.index);
        self.by_name.remove(removed.name());
        true
    }

    /// What a cursor gets on `topics` (see [`crate::feeds`]).
    pub fn replay(&self, topics: &[TopicId], after: u64) -> Replay {
        let kept: Vec<&Topic> = topics.iter().filter_map(|id| self.get(*id)).collect();
        let evicted = kept
            .iter()
            .map(|topic| topic.evicted_through())
            .max()
            .unwrap_or(0);
        let before_first = self.first_id - 1;
        let resync = if after == 0 {
            None
        } else if after < before_first || after > self.latest_id() {
            Some(Resync::UnknownId)
        } else if evicted > after {
            Some(Resync::FellOutOfHistory)
        } else if after == before_first || kept.iter().any(|topic| topic.knows(after)) {
            None
        } else {
            Some(Resync::UnknownId)
        };
        let from = match resync {
            Some(_) => evicted.max(before_first),
            None => after,
        };
        // Merge the topics' kept events after `from` by id (few topics per
        // connection: a scan for the smallest head is enough).
        let mut heads: Vec<_> = kept
            .iter()
            .map(|topic| topic.after(from).peekable())
            .collect();
        let mut entries = Vec::new();
        loop {
            let next = heads
                .iter_mut()
                .enumerate()
                .filter_map(|(i, head)| head.peek().map(|entry| (entry.id, i)))
                .min();
            let Some((_, i)) = next else {
                break;
            };
            if let Some(entry) = heads[i].next() {
                entries.push(entry.clone());
            }
        }
        Replay {
            resync,
            notice: resync.map(|why| self.resync_entry(why, from)),
            from,
            entries,
        }
    }

    /// The resync notice of a replay: type `resync`, id `from` (a position
    /// that can be served, so the client's cursor is repaired by it), data
    /// `{"reason":…,"latest":…}`, topic `""` (it concerns the whole
    /// subscription).
    pub fn resync_entry(&self, why: Resync, from: u64) -> Entry {
        let data = format!(
            "{{\"reason\":\"{}\",\"latest\":{}}}",
            why.reason(),
            self.latest_id()
        );
        let notice = TopicId {
            index: u32::MAX,
            generation: 0,
        };
        // The name is a constant and the data a small JSON object: the
        // encoding cannot fail, and an empty entry would only be a no-op.
        Entry::encode(
            from,
            notice,
            "",
            RESYNC_EVENT,
            Payload::Json(&data),
            usize::MAX,
        )
        .unwrap_or_else(|_| Entry {
            id: from,
            topic: notice,
            sse: Vec::new().into(),
            ws_frame: Vec::new().into(),
            json: b"{}".to_vec().into(),
            #[cfg(feature = "deflate")]
            ws_deflated: Default::default(),
        })
    }

    /// The JSON array a poll after `after` on `topics` answers with (`[]`
    /// when nothing), and how many events it holds.
    pub fn poll_json(&self, topics: &[TopicId], after: u64) -> (Vec<u8>, u64) {
        let replay = self.replay(topics, after);
        let mut body = Vec::from(&b"["[..]);
        if let Some(notice) = &replay.notice {
            body.extend_from_slice(&notice.json);
        }
        for entry in &replay.entries {
            if body.len() > 1 {
                body.push(b',');
            }
            body.extend_from_slice(&entry.json);
        }
        body.push(b']');
        (body, replay.entries.len() as u64)
    }

    /// Whether a poll after `after` on `topics` has anything to say now (an
    /// event, or a resync): a long-poll is answered at once if so.
    pub fn has_news(&self, topics: &[TopicId], after: u64) -> bool {
        let replay = self.replay(topics, after);
        replay.resync.is_some() || !replay.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: u64 = 1_000;

    fn topics() -> Topics {
        Topics::new(
            HistoryLimits {
                max_events: 3,
                ..HistoryLimits::default()
            },
            16,
            SEED,
        )
    }

    fn publish(topics: &mut Topics, topic: TopicId, data: &str) -> u64 {
        topics.publish(topic, None, Payload::Text(data)).unwrap().id
    }

    fn ids(replay: &Replay) -> Vec<u64> {
        replay.entries.iter().map(|entry| entry.id).collect()
    }

    #[test]
    fn topic_lists_are_checked_element_by_element() {
        let mut topics = topics();
        let a = topics.topic("a").unwrap();
        assert_eq!(topics.list("a", false), Ok(vec![a]));
        assert_eq!(topics.list("a,b", false), Err(TopicError::Unknown));
        assert_eq!(topics.list("a,,b", true), Err(TopicError::BadName));
        assert_eq!(topics.list("a,", true), Err(TopicError::BadName));
        let both = topics.list("a,b,a", true).unwrap();
        assert_eq!(both.len(), 2, "b created, a counted once");
        assert_eq!(topics.find("b"), Some(both[1]));
    }

    #[test]
    fn one_id_space_across_topics() {
        let mut topics = topics();
        let (a, b) = (topics.topic("a").unwrap(), topics.topic("b").unwrap());
        assert_eq!(topics.topic("a"), Ok(a), "created once");
        assert_eq!(publish(&mut topics, a, "1"), SEED);
        assert_eq!(publish(&mut topics, b, "2"), SEED + 1);
        assert_eq!(publish(&mut topics, a, "3"), SEED + 2);
        assert_eq!(topics.latest_id(), SEED + 2);
    }

    #[test]
    fn topic_names_are_checked_and_bounded_in_number() {
        let mut topics = Topics::new(HistoryLimits::default(), 2, SEED);
        for bad in ["", "a,b", "a b", "é", &"x".repeat(65), "a/b"] {
            assert_eq!(topics.topic(bad), Err(TopicError::BadName), "{bad:?}");
        }
        assert!(topics.topic("user:42").is_ok());
        assert!(topics.topic("sensors.temp-1").is_ok());
        assert_eq!(topics.topic("third"), Err(TopicError::TooMany));
    }

    #[test]
    fn a_multi_topic_cursor_resumes_with_no_loss_and_no_duplicate() {
        let mut topics = topics();
        let (a, b) = (topics.topic("a").unwrap(), topics.topic("b").unwrap());
        let a1 = publish(&mut topics, a, "a1");
        let b1 = publish(&mut topics, b, "b1");
        let a2 = publish(&mut topics, a, "a2");
        let b2 = publish(&mut topics, b, "b2");
        let replay = topics.replay(&[a, b], b1);
        assert_eq!(replay.resync, None);
        assert_eq!(ids(&replay), [a2, b2], "merged in id order");
        assert_eq!(ids(&topics.replay(&[b, a], 0)), [a1, b1, a2, b2]);
    }

    #[test]
    fn a_cursor_from_another_topic_or_server_resyncs() {
        let mut topics = topics();
        let (a, b) = (topics.topic("a").unwrap(), topics.topic("b").unwrap());
        let a1 = publish(&mut topics, a, "a1");
        let b1 = publish(&mut topics, b, "b1");
        assert_eq!(topics.replay(&[b], a1).resync, Some(Resync::UnknownId));
        assert_eq!(topics.replay(&[a], a1).resync, None);
        // Another run's or server's ids: below this run, or from the future.
        assert_eq!(topics.replay(&[b], 5).resync, Some(Resync::UnknownId));
        assert_eq!(
            topics.replay(&[b], b1 + 100).resync,
            Some(Resync::UnknownId)
        );
        // The position before this run's first event is always exact.
        let before = topics.replay(&[b], SEED - 1);
        assert_eq!((before.resync, ids(&before)), (None, vec![b1]));
    }

    #[test]
    fn a_cursor_that_fell_out_of_history_resyncs_to_a_position_that_can_be_served() {
        let mut topics = topics();
        let a = topics.topic("a").unwrap();
        let first = publish(&mut topics, a, "0");
        for i in 1..5 {
            publish(&mut topics, a, &i.to_string());
        }
        let replay = topics.replay(&[a], first);
        assert_eq!(replay.resync, Some(Resync::FellOutOfHistory));
        assert_eq!(replay.from, SEED + 1, "the newest id let go of");
        assert_eq!(ids(&replay), [SEED + 2, SEED + 3, SEED + 4]);
        // The notice's id is a cursor that resumes exactly.
        assert_eq!(topics.replay(&[a], replay.from).resync, None);
        let notice = replay.notice.expect("a notice with the resync");
        assert!(String::from_utf8_lossy(&notice.sse)
            .starts_with("id: 1001\nevent: resync\ndata: {\"reason\":\"fell out of history\""));
    }

    #[test]
    fn a_removed_topic_is_gone_and_its_id_is_never_reused() {
        let mut topics = topics();
        let a = topics.topic("a").unwrap();
        assert!(topics.remove(a));
        assert!(!topics.remove(a));
        assert!(topics.get(a).is_none());
        assert_eq!(
            topics
                .publish(a, None, Payload::Text("x"))
                .map(|entry| entry.id),
            Err(PublishError::UnknownTopic)
        );
        let again = topics.topic("a").unwrap();
        assert_ne!(again, a, "a new generation");
    }

    #[test]
    fn polls_answer_a_json_array_with_the_notice_first() {
        let mut topics = topics();
        let a = topics.topic("a").unwrap();
        assert_eq!(topics.poll_json(&[a], 0), (b"[]".to_vec(), 0));
        publish(&mut topics, a, "x");
        let (body, events) = topics.poll_json(&[a], 3);
        let body = String::from_utf8(body).unwrap();
        assert!(
            body.starts_with(r#"[{"id":999,"topic":"","event":"resync","#),
            "{body}"
        );
        assert!(body.ends_with(r#"{"id":1000,"topic":"a","event":"message","data":"x"}]"#));
        assert_eq!(events, 1);
        assert!(topics.has_news(&[a], 0));
        assert!(!topics.has_news(&[a], SEED));
    }
}
