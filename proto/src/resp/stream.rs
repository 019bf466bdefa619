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
//! (the event id, decimal), `topic`, `event`, `kind` and `data`
//! (binary-safe), under the stream id `<id>-0`. [`PUBLISH_SCRIPT`] gives
//! the ids, in Redis, atomically: microseconds of Redis's clock, always
//! increasing, below 2^53 — so the same event has the same id on every node,
//! and a stream id and an event id are one number.

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

/// The largest pushloop id: 2^53 − 1, the largest integer a JavaScript
/// number (an IEEE double) holds exactly, so a browser reads every id right.
/// Ids are microseconds since the Unix epoch, so this is the year 2255.
pub const MAX_ID: u64 = (1 << 53) - 1;

/// The field names of a pushloop event in a stream, in the order written.
pub const EVENT_FIELDS: [&str; 5] = ["id", "topic", "event", "kind", "data"];

/// The Lua script that publishes one event (run with `EVALSHA` after
/// [`encode_script_load`]; Redis runs a script atomically, so no other
/// node's publish comes between its reading the clock and its `XADD`).
///
/// `KEYS[1]` is the stream; `ARGV` are `MAXLEN ~`'s count, the *floor* (the
/// newest id the publishing node has seen), then the topic, the event name,
/// the kind and the data. The event's id is Redis's clock in microseconds
/// (`TIME`), or one past the floor if that is later; the entry's stream id
/// is `<id>-0`. When Redis refuses that id — the stream already holds it or
/// a later one (another node's publish in the same microsecond, a clock
/// behind) — the script reads the stream's last id and goes one past it.
/// So ids increase in the stream, and are the same number on every node
/// that reads it. Past [`MAX_ID`] the script refuses. It answers the id, in
/// decimal (`%.0f`: Lua's numbers are doubles, exact below 2^53, and its
/// default formatting would print `1.7e+15`).
pub const PUBLISH_SCRIPT: &str = "\
local now = redis.call('TIME')
local id = math.max(tonumber(now[1]) * 1000000 + tonumber(now[2]), tonumber(ARGV[2]) + 1)
local function add(n)
  if n > 9007199254740991 then
    return nil, redis.error_reply('ERR pushloop ids would pass 2^53 - 1')
  end
  local text = string.format('%.0f', n)
  return text, redis.pcall('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], text .. '-0',
    'id', text, 'topic', ARGV[3], 'event', ARGV[4], 'kind', ARGV[5], 'data', ARGV[6])
end
local text, added = add(id)
if type(added) == 'table' and added.err then
  local info = redis.call('XINFO', 'STREAM', KEYS[1])
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then
      id = math.max(id, tonumber(string.match(info[i + 1], '^%d+')) + 1)
    end
  end
  text, added = add(id)
  if type(added) == 'table' and added.err then
    return added
  end
end
return text
";

/// Appends `SCRIPT LOAD` of [`PUBLISH_SCRIPT`]; Redis answers its SHA-1 (40
/// hex digits), the name [`encode_publish`] runs it by.
pub fn encode_script_load(out: &mut Vec<u8>) {
    encode_command(&[b"SCRIPT", b"LOAD", PUBLISH_SCRIPT.as_bytes()], out);
}

/// A pushloop event to publish: its id is Redis's to give.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event<'a> {
    /// The topic it is published to.
    pub topic: &'a str,
    /// The event name (SSE `event:`).
    pub event: &'a str,
    /// What `data` is, as the server stores it (one byte: text, JSON, bytes).
    pub kind: u8,
    /// The payload, binary-safe.
    pub data: &'a [u8],
}

/// Appends the `EVALSHA` that publishes `event` to the stream `key`, trimmed
/// to about `max_len` entries (`MAXLEN ~`: Redis trims whole macro nodes, so
/// a few more may stay, and trimming costs little), with an id above
/// `floor` (see [`PUBLISH_SCRIPT`]). `sha` is what `SCRIPT LOAD` answered.
///
/// ```
/// use pushloop_proto::resp::stream::{encode_publish, Event};
/// let mut out = Vec::new();
/// let event = Event { topic: "news", event: "message", kind: b't', data: b"hi" };
/// encode_publish(b"0123456789abcdef0123456789abcdef01234567", b"pushloop", 1000, 7, &event, &mut out);
/// assert!(out.starts_with(b"*10\r\n$7\r\nEVALSHA\r\n$40\r\n0123456789abcdef"));
/// ```
pub fn encode_publish(
    sha: &[u8],
    key: &[u8],
    max_len: u64,
    floor: u64,
    event: &Event<'_>,
    out: &mut Vec<u8>,
) {
    let mut max_len_text = Vec::new();
    push_decimal(max_len, &mut max_len_text);
    let mut floor_text = Vec::new();
    push_decimal(floor, &mut floor_text);
    encode_command(
        &[
            b"EVALSHA",
            sha,
            b"1",
            key,
            &max_len_text,
            &floor_text,
            event.topic.as_bytes(),
            event.event.as_bytes(),
            &[event.kind],
            event.data,
        ],
        out,
    );
}

/// The id [`PUBLISH_SCRIPT`] answered: decimal, at most [`MAX_ID`].
pub fn published_id(reply: Reply) -> Result<u64, RespError> {
    match reply {
        Reply::Bulk(text) => parse_u64(&text)
            .filter(|id| *id <= MAX_ID)
            .ok_or(RespError::UnexpectedReply),
        _ => Err(RespError::UnexpectedReply),
    }
}

/// A pushloop event read back from a stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEvent {
    /// The event id, which is also the entry's stream id (`<id>-0`).
    pub id: u64,
    /// The topic.
    pub topic: String,
    /// The event name.
    pub event: String,
    /// What `data` is, as the server stored it.
    pub kind: u8,
    /// The payload.
    pub data: Vec<u8>,
}

impl StoredEvent {
    /// Reads an entry written by [`PUBLISH_SCRIPT`]. [`RespError::NotAnEvent`]
    /// when a field of [`EVENT_FIELDS`] is missing, the topic or event name
    /// is not UTF-8, the kind is not one byte, or the stream id is not
    /// `<id>-0` with the `id` field's value and at most [`MAX_ID`]: an entry
    /// another program added (with `XADD … *`, say) is not taken for an
    /// event, since its id could not be the same on every node. Extra fields
    /// are ignored.
    pub fn from_entry(entry: StreamEntry) -> Result<StoredEvent, RespError> {
        let [mut id, mut topic, mut event, mut kind, mut data] = [None, None, None, None, None];
        let [id_name, topic_name, event_name, kind_name, data_name] =
            EVENT_FIELDS.map(str::as_bytes);
        for (field, value) in entry.fields {
            let slot = match field.as_slice() {
                name if name == id_name => &mut id,
                name if name == topic_name => &mut topic,
                name if name == event_name => &mut event,
                name if name == kind_name => &mut kind,
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
        let id = id
            .as_deref()
            .and_then(parse_u64)
            .filter(|id| *id == entry.id.ms && entry.id.seq == 0 && *id <= MAX_ID)
            .ok_or(RespError::NotAnEvent)?;
        let kind = match kind.as_deref() {
            Some(&[kind]) => kind,
            _ => return Err(RespError::NotAnEvent),
        };
        Ok(StoredEvent {
            id,
            topic: text(topic)?,
            event: text(event)?,
            kind,
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
    }

    #[test]
    fn a_published_id_is_decimal_and_below_2_to_the_53() {
        assert_eq!(
            published_id(reply(b"$16\r\n1700000000000123\r\n")),
            Ok(1_700_000_000_000_123)
        );
        assert_eq!(
            published_id(reply(b"$16\r\n9007199254740991\r\n")),
            Ok(MAX_ID)
        );
        for wrong in [
            &b"$16\r\n9007199254740992\r\n"[..],
            b"$3\r\n1-0\r\n",
            b"$-1\r\n",
            b":12\r\n",
            b"-NOSCRIPT No matching script\r\n",
        ] {
            assert_eq!(
                published_id(reply(wrong)),
                Err(RespError::UnexpectedReply),
                "{wrong:?}"
            );
        }
    }

    #[test]
    fn an_event_round_trips_through_the_script_and_xrange() {
        let data = b"line\r\nbreak \0 and \xFF";
        let event = Event {
            topic: "news",
            event: "update",
            kind: b'b',
            data,
        };
        let sha = b"e0e1f9fabfc9d4800c877a703b823ac0578ff831";
        let mut command = Vec::new();
        encode_publish(sha, b"pushloop:events", 10_000, 41, &event, &mut command);
        let Reply::Array(args) = reply(&command) else {
            panic!("EVALSHA is not an array");
        };
        let args: Vec<Vec<u8>> = args
            .into_iter()
            .map(|arg| match arg {
                Reply::Bulk(bytes) => bytes,
                other => panic!("{other:?}"),
            })
            .collect();
        let expected: [&[u8]; 10] = [
            b"EVALSHA",
            sha,
            b"1",
            b"pushloop:events",
            b"10000",
            b"41",
            b"news",
            b"update",
            b"b",
            data,
        ];
        assert_eq!(args, expected);

        // What Redis answers XRANGE with once the script added it as 42.
        let mut wire = b"*1\r\n*2\r\n$4\r\n42-0\r\n".to_vec();
        encode_command(
            &[
                b"id", b"42", b"topic", b"news", b"event", b"update", b"kind", b"b", b"data", data,
            ],
            &mut wire,
        );
        let entries = range_entries(reply(&wire)).unwrap();
        let stored = StoredEvent::from_entry(entries[0].clone()).unwrap();
        assert_eq!(
            stored,
            StoredEvent {
                id: 42,
                topic: "news".to_owned(),
                event: "update".to_owned(),
                kind: b'b',
                data: data.to_vec(),
            }
        );
    }

    #[test]
    fn the_script_loads_by_name_and_fields_match_what_it_writes() {
        let mut out = Vec::new();
        encode_script_load(&mut out);
        assert!(out.starts_with(b"*3\r\n$6\r\nSCRIPT\r\n$4\r\nLOAD\r\n"));
        for field in EVENT_FIELDS {
            assert!(
                PUBLISH_SCRIPT.contains(&format!("'{field}', ")),
                "{field} is written by the script"
            );
        }
        assert!(PUBLISH_SCRIPT.contains(&format!("n > {MAX_ID}")));
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
        let good: [(&str, &[u8]); 6] = [
            ("id", b"1"),
            ("topic", b"t"),
            ("event", b"e"),
            ("kind", b"t"),
            ("data", b""),
            ("extra", b"ignored"),
        ];
        assert!(StoredEvent::from_entry(entry(&good)).is_ok());
        let foreign = StreamEntry {
            id: id(1, 1),
            ..entry(&good)
        };
        let beyond = StreamEntry {
            id: id(MAX_ID + 1, 0),
            ..entry(&[
                ("id", b"9007199254740992"),
                good[1],
                good[2],
                good[3],
                good[4],
            ])
        };
        for broken in [
            entry(&good[1..]),
            entry(&[("id", b"x1"), good[1], good[2], good[3], good[4]]),
            entry(&[("id", b"2"), good[1], good[2], good[3], good[4]]),
            entry(&[good[0], ("topic", b"\xFF"), good[2], good[3], good[4]]),
            entry(&[good[0], good[1], ("event", b"\xC0"), good[3], good[4]]),
            entry(&[good[0], good[1], good[2], ("kind", b"tt"), good[4]]),
            entry(&[good[0], good[1], good[2], good[4]]),
            entry(&good[..4]),
            foreign,
            beyond,
        ] {
            assert_eq!(StoredEvent::from_entry(broken), Err(RespError::NotAnEvent));
        }
    }
}
