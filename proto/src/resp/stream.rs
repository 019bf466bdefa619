//! Redis Streams replies, typed: entries out of `XRANGE` and `XREAD`, and
//! pushloop's events as stream entries.
//!
//! Reading list — redis.io: "Redis Streams" (entry IDs are
//! `<millisecondsTime>-<sequenceNumber>`), the command pages of `XADD`
//! (`MAXLEN ~` trims approximately, whole macro nodes at a time), `XRANGE`
//! (an array of entries) and `XREAD` (per stream, its key and its entries; a
//! null when `BLOCK` times out), and the RESP spec's "Maps" (RESP3 gives
//! `XREAD` as a map from key to entries).
//!
//! ```text
//! entry   = *2 [ $id "1526984818136-0", *2n [ $field, $value, ... ] ]
//! XRANGE  = *n [ entry, ... ]
//! XREAD   = *k [ *2 [ $key, *n [ entry, ... ] ], ... ]   (RESP2)
//!         | %k { $key: *n [ entry, ... ], ... }          (RESP3)
//!         | null                                          (BLOCK timed out)
//! ```
//!
//! A pushloop event is an entry with the fields of [`EVENT_FIELDS`]: `id`
//! (the event id, decimal: the same on every node, whatever stream id Redis
//! gives the entry), `topic`, `event` and `data` (binary-safe).

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use super::{encode_command, push_decimal, Reply, RespError};

/// A stream entry id (Redis Streams, "Entry IDs"): milliseconds and a
/// sequence number, ordered as Redis orders them.
///
/// ```
/// use pushloop_proto::resp::stream::StreamId;
/// let id = StreamId::parse(b"1526984818136-3").unwrap();
/// assert_eq!((id.ms, id.seq), (1526984818136, 3));
/// assert_eq!(id.to_string(), "1526984818136-3");
/// assert!(StreamId::parse(b"1526984818136").is_none());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId {
    /// The Unix time in milliseconds of the Redis node that added the entry.
    pub ms: u64,
    /// The entry's number within that millisecond.
    pub seq: u64,
}

impl StreamId {
    /// Reads `<ms>-<seq>`, both decimal u64.
    pub fn parse(text: &[u8]) -> Option<StreamId> {
        let dash = text.iter().position(|&b| b == b'-')?;
        let (ms, seq) = (text.get(..dash)?, text.get(dash + 1..)?);
        Some(StreamId {
            ms: parse_u64(ms)?,
            seq: parse_u64(seq)?,
        })
    }

    /// Appends `<ms>-<seq>`, as an argument to `XREAD` or `XRANGE`.
    pub fn write(self, out: &mut Vec<u8>) {
        push_decimal(self.ms, out);
        out.push(b'-');
        push_decimal(self.seq, out);
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// `1*DIGIT` into a u64; `None` when empty, not digits, or too large.
fn parse_u64(text: &[u8]) -> Option<u64> {
    if text.is_empty() {
        return None;
    }
    text.iter().try_fold(0u64, |value, &byte| {
        let digit = byte.checked_sub(b'0').filter(|d| *d < 10)?;
        value.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

/// One stream entry: its id and its field-value pairs, in the order added.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamEntry {
    /// The entry's id.
    pub id: StreamId,
    /// Field-value pairs, binary-safe.
    pub fields: Vec<(Vec<u8>, Vec<u8>)>,
}

impl StreamEntry {
    /// The value of the first field named `name`.
    pub fn field(&self, name: &[u8]) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|(field, _)| field == name)
            .map(|(_, value)| value.as_slice())
    }

    /// Reads `*2 [ $id, *2n [ $field, $value, ... ] ]`.
    fn from_reply(reply: Reply) -> Result<StreamEntry, RespError> {
        let Reply::Array(parts) = reply else {
            return Err(RespError::UnexpectedReply);
        };
        let [Reply::Bulk(id), Reply::Array(flat)] =
            <[Reply; 2]>::try_from(parts).map_err(|_| RespError::UnexpectedReply)?
        else {
            return Err(RespError::UnexpectedReply);
        };
        let id = StreamId::parse(&id).ok_or(RespError::UnexpectedReply)?;
        if flat.len() % 2 != 0 {
            return Err(RespError::UnexpectedReply);
        }
        let mut fields = Vec::with_capacity(flat.len() / 2);
        let mut flat = flat.into_iter();
        while let (Some(field), Some(value)) = (flat.next(), flat.next()) {
            let (Reply::Bulk(field), Reply::Bulk(value)) = (field, value) else {
                return Err(RespError::UnexpectedReply);
            };
            fields.push((field, value));
        }
        Ok(StreamEntry { id, fields })
    }
}

/// The entries of an `XRANGE` or `XREVRANGE` reply, in the order sent.
///
/// Check for [`Reply::Error`] first: an error reply is a failed command on a
/// healthy connection, but here it is [`RespError::UnexpectedReply`].
pub fn range_entries(reply: Reply) -> Result<Vec<StreamEntry>, RespError> {
    let Reply::Array(entries) = reply else {
        return Err(RespError::UnexpectedReply);
    };
    entries.into_iter().map(StreamEntry::from_reply).collect()
}

/// One stream's part of an `XREAD` reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamEntries {
    /// The stream's key.
    pub key: Vec<u8>,
    /// Its entries after the id asked for, oldest first.
    pub entries: Vec<StreamEntry>,
}

/// The entries of an `XREAD` reply, per stream, in the order sent; empty
/// when `BLOCK` timed out (a null). Reads the RESP2 array and the RESP3 map.
///
/// Check for [`Reply::Error`] first, as for [`range_entries`].
pub fn read_entries(reply: Reply) -> Result<Vec<StreamEntries>, RespError> {
    let streams: Vec<(Reply, Reply)> = match reply {
        // XREAD: "a null reply ... if the BLOCK option is given and a timeout occurs".
        Reply::Null => return Ok(Vec::new()),
        // RESP3: a map from key to entries.
        Reply::Map(pairs) => pairs,
        // RESP2: an array of [key, entries].
        Reply::Array(streams) => streams
            .into_iter()
            .map(|stream| match stream {
                Reply::Array(pair) => {
                    <[Reply; 2]>::try_from(pair).map_err(|_| RespError::UnexpectedReply)
                }
                _ => Err(RespError::UnexpectedReply),
            })
            .map(|pair| pair.map(|[key, entries]| (key, entries)))
            .collect::<Result<_, _>>()?,
        _ => return Err(RespError::UnexpectedReply),
    };
    streams
        .into_iter()
        .map(|(key, entries)| match key {
            Reply::Bulk(key) => Ok(StreamEntries {
                key,
                entries: range_entries(entries)?,
            }),
            _ => Err(RespError::UnexpectedReply),
        })
        .collect()
}

/// The id Redis gave an entry, from an `XADD` reply.
pub fn added_id(reply: Reply) -> Result<StreamId, RespError> {
    match reply {
        Reply::Bulk(id) => StreamId::parse(&id).ok_or(RespError::UnexpectedReply),
        _ => Err(RespError::UnexpectedReply),
    }
}

/// The field names of a pushloop event in a stream, in the order written.
pub const EVENT_FIELDS: [&str; 4] = ["id", "topic", "event", "data"];

/// A pushloop event, as written to a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event<'a> {
    /// The event id: one id space across every topic and every node.
    pub id: u64,
    /// The topic it was published to.
    pub topic: &'a str,
    /// The event name (SSE `event:`).
    pub event: &'a str,
    /// The payload, binary-safe.
    pub data: &'a [u8],
}

/// Appends the `XADD` that stores `event` in the stream `key`, trimmed to
/// about `max_len` entries (`MAXLEN ~`: Redis trims whole macro nodes, so a
/// few more may stay, and trimming costs little). Redis picks the entry id
/// (`*`); the event's own id travels as the `id` field.
///
/// ```
/// use pushloop_proto::resp::stream::{encode_xadd, Event};
/// let mut out = Vec::new();
/// let event = Event { id: 7, topic: "news", event: "message", data: b"hi" };
/// encode_xadd(b"pushloop", 1000, &event, &mut out);
/// assert!(out.starts_with(b"*14\r\n$4\r\nXADD\r\n$8\r\npushloop\r\n$6\r\nMAXLEN\r\n$1\r\n~\r\n"));
/// ```
pub fn encode_xadd(key: &[u8], max_len: u64, event: &Event<'_>, out: &mut Vec<u8>) {
    let mut max_len_text = Vec::new();
    push_decimal(max_len, &mut max_len_text);
    let mut id_text = Vec::new();
    push_decimal(event.id, &mut id_text);
    let [id, topic, name, data] = EVENT_FIELDS.map(str::as_bytes);
    encode_command(
        &[
            b"XADD",
            key,
            b"MAXLEN",
            b"~",
            &max_len_text,
            b"*",
            id,
            &id_text,
            topic,
            event.topic.as_bytes(),
            name,
            event.event.as_bytes(),
            data,
            event.data,
        ],
        out,
    );
}

/// A pushloop event read back from a stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEvent {
    /// The id Redis gave the entry: where the next `XREAD` resumes.
    pub stream_id: StreamId,
    /// The event id.
    pub id: u64,
    /// The topic.
    pub topic: String,
    /// The event name.
    pub event: String,
    /// The payload.
    pub data: Vec<u8>,
}

impl StoredEvent {
    /// Reads an entry written by [`encode_xadd`]; [`RespError::NotAnEvent`]
    /// when a field is missing, the id is not decimal, or the topic or event
    /// name is not UTF-8. Extra fields are ignored.
    pub fn from_entry(entry: StreamEntry) -> Result<StoredEvent, RespError> {
        let [mut id, mut topic, mut event, mut data] = [None, None, None, None];
        let [id_name, topic_name, event_name, data_name] = EVENT_FIELDS.map(str::as_bytes);
        for (field, value) in entry.fields {
            let slot = match field.as_slice() {
                name if name == id_name => &mut id,
                name if name == topic_name => &mut topic,
                name if name == event_name => &mut event,
                name if name == data_name => &mut data,
                _ => continue,
            };
            slot.get_or_insert(value);
        }
        let text = |value: Option<Vec<u8>>| {
            value
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .ok_or(RespError::NotAnEvent)
        };
        Ok(StoredEvent {
            stream_id: entry.id,
            id: id
                .as_deref()
                .and_then(parse_u64)
                .ok_or(RespError::NotAnEvent)?,
            topic: text(topic)?,
            event: text(event)?,
            data: data.ok_or(RespError::NotAnEvent)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse;
    use super::*;
    use alloc::borrow::ToOwned;
    use alloc::vec;

    fn reply(wire: &[u8]) -> Reply {
        match parse(wire) {
            Ok(Some((reply, used))) if used == wire.len() => reply,
            other => panic!("{other:?}"),
        }
    }

    fn id(ms: u64, seq: u64) -> StreamId {
        StreamId { ms, seq }
    }

    fn fields(pairs: &[(&str, &str)]) -> Vec<(Vec<u8>, Vec<u8>)> {
        pairs
            .iter()
            .map(|(f, v)| (f.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect()
    }

    /// The XREAD example of redis.io's XREAD page (RESP2), two entries of
    /// `mystream`.
    const XREAD_EXAMPLE: &[u8] = b"*1\r\n*2\r\n$8\r\nmystream\r\n*2\r\n\
        *2\r\n$15\r\n1526984818136-0\r\n*6\r\n$8\r\nduration\r\n$4\r\n1532\r\n\
        $10\r\nevent-type\r\n$1\r\n5\r\n$7\r\nuser-id\r\n$7\r\n7782813\r\n\
        *2\r\n$15\r\n1526999352406-0\r\n*6\r\n$8\r\nduration\r\n$3\r\n812\r\n\
        $10\r\nevent-type\r\n$1\r\n9\r\n$7\r\nuser-id\r\n$6\r\n388234\r\n";

    fn example_entries() -> Vec<StreamEntry> {
        vec![
            StreamEntry {
                id: id(1526984818136, 0),
                fields: fields(&[
                    ("duration", "1532"),
                    ("event-type", "5"),
                    ("user-id", "7782813"),
                ]),
            },
            StreamEntry {
                id: id(1526999352406, 0),
                fields: fields(&[
                    ("duration", "812"),
                    ("event-type", "9"),
                    ("user-id", "388234"),
                ]),
            },
        ]
    }

    fn mystream() -> StreamEntries {
        StreamEntries {
            key: b"mystream".to_vec(),
            entries: example_entries(),
        }
    }

    #[test]
    fn reads_the_xread_example() {
        let streams = read_entries(reply(XREAD_EXAMPLE)).unwrap();
        assert_eq!(streams, [mystream()]);
        assert_eq!(
            streams[0].entries[1].field(b"user-id"),
            Some(&b"388234"[..])
        );
        assert_eq!(streams[0].entries[1].field(b"missing"), None);
    }

    #[test]
    fn reads_the_resp3_xread_map() {
        // The same reply after HELLO 3: the outer array of pairs is a map.
        let mut wire = b"%1\r\n$8\r\nmystream\r\n".to_vec();
        wire.extend_from_slice(&XREAD_EXAMPLE[b"*1\r\n*2\r\n$8\r\nmystream\r\n".len()..]);
        let streams = read_entries(reply(&wire)).unwrap();
        assert_eq!(streams, [mystream()]);
    }

    #[test]
    fn xread_timeout_is_no_entries() {
        assert_eq!(read_entries(reply(b"*-1\r\n")), Ok(vec![]));
        assert_eq!(read_entries(reply(b"_\r\n")), Ok(vec![]));
    }

    #[test]
    fn reads_xrange_entries() {
        let inner = &XREAD_EXAMPLE[b"*1\r\n*2\r\n$8\r\nmystream\r\n".len()..];
        assert_eq!(range_entries(reply(inner)), Ok(example_entries()));
        assert_eq!(range_entries(reply(b"*0\r\n")), Ok(vec![]));
    }

    #[test]
    fn refuses_replies_of_the_wrong_shape() {
        let wrong: &[&[u8]] = &[
            b"-ERR no such key\r\n",
            b"+OK\r\n",
            b"*1\r\n:1\r\n",
            // An entry of three parts, an id that is not ms-seq, an odd field list,
            // a field that is not a bulk string.
            b"*1\r\n*3\r\n$3\r\n1-0\r\n*0\r\n*0\r\n",
            b"*1\r\n*2\r\n$3\r\n1_0\r\n*0\r\n",
            b"*1\r\n*2\r\n$2\r\n1-\r\n*0\r\n",
            b"*1\r\n*2\r\n$3\r\n1-0\r\n*1\r\n$1\r\na\r\n",
            b"*1\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\na\r\n:1\r\n",
            b"*1\r\n*2\r\n$3\r\n1-0\r\n$0\r\n\r\n",
        ];
        for wire in wrong {
            assert_eq!(
                range_entries(reply(wire)),
                Err(RespError::UnexpectedReply),
                "{wire:?}"
            );
        }
        let wrong_xread: &[&[u8]] = &[
            b"-ERR\r\n",
            b"*1\r\n*1\r\n$1\r\nk\r\n",
            b"*1\r\n*2\r\n:1\r\n*0\r\n",
            b"*1\r\n:1\r\n",
            b"%1\r\n$1\r\nk\r\n:1\r\n",
        ];
        for wire in wrong_xread {
            assert_eq!(
                read_entries(reply(wire)),
                Err(RespError::UnexpectedReply),
                "{wire:?}"
            );
        }
    }

    #[test]
    fn stream_ids_parse_strictly_and_order_as_redis_does() {
        assert_eq!(StreamId::parse(b"0-0"), Some(id(0, 0)));
        assert_eq!(
            StreamId::parse(b"18446744073709551615-18446744073709551615"),
            Some(id(u64::MAX, u64::MAX))
        );
        for bad in [
            &b""[..],
            b"-",
            b"1-",
            b"-1",
            b"1-2-3",
            b"1-x",
            b"18446744073709551616-0",
            b"+1-0",
        ] {
            assert_eq!(StreamId::parse(bad), None, "{bad:?}");
        }
        assert!(id(1, 9) < id(2, 0));
        let mut out = Vec::new();
        id(1526984818136, 12).write(&mut out);
        assert_eq!(out, b"1526984818136-12");
        assert_eq!(
            added_id(reply(b"$15\r\n1526984818136-0\r\n")),
            Ok(id(1526984818136, 0))
        );
        assert_eq!(added_id(reply(b"$-1\r\n")), Err(RespError::UnexpectedReply));
    }

    #[test]
    fn an_event_round_trips_through_xadd_and_xrange() {
        let data = b"line\r\nbreak \0 and \xFF";
        let event = Event {
            id: 42,
            topic: "news",
            event: "update",
            data,
        };
        let mut command = Vec::new();
        encode_xadd(b"pushloop:events", 10_000, &event, &mut command);
        let Reply::Array(args) = reply(&command) else {
            panic!("XADD is not an array");
        };
        let args: Vec<Vec<u8>> = args
            .into_iter()
            .map(|arg| match arg {
                Reply::Bulk(bytes) => bytes,
                other => panic!("{other:?}"),
            })
            .collect();
        let expected: [&[u8]; 14] = [
            b"XADD",
            b"pushloop:events",
            b"MAXLEN",
            b"~",
            b"10000",
            b"*",
            b"id",
            b"42",
            b"topic",
            b"news",
            b"event",
            b"update",
            b"data",
            data,
        ];
        assert_eq!(args, expected);

        // What Redis would answer XRANGE with: the same fields under an id.
        let mut wire = b"*1\r\n*2\r\n$15\r\n1700000000000-5\r\n".to_vec();
        encode_command(&expected[6..], &mut wire);
        let entries = range_entries(reply(&wire)).unwrap();
        let stored = StoredEvent::from_entry(entries[0].clone()).unwrap();
        assert_eq!(
            stored,
            StoredEvent {
                stream_id: id(1700000000000, 5),
                id: 42,
                topic: "news".to_owned(),
                event: "update".to_owned(),
                data: data.to_vec(),
            }
        );
    }

    #[test]
    fn an_entry_pushloop_did_not_write_is_not_an_event() {
        let entry = |pairs: &[(&str, &[u8])]| StreamEntry {
            id: id(1, 0),
            fields: pairs
                .iter()
                .map(|(f, v)| (f.as_bytes().to_vec(), v.to_vec()))
                .collect(),
        };
        let good: [(&str, &[u8]); 5] = [
            ("id", b"1"),
            ("topic", b"t"),
            ("event", b"e"),
            ("data", b""),
            ("extra", b"ignored"),
        ];
        assert!(StoredEvent::from_entry(entry(&good)).is_ok());
        for broken in [
            entry(&good[1..]),
            entry(&[("id", b"x1"), good[1], good[2], good[3]]),
            entry(&[good[0], ("topic", b"\xFF"), good[2], good[3]]),
            entry(&[good[0], good[1], ("event", b"\xC0"), good[3]]),
            entry(&good[..3]),
        ] {
            assert_eq!(StoredEvent::from_entry(broken), Err(RespError::NotAnEvent));
        }
    }
}
