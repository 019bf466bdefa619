//! Topics: a named feed with a bounded history ring.
//!
//! One publish is encoded once per transport — an SSE event, a WebSocket text
//! frame, a JSON object for polling — and those bytes are shared (`Rc<[u8]>`) by
//! every recipient and by the history. The history serves `Last-Event-ID`
//! replay for event streams and `?after=ID` for polls and reconnecting sockets.
//!
//! Ids are `u64`, increasing by one per event, and start from a seed the server
//! takes from the wall clock at start (microseconds since the Unix epoch). A
//! cursor from an earlier run of the server is therefore below this run's ids
//! and is recognised, as is one that fell out of history: both get a `resync`
//! event instead of silent loss or repetition. Ids stay below 2^53, so
//! JavaScript reads them exactly.
//!
//! This layer owns no sockets and reads no clock: the server fans the bytes out.

use std::collections::VecDeque;
use std::rc::Rc;

use crate::json;
use crate::sse::{self, SseError};
use crate::ws::frame::{self, OpCode};

/// The event type of an event published without a name (WHATWG HTML §9.2.6:
/// the type a browser dispatches when no `event:` field is given).
pub const DEFAULT_EVENT: &str = "message";
/// The event type that tells a client its cursor is no longer in history.
pub const RESYNC_EVENT: &str = "resync";

/// How much history a topic keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistoryLimits {
    /// Events kept. Default 1024.
    pub max_events: usize,
    /// Encoded bytes kept (all three encodings of each event). Default 1 MiB.
    /// The newest event is always kept, whatever its size.
    pub max_bytes: usize,
}

impl Default for HistoryLimits {
    fn default() -> Self {
        HistoryLimits {
            max_events: 1024,
            max_bytes: 1 << 20,
        }
    }
}

/// One published event, encoded once for each transport.
#[derive(Clone, Debug)]
pub struct Entry {
    /// The event id.
    pub id: u64,
    /// `id:`, `event:` and `data:` lines of a `text/event-stream`.
    pub sse: Rc<[u8]>,
    /// A WebSocket text frame holding [`Entry::json`].
    pub ws_frame: Rc<[u8]>,
    /// `{"id":N,"event":"NAME","data":"..."}`.
    pub json: Rc<[u8]>,
}

impl Entry {
    fn encode(id: u64, event: &str, data: &str) -> Result<Entry, SseError> {
        let id_text = id.to_string();
        let mut sse_bytes = Vec::with_capacity(data.len() + 32);
        let name = (event != DEFAULT_EVENT).then_some(event);
        let mut sse_event = sse::Event::new(data).id(&id_text);
        if let Some(name) = name {
            sse_event = sse_event.event(name);
        }
        sse::encode(&sse_event, &mut sse_bytes)?;
        let mut json_bytes = Vec::with_capacity(data.len() + 48);
        json_bytes.extend_from_slice(b"{\"id\":");
        json_bytes.extend_from_slice(id_text.as_bytes());
        json_bytes.extend_from_slice(b",\"event\":");
        json::write_str(&mut json_bytes, event);
        json_bytes.extend_from_slice(b",\"data\":");
        json::write_str(&mut json_bytes, data);
        json_bytes.push(b'}');
        let mut frame_bytes = Vec::with_capacity(json_bytes.len() + frame::MAX_HEADER_LEN);
        frame::encode_frame(&mut frame_bytes, true, OpCode::Text, None, &json_bytes);
        Ok(Entry {
            id,
            sse: sse_bytes.into(),
            ws_frame: frame_bytes.into(),
            json: json_bytes.into(),
        })
    }

    fn size(&self) -> usize {
        self.sse.len() + self.ws_frame.len() + self.json.len()
    }
}

/// Why a cursor could not be served from history.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resync {
    /// The events after the cursor were dropped from the bounded history.
    FellOutOfHistory,
    /// The cursor is not an id of this run (an earlier run, or not an id at all).
    UnknownId,
}

impl Resync {
    fn reason(self) -> &'static str {
        match self {
            Resync::FellOutOfHistory => "fell out of history",
            Resync::UnknownId => "unknown id",
        }
    }
}

/// What a cursor gets: an optional resync notice, then events from history.
#[derive(Debug)]
pub struct Replay<'a> {
    /// Set when the cursor could not be served exactly; the events are then the
    /// whole history, and the notice (see [`Topic::resync_entry`]) goes first.
    pub resync: Option<Resync>,
    /// The events after the cursor, oldest first.
    pub entries: std::collections::vec_deque::Iter<'a, Entry>,
}

/// A named feed.
#[derive(Debug)]
pub struct Topic {
    name: String,
    limits: HistoryLimits,
    history: VecDeque<Entry>,
    history_bytes: usize,
    first_id: u64,
    next_id: u64,
}

impl Topic {
    /// A topic whose first event will have id `first_id` (the server passes a
    /// wall-clock seed; `first_id` must be at least 1).
    pub fn new(name: &str, limits: HistoryLimits, first_id: u64) -> Topic {
        Topic {
            name: name.to_owned(),
            limits,
            history: VecDeque::new(),
            history_bytes: 0,
            first_id: first_id.max(1),
            next_id: first_id.max(1),
        }
    }

    /// The topic's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Publishes an event and returns it, encoded for every transport. `event`
    /// `None` is the default `message` type. Refused (nothing published) when
    /// the event name contains CR, LF or NUL — it could inject SSE fields.
    pub fn publish(&mut self, event: Option<&str>, data: &str) -> Result<Entry, SseError> {
        let entry = Entry::encode(self.next_id, event.unwrap_or(DEFAULT_EVENT), data)?;
        self.next_id += 1;
        self.history_bytes += entry.size();
        self.history.push_back(entry.clone());
        while self.history.len() > 1
            && (self.history.len() > self.limits.max_events
                || self.history_bytes > self.limits.max_bytes)
        {
            if let Some(old) = self.history.pop_front() {
                self.history_bytes -= old.size();
            }
        }
        Ok(entry)
    }

    /// The id of the newest event, or the id before the first one.
    pub fn latest_id(&self) -> u64 {
        self.next_id - 1
    }

    /// The oldest id still in history (the next id when history is empty).
    pub fn oldest_id(&self) -> u64 {
        self.history.front().map_or(self.next_id, |entry| entry.id)
    }

    /// Events in history.
    pub fn history_len(&self) -> usize {
        self.history.len()
    }

    /// Events after `cursor`. Cursor `0` means "from the oldest event kept".
    /// A cursor is exact when it is `oldest_id - 1` or later and not past the
    /// latest id; anything else gets a [`Resync`] and the whole history.
    pub fn since(&self, cursor: u64) -> Replay<'_> {
        let oldest = self.oldest_id();
        let exact = cursor == 0 || (cursor >= oldest - 1 && cursor <= self.latest_id());
        if exact {
            let skip = cursor
                .saturating_sub(oldest - 1)
                .min(self.history.len() as u64) as usize;
            return Replay {
                resync: None,
                entries: self.history.range(skip..),
            };
        }
        // Ids of this run start at `first_id`, so a
        // cursor in [first_id - 1, oldest - 1) was ours and has been dropped.
        let resync = if cursor >= self.first_id - 1 && cursor < oldest {
            Resync::FellOutOfHistory
        } else {
            Resync::UnknownId
        };
        Replay {
            resync: Some(resync),
            entries: self.history.iter(),
        }
    }

    /// The resync notice as an entry: type `resync`, id `oldest_id - 1` (so the
    /// client's cursor is repaired by it), data a JSON object with the reason.
    pub fn resync_entry(&self, why: Resync) -> Entry {
        let mut data = String::from("{\"reason\":\"");
        data.push_str(why.reason());
        data.push_str("\",\"oldest\":");
        data.push_str(&self.oldest_id().to_string());
        data.push_str(",\"latest\":");
        data.push_str(&self.latest_id().to_string());
        data.push('}');
        Entry::encode(self.oldest_id() - 1, RESYNC_EVENT, &data)
            .expect("the resync event name is a constant without line breaks")
    }

    /// The JSON array a poll after `cursor` answers with (`[]` when nothing).
    pub fn poll_json(&self, cursor: u64) -> Vec<u8> {
        let replay = self.since(cursor);
        let mut body = Vec::from(&b"["[..]);
        if let Some(why) = replay.resync {
            body.extend_from_slice(&self.resync_entry(why).json);
        }
        for entry in replay.entries {
            if body.len() > 1 {
                body.push(b',');
            }
            body.extend_from_slice(&entry.json);
        }
        body.push(b']');
        body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: u64 = 1_000;

    fn topic_with(max_events: usize, max_bytes: usize) -> Topic {
        Topic::new(
            "feed",
            HistoryLimits {
                max_events,
                max_bytes,
            },
            SEED,
        )
    }

    fn ids(replay: Replay) -> Vec<u64> {
        replay.entries.map(|entry| entry.id).collect()
    }

    #[test]
    fn ids_start_at_the_seed_and_increase_by_one() {
        let mut topic = topic_with(10, 1 << 20);
        assert_eq!(topic.latest_id(), SEED - 1);
        assert_eq!(topic.publish(None, "a").unwrap().id, SEED);
        assert_eq!(topic.publish(None, "b").unwrap().id, SEED + 1);
        assert_eq!((topic.oldest_id(), topic.latest_id()), (SEED, SEED + 1));
    }

    #[test]
    fn each_publish_is_encoded_once_per_transport() {
        let mut topic = topic_with(10, 1 << 20);
        let entry = topic.publish(Some("greet"), "hi \"you\"\nthere").unwrap();
        assert_eq!(
            &*entry.sse,
            b"id: 1000\nevent: greet\ndata: hi \"you\"\ndata: there\n\n"
        );
        let json = br#"{"id":1000,"event":"greet","data":"hi \"you\"\nthere"}"#;
        assert_eq!(&*entry.json, json);
        // RFC 6455 §5.2: FIN + text opcode, unmasked, 7-bit length.
        assert_eq!(entry.ws_frame[..2], [0x81, json.len() as u8]);
        assert_eq!(&entry.ws_frame[2..], json);
        let plain = topic.publish(None, "x").unwrap();
        assert_eq!(
            &*plain.sse, b"id: 1001\ndata: x\n\n",
            "the default type has no event: line"
        );
        assert!(plain.json.ends_with(br#""event":"message","data":"x"}"#));
    }

    #[test]
    fn an_event_name_that_could_inject_a_field_is_refused() {
        let mut topic = topic_with(10, 1 << 20);
        assert!(topic.publish(Some("a\nid: 7"), "x").is_err());
        assert!(topic.publish(Some("a\rb"), "x").is_err());
        assert_eq!(topic.history_len(), 0);
        assert_eq!(
            topic.publish(None, "x").unwrap().id,
            SEED,
            "no id was used up"
        );
    }

    #[test]
    fn cursors_inside_history_replay_exactly() {
        let mut topic = topic_with(10, 1 << 20);
        for data in ["a", "b", "c"] {
            topic.publish(None, data).unwrap();
        }
        assert_eq!(
            ids(topic.since(0)),
            [1000, 1001, 1002],
            "0 means from the oldest"
        );
        assert_eq!(
            ids(topic.since(999)),
            [1000, 1001, 1002],
            "the id before the first"
        );
        assert_eq!(ids(topic.since(1001)), [1002]);
        assert_eq!(ids(topic.since(1002)), Vec::<u64>::new());
        assert_eq!(topic.since(1001).resync, None);
    }

    #[test]
    fn history_is_bounded_by_count() {
        let mut topic = topic_with(3, 1 << 20);
        for i in 0..10 {
            topic.publish(None, &i.to_string()).unwrap();
        }
        assert_eq!(topic.history_len(), 3);
        assert_eq!(topic.oldest_id(), 1007);
    }

    #[test]
    fn history_is_bounded_by_bytes_but_keeps_the_newest_event() {
        let mut topic = topic_with(100, 1024);
        for _ in 0..10 {
            topic.publish(None, &"x".repeat(100)).unwrap();
        }
        assert!(topic.history_bytes <= 1024, "{}", topic.history_bytes);
        assert!(topic.history_len() < 10);
        topic.publish(None, &"y".repeat(4096)).unwrap();
        assert_eq!(
            topic.history_len(),
            1,
            "an event over the limit is still kept, alone"
        );
    }

    #[test]
    fn a_cursor_that_fell_out_of_history_gets_a_resync_and_everything_kept() {
        let mut topic = topic_with(2, 1 << 20);
        for data in ["a", "b", "c", "d"] {
            topic.publish(None, data).unwrap();
        }
        let replay = topic.since(1000);
        assert_eq!(replay.resync, Some(Resync::FellOutOfHistory));
        assert_eq!(ids(replay), [1002, 1003]);
        assert_eq!(topic.since(1001).resync, None, "oldest - 1 is still exact");
    }

    #[test]
    fn cursors_from_another_run_get_a_resync() {
        let mut topic = topic_with(10, 1 << 20);
        topic.publish(None, "a").unwrap();
        assert_eq!(
            topic.since(5).resync,
            Some(Resync::UnknownId),
            "an earlier run's id"
        );
        assert_eq!(
            topic.since(SEED + 50).resync,
            Some(Resync::UnknownId),
            "an id from the future"
        );
    }

    #[test]
    fn the_resync_notice_repairs_the_cursor() {
        let mut topic = topic_with(10, 1 << 20);
        topic.publish(None, "a").unwrap();
        let notice = topic.resync_entry(Resync::UnknownId);
        assert_eq!(notice.id, topic.oldest_id() - 1);
        let sse = String::from_utf8(notice.sse.to_vec()).unwrap();
        assert!(
            sse.starts_with("id: 999\nevent: resync\ndata: {\"reason\":\"unknown id\""),
            "{sse}"
        );
    }

    #[test]
    fn poll_json_is_an_array_with_the_notice_first() {
        let mut topic = topic_with(10, 1 << 20);
        assert_eq!(topic.poll_json(0), b"[]");
        topic.publish(None, "a").unwrap();
        topic.publish(None, "b").unwrap();
        assert_eq!(
            String::from_utf8(topic.poll_json(1000)).unwrap(),
            r#"[{"id":1001,"event":"message","data":"b"}]"#
        );
        let stale = String::from_utf8(topic.poll_json(3)).unwrap();
        assert!(
            stale.starts_with(r#"[{"id":999,"event":"resync","#),
            "{stale}"
        );
        assert!(
            stale.ends_with(r#"{"id":1001,"event":"message","data":"b"}]"#),
            "{stale}"
        );
    }
}
