//! One topic's history: a bounded ring of events, each encoded once for
//! every transport.
//!
//! One publish becomes three byte strings — an SSE event, a WebSocket frame, a
//! JSON object for polls — shared (`Arc<[u8]>`) by every recipient and by the
//! history, so a publish to a thousand followers is encoded once, not a
//! thousand times. With permessage-deflate a fourth, the frame compressed, is
//! made by the engine when the first compressed follower needs it, and kept
//! in the entry for every other one (and for replays). Ids come from the feed (one id space for every topic, see
//! [`crate::feeds`]); the history only keeps them in order and remembers the
//! newest id it had to let go, so a cursor that fell out is recognised.

use std::collections::VecDeque;
use std::sync::Arc;
#[cfg(feature = "deflate")]
use std::sync::OnceLock;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

use crate::ids::TopicId;
use crate::json;
use crate::sse::{self, SseError};
use crate::storage::DataKind;
use crate::ws::frame::{self, OpCode};

/// The event type of an event published without a name (WHATWG HTML §9.2.6:
/// the type a browser dispatches when no `event:` field is given).
pub const DEFAULT_EVENT: &str = "message";
/// The event type that tells a client its cursor could not be served.
pub const RESYNC_EVENT: &str = "resync";

/// How much history a topic keeps, and how big one event may be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistoryLimits {
    /// Events kept per topic. Default 1024.
    pub max_events: usize,
    /// Encoded bytes kept per topic (all three encodings of each event).
    /// Default 1 MiB. An event larger than half of this is delivered live
    /// but not kept (it would evict half the history or more); a cursor
    /// before it then gets a `resync`, never a silent gap.
    pub max_bytes: usize,
    /// The largest encoding of one event (JSON escaping can make text up to 6×
    /// longer: a control character becomes `\u00XX`). Default 4 MiB; past it
    /// the publish is refused ([`PublishError::TooBig`], HTTP 413), because
    /// every follower would have to queue it.
    pub max_event_bytes: usize,
}

impl Default for HistoryLimits {
    fn default() -> Self {
        HistoryLimits {
            max_events: 1024,
            max_bytes: 1 << 20,
            max_event_bytes: 4 << 20,
        }
    }
}

/// What a publish carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Payload<'a> {
    /// Text: a JSON string in polls and WebSocket objects, the `data:` lines
    /// of an SSE event.
    Text(&'a str),
    /// A JSON value (checked with [`crate::json::validate`]): written as-is as
    /// `data` in polls and WebSocket objects, so clients parse once.
    Json(&'a str),
    /// Bytes: a binary WebSocket frame holding exactly them (no JSON wrapper,
    /// so no id); base64 (RFC 4648 §4) in polls (with `"encoding":"base64"`)
    /// and in SSE `data:`.
    Binary(&'a [u8]),
}

impl<'a> Payload<'a> {
    /// What a backend stores of it: its kind and its bytes.
    pub fn stored(self) -> (DataKind, &'a [u8]) {
        match self {
            Payload::Text(text) => (DataKind::Text, text.as_bytes()),
            Payload::Json(json) => (DataKind::Json, json.as_bytes()),
            Payload::Binary(bytes) => (DataKind::Binary, bytes),
        }
    }

    /// The payload a backend stored; `None` when text or JSON is not UTF-8
    /// (a record pushloop did not write: nothing it stores is).
    pub fn from_stored(kind: DataKind, data: &'a [u8]) -> Option<Payload<'a>> {
        match kind {
            DataKind::Text => std::str::from_utf8(data).ok().map(Payload::Text),
            DataKind::Json => std::str::from_utf8(data).ok().map(Payload::Json),
            DataKind::Binary => Some(Payload::Binary(data)),
        }
    }
}

/// Why a publish was refused. Nothing was published, and no id used up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PublishError {
    /// The topic does not exist (never created, or removed).
    UnknownTopic,
    /// The event name has a CR, LF or NUL (it could inject SSE fields), or is
    /// longer than [`MAX_EVENT_NAME_BYTES`].
    BadEventName,
    /// A [`Payload::Json`] that is not one valid JSON value.
    BadJson,
    /// An encoding of the event is longer than `max_event_bytes`.
    TooBig,
    /// The store could not take the event (a file log write failed, Redis is
    /// down or did not answer in time). Nothing was published; try again
    /// later (HTTP `503` with `Retry-After`).
    Unavailable,
    /// The store gives ids only once it has the event (Redis), so no id can
    /// be returned now: publish with `Context::publish_later` or
    /// `Context::publish_for` instead (an app's bug, hence `500`).
    AnswersLater,
}

impl PublishError {
    /// The HTTP status that answers a publisher with this error.
    pub fn status(self) -> u16 {
        match self {
            PublishError::UnknownTopic => 404,
            PublishError::BadEventName | PublishError::BadJson => 400,
            PublishError::TooBig => 413,
            PublishError::Unavailable => 503,
            PublishError::AnswersLater => 500,
        }
    }
}

impl std::fmt::Display for PublishError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PublishError::UnknownTopic => "no such topic",
            PublishError::BadEventName => {
                "the event name must be at most 64 bytes, without line breaks or NUL"
            }
            PublishError::BadJson => "the data is not valid JSON",
            PublishError::TooBig => "the event is larger than max_event_bytes once encoded",
            PublishError::Unavailable => "the event store is unavailable; try again later",
            PublishError::AnswersLater => {
                "this event store answers later: publish with publish_later or publish_for"
            }
        })
    }
}

impl std::error::Error for PublishError {}

/// The longest event name: names are types, not data (an SSE `event:` line
/// and a JSON field of every copy of the event).
pub const MAX_EVENT_NAME_BYTES: usize = 64;

/// One published event, encoded once for each transport.
#[derive(Clone, Debug)]
pub struct Entry {
    /// The event id, unique across every topic of the feed.
    pub id: u64,
    /// The topic it was published on.
    pub topic: TopicId,
    /// `id:`, `event:` and `data:` lines of a `text/event-stream`.
    pub sse: Arc<[u8]>,
    /// A WebSocket frame: text holding [`Entry::json`], or binary holding the
    /// bytes of a [`Payload::Binary`].
    pub ws_frame: Arc<[u8]>,
    /// `{"id":N,"topic":"T","event":"E","data":…}`.
    pub json: Arc<[u8]>,
    /// [`Entry::ws_frame`] compressed (RFC 7692), for every WebSocket that
    /// shares the loop's compressor, once the first one needs it.
    #[cfg(feature = "deflate")]
    pub ws_deflated: DeflatedFrame,
}

/// Where an event's compressed WebSocket frame is kept once made: shared by
/// every copy of the entry (the history's, the fan-out's). `Some(None)`: the
/// frame is below the compression threshold, or did not shrink. Not counted
/// in [`Entry::size`]: it exists only where compressed followers are, and it
/// is smaller than the frame it stands for.
#[cfg(feature = "deflate")]
pub type DeflatedFrame = Arc<OnceLock<Option<Arc<[u8]>>>>;

impl Entry {
    /// Encodes an event for every transport, or says why it cannot be.
    pub fn encode(
        id: u64,
        topic: TopicId,
        topic_name: &str,
        event: &str,
        payload: Payload,
        max_event_bytes: usize,
    ) -> Result<Entry, PublishError> {
        if event.len() > MAX_EVENT_NAME_BYTES {
            return Err(PublishError::BadEventName);
        }
        let id_text = id.to_string();
        let encoded;
        let data_text = match payload {
            Payload::Text(text) | Payload::Json(text) => text,
            Payload::Binary(bytes) => {
                encoded = BASE64.encode(bytes);
                encoded.as_str()
            }
        };
        if let Payload::Json(text) = payload {
            if json::validate(text.as_bytes()).is_err() {
                return Err(PublishError::BadJson);
            }
        }
        let mut json_bytes = Vec::with_capacity(data_text.len() + topic_name.len() + 48);
        json_bytes.extend_from_slice(b"{\"id\":");
        json_bytes.extend_from_slice(id_text.as_bytes());
        json_bytes.extend_from_slice(b",\"topic\":");
        json::write_str(&mut json_bytes, topic_name);
        json_bytes.extend_from_slice(b",\"event\":");
        json::write_str(&mut json_bytes, event);
        json_bytes.extend_from_slice(b",\"data\":");
        match payload {
            Payload::Json(raw) => json_bytes.extend_from_slice(raw.as_bytes()),
            Payload::Text(_) | Payload::Binary(_) => json::write_str(&mut json_bytes, data_text),
        }
        if let Payload::Binary(_) = payload {
            json_bytes.extend_from_slice(b",\"encoding\":\"base64\"");
        }
        json_bytes.push(b'}');
        if json_bytes.len() > max_event_bytes {
            return Err(PublishError::TooBig);
        }
        let mut sse_bytes = Vec::with_capacity(data_text.len() + 32);
        let mut sse_event = sse::Event::new(data_text).id(&id_text);
        if event != DEFAULT_EVENT {
            sse_event = sse_event.event(event);
        }
        sse::encode(&sse_event, &mut sse_bytes).map_err(|error| match error {
            SseError::LineBreakInEventName | SseError::NulInEventName => PublishError::BadEventName,
            _ => PublishError::TooBig,
        })?;
        if sse_bytes.len() > max_event_bytes {
            return Err(PublishError::TooBig);
        }
        let (opcode, frame_payload) = match payload {
            Payload::Binary(bytes) => (OpCode::Binary, bytes),
            Payload::Text(_) | Payload::Json(_) => (OpCode::Text, &json_bytes[..]),
        };
        let mut frame_bytes = Vec::with_capacity(frame_payload.len() + frame::MAX_HEADER_LEN);
        // RFC 6455 §5.1: a server's frames are not masked.
        frame::encode_frame(&mut frame_bytes, true, opcode, None, frame_payload);
        Ok(Entry {
            id,
            topic,
            sse: sse_bytes.into(),
            ws_frame: frame_bytes.into(),
            json: json_bytes.into(),
            #[cfg(feature = "deflate")]
            ws_deflated: DeflatedFrame::default(),
        })
    }

    /// Bytes the three encodings take.
    pub fn size(&self) -> usize {
        self.sse.len() + self.ws_frame.len() + self.json.len()
    }
}

/// A message for one connection alone (not a feed event: no id, no topic),
/// encoded for a text transport.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Direct {
    /// An SSE event of type `message` with the data (base64 for bytes).
    pub sse: Vec<u8>,
    /// `{"event":"message","data":…}` (with `"encoding":"base64"` for bytes),
    /// as one element of a poll answer.
    pub json: Vec<u8>,
}

impl Direct {
    /// Encodes a message sent to one event stream or held long-poll.
    pub fn encode(payload: Payload) -> Result<Direct, PublishError> {
        let encoded;
        let text = match payload {
            Payload::Text(text) | Payload::Json(text) => text,
            Payload::Binary(bytes) => {
                encoded = BASE64.encode(bytes);
                encoded.as_str()
            }
        };
        let mut json_bytes = Vec::with_capacity(text.len() + 32);
        json_bytes.extend_from_slice(b"{\"event\":\"message\",\"data\":");
        match payload {
            Payload::Json(raw) => {
                if json::validate(raw.as_bytes()).is_err() {
                    return Err(PublishError::BadJson);
                }
                json_bytes.extend_from_slice(raw.as_bytes());
            }
            Payload::Text(_) | Payload::Binary(_) => json::write_str(&mut json_bytes, text),
        }
        if let Payload::Binary(_) = payload {
            json_bytes.extend_from_slice(b",\"encoding\":\"base64\"");
        }
        json_bytes.push(b'}');
        let mut sse_bytes = Vec::with_capacity(text.len() + 8);
        sse::encode(&sse::Event::new(text), &mut sse_bytes).map_err(|_| PublishError::TooBig)?;
        Ok(Direct {
            sse: sse_bytes,
            json: json_bytes,
        })
    }
}

/// A topic: its name and its bounded history.
#[derive(Debug)]
pub struct Topic {
    name: Box<str>,
    history: VecDeque<Entry>,
    history_bytes: usize,
    /// The newest id this topic had to let go of (evicted, or too big to
    /// keep); 0 when it never did. A cursor before it cannot be served exactly.
    evicted_through: u64,
}

impl Topic {
    /// An empty topic.
    pub fn new(name: &str) -> Topic {
        Topic {
            name: name.into(),
            history: VecDeque::new(),
            history_bytes: 0,
            evicted_through: 0,
        }
    }

    /// The topic's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Keeps `entry` (whose id is newer than every kept one), evicting the
    /// oldest events past the limits. An entry larger than half of
    /// `max_bytes` is not kept: it would push out half the history or more
    /// (a 1 MiB publish would otherwise empty a 1 MiB history).
    pub fn keep(&mut self, entry: &Entry, limits: &HistoryLimits) {
        if entry.size() > limits.max_bytes / 2 {
            self.evicted_through = entry.id;
            return;
        }
        self.history_bytes += entry.size();
        self.history.push_back(entry.clone());
        while self.history.len() > limits.max_events || self.history_bytes > limits.max_bytes {
            let Some(old) = self.history.pop_front() else {
                break;
            };
            self.history_bytes -= old.size();
            self.evicted_through = old.id;
        }
    }

    /// The newest id let go of (0: none).
    pub fn evicted_through(&self) -> u64 {
        self.evicted_through
    }

    /// Events kept.
    pub fn history_len(&self) -> usize {
        self.history.len()
    }

    /// Bytes kept.
    pub fn history_bytes(&self) -> usize {
        self.history_bytes
    }

    /// Whether `id` is the id of one of this topic's events that we can
    /// still vouch for: one in history, or the newest one let go of.
    pub fn knows(&self, id: u64) -> bool {
        id == self.evicted_through
            || self
                .history
                .binary_search_by_key(&id, |entry| entry.id)
                .is_ok()
    }

    /// The kept events with an id above `after`, oldest first.
    pub fn after(&self, after: u64) -> std::collections::vec_deque::Iter<'_, Entry> {
        let start = self.history.partition_point(|entry| entry.id <= after);
        self.history.range(start..)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOPIC: TopicId = TopicId {
        index: 0,
        generation: 0,
    };

    fn entry(id: u64, data: &str) -> Entry {
        Entry::encode(
            id,
            TOPIC,
            "room",
            DEFAULT_EVENT,
            Payload::Text(data),
            1 << 20,
        )
        .unwrap()
    }

    #[test]
    fn each_publish_is_encoded_once_per_transport() {
        let entry = Entry::encode(
            1000,
            TOPIC,
            "room",
            "greet",
            Payload::Text("hi \"you\"\nthere"),
            1 << 20,
        )
        .unwrap();
        assert_eq!(
            &*entry.sse,
            b"id: 1000\nevent: greet\ndata: hi \"you\"\ndata: there\n\n"
        );
        let json = br#"{"id":1000,"topic":"room","event":"greet","data":"hi \"you\"\nthere"}"#;
        assert_eq!(&*entry.json, json);
        // RFC 6455 §5.2: FIN + text opcode, unmasked, 7-bit length.
        assert_eq!(entry.ws_frame[..2], [0x81, json.len() as u8]);
        assert_eq!(&entry.ws_frame[2..], json);
        let plain = super::tests::entry(1001, "x");
        assert_eq!(
            &*plain.sse, b"id: 1001\ndata: x\n\n",
            "no event: line for the default"
        );
    }

    #[test]
    fn json_goes_out_unescaped_and_binary_as_a_binary_frame_or_base64() {
        let json =
            Entry::encode(7, TOPIC, "t", "e", Payload::Json(r#"{"a":[1,2]}"#), 1 << 20).unwrap();
        assert_eq!(
            &*json.json,
            br#"{"id":7,"topic":"t","event":"e","data":{"a":[1,2]}}"#
        );
        assert_eq!(&*json.sse, b"id: 7\nevent: e\ndata: {\"a\":[1,2]}\n\n");
        let binary =
            Entry::encode(8, TOPIC, "t", "e", Payload::Binary(&[0, 255, 1]), 1 << 20).unwrap();
        // RFC 6455 §5.6: a binary frame with the bytes themselves.
        assert_eq!(&*binary.ws_frame, [0x82, 3, 0, 255, 1]);
        // RFC 4648 §4: base64 on the text transports.
        assert_eq!(
            &*binary.json,
            br#"{"id":8,"topic":"t","event":"e","data":"AP8B","encoding":"base64"}"#
        );
        assert_eq!(&*binary.sse, b"id: 8\nevent: e\ndata: AP8B\n\n");
    }

    #[test]
    fn a_bad_name_bad_json_or_a_huge_encoding_is_refused() {
        let publish =
            |event: &str, payload| Entry::encode(1, TOPIC, "t", event, payload, 64).map(|_| ());
        assert_eq!(
            publish("a\nid: 7", Payload::Text("x")),
            Err(PublishError::BadEventName)
        );
        assert_eq!(
            publish(&"e".repeat(65), Payload::Text("x")),
            Err(PublishError::BadEventName)
        );
        assert_eq!(publish("e", Payload::Json("{")), Err(PublishError::BadJson));
        // Ten control characters are 60 bytes once escaped: the encoded size counts.
        assert_eq!(
            publish(
                "e",
                Payload::Text("\u{1}\u{1}\u{1}\u{1}\u{1}\u{1}\u{1}\u{1}\u{1}\u{1}")
            ),
            Err(PublishError::TooBig)
        );
        assert_eq!(PublishError::TooBig.status(), 413);
    }

    #[test]
    fn a_direct_message_has_no_id_and_no_topic() {
        let direct = Direct::encode(Payload::Text("hi\nyou")).unwrap();
        assert_eq!(direct.sse, b"data: hi\ndata: you\n\n");
        assert_eq!(direct.json, br#"{"event":"message","data":"hi\nyou"}"#);
        let bytes = Direct::encode(Payload::Binary(&[1, 2])).unwrap();
        assert_eq!(
            bytes.json,
            br#"{"event":"message","data":"AQI=","encoding":"base64"}"#
        );
    }

    #[test]
    fn history_is_bounded_by_count_and_remembers_what_it_let_go() {
        let limits = HistoryLimits {
            max_events: 3,
            ..HistoryLimits::default()
        };
        let mut topic = Topic::new("t");
        for id in 1..=10 {
            topic.keep(&entry(id, "x"), &limits);
        }
        assert_eq!(topic.history_len(), 3);
        assert_eq!(topic.evicted_through(), 7);
        assert!(topic.knows(7) && topic.knows(9) && !topic.knows(6));
        let ids: Vec<u64> = topic.after(8).map(|e| e.id).collect();
        assert_eq!(ids, [9, 10]);
    }

    #[test]
    fn history_is_bounded_by_bytes() {
        let limits = HistoryLimits {
            max_events: 100,
            max_bytes: 1024,
            ..HistoryLimits::default()
        };
        let mut topic = Topic::new("t");
        for id in 1..=20 {
            topic.keep(&entry(id, &"x".repeat(50)), &limits);
        }
        assert!(topic.history_bytes() <= 1024);
        assert!(topic.history_len() < 20);
    }

    #[test]
    fn an_event_over_half_the_budget_is_not_kept_and_evicts_nothing() {
        let limits = HistoryLimits {
            max_events: 100,
            max_bytes: 1024,
            ..HistoryLimits::default()
        };
        let mut topic = Topic::new("t");
        for id in 1..=3 {
            topic.keep(&entry(id, "small"), &limits);
        }
        topic.keep(&entry(4, &"y".repeat(600)), &limits);
        assert_eq!(topic.history_len(), 3, "the small ones stay");
        // A cursor before the big one can no longer be served exactly.
        assert_eq!(topic.evicted_through(), 4);
    }
}
