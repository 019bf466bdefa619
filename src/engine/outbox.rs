//! The outbox: every byte a connection owes its peer, the one admission path
//! it goes through, the fan-out line, and the writes.
//!
//! Writes go straight to the socket at the end of each loop turn; only what
//! the kernel did not take stays queued, and WRITABLE interest is registered
//! only while something does. Bytes built for one connection are appended to
//! an owned tail buffer (no allocation per message); bytes shared by many
//! (a published event, a broadcast) are queued as `Arc<[u8]>`, so one
//! encoding serves every queue. An emptied queue releases its memory: an idle
//! connection owns no buffer.
//!
//! **Chunks know their kind.** [`Kind::Protocol`] bytes — response heads and
//! bodies, control frames, an event stream's head — keep the conversation
//! well-formed and are never dropped. [`Kind::Data`] bytes — messages and
//! events — are what the slow-reader policy may drop.
//!
//! **One admission path, two answers.** Data is admitted while the queue
//! holds at most `max_queued_bytes` (an empty queue takes any one message);
//! past it the slow-reader policy closes the connection (`1008`) or drops the
//! message. Protocol bytes are always admitted — they answer the peer's own
//! input — and instead, once a queue is past its bound, the loop stops
//! *reading* that connection until it drains below half the bound. A peer
//! that floods requests or pings without reading the answers is paced by its
//! own TCP window, and its queue stays under the bound plus one answer. The
//! bound is `max_queued_answer_bytes` for an HTTP connection (small: it is
//! only how far a pipelining client may run ahead of its reading) and
//! `max_queued_bytes` for a WebSocket
//! ([`input_pause_bytes`](crate::engine::connection::Connection::input_pause_bytes)).
//!
//! **The fan-out line.** Bytes for one connection (an answer, an echo, a
//! pong) are written at the end of the turn ([`Core::flush_dirty`]), or
//! right after the read that made them once they reach 32 KiB (the loop's
//! `EARLY_FLUSH_BYTES`: large answers leave while still in the cache). Shared
//! bytes wait in a first-in-first-out line that is written a slice at a time
//! ([`Core::flush_fanout`]), with input read between slices: events
//! published meanwhile join the queues still waiting, so under load one
//! `writev` carries several events to a follower instead of one `writev` per
//! event. Once some queue in the line is deeper than [`FANOUT_DEEP_QUEUE`]
//! (or a quarter of `max_queued_bytes`), the whole line is written before the
//! loop reads again, so a flooding publisher waits on TCP instead of pushing
//! followers towards the slow-reader limit.
//!
//! **Compressed once.** With permessage-deflate (RFC 7692), a message going
//! to many WebSockets (a `Fanout`) is compressed once, on the first socket
//! that needs it, by the loop's shared compressor: every socket without
//! context takeover (the shared mode) gets the same bytes. A socket that
//! compresses with a state of its own (context takeover, or a window smaller
//! than the shared frame's) has its session compress the message for it
//! alone, once it is admitted, so its context never holds a message it did
//! not send.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::sync::Arc;

use mio::{Interest, Token};

use crate::engine::last_write::LastWrite;
use crate::engine::stats::{Ending, Transport};
use crate::engine::trace::Outgoing;
use crate::engine::Core;
use crate::feeds::{Direct, Payload};
use crate::limits::SlowReader;
use crate::ws::close::CloseCode;
#[cfg(feature = "deflate")]
use crate::ws::deflate::SendMode;
#[cfg(feature = "deflate")]
use crate::ws::frame::{decode_header, Role};
use crate::ws::frame::{encode_frame, OpCode, MAX_HEADER_LEN};
#[cfg(feature = "client")]
use crate::ws::session::MaskKeys;
use crate::ws::session::{Env, Session};

/// Slices gathered into one `writev` call at most.
const MAX_IOVECS: usize = 64;

/// Queued bytes on a connection in the fan-out line past which the whole
/// line is written at once (see the module doc).
pub const FANOUT_DEEP_QUEUE: usize = 64 * 1024;

/// What a chunk of queued bytes is, for the slow-reader policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Heads, bodies of answers, control frames: never dropped.
    Protocol,
    /// Messages and events: the slow-reader policy may drop them.
    Data,
}

/// Owned buffers and emptied queues kept for reuse across connections (most
/// recent first). Bounded in count and bytes, so what it keeps is the loop's,
/// not a connection's: at most 2 MiB of buffers (`MAX_SPARE_BYTES`) and 64
/// small queues (`MAX_SPARE_QUEUE_CHUNKS`). A busy loop
/// then neither regrows a buffer by copying nor has freed pages faulted back
/// in (16 KiB echo: page faults went from 3.6 % of server CPU to 0 %), and a
/// connection's queue, let go when it drains, comes back without a trip to
/// the allocator.
///
/// Output is written at the end of the loop's turn, so a turn in which 64
/// sockets echo holds 64 buffers at once; with 16 kept, 48 of them started
/// empty every turn and regrew by doubling (a 20 B echo spent ~100 of its
/// ~1 900 user-space instructions per message in `realloc` and the copies,
/// measured with callgrind). Hence 64 kept, and a first capacity that holds a
/// typical turn's output without regrowing.
#[derive(Default)]
pub struct Spare {
    buffers: Vec<Vec<u8>>,
    /// The capacity of `buffers` together.
    bytes: usize,
    /// Boxed on purpose: the allocation is what is kept, since an
    /// [`Outbox`] holds its queue boxed.
    #[allow(clippy::vec_box)]
    queues: Vec<Box<Queue>>,
}

/// Buffers (and queues) a [`Spare`] keeps at most: one per socket of a
/// busy turn.
const MAX_SPARE_BUFFERS: usize = 64;
/// The bytes of buffer a [`Spare`] keeps at most (what 16 buffers of
/// [`MAX_SPARE_CAPACITY`] held before the count went up).
const MAX_SPARE_BYTES: usize = 2 * 1024 * 1024;
/// The largest buffer a [`Spare`] keeps (a larger one goes back to the allocator).
const MAX_SPARE_CAPACITY: usize = 128 * 1024;
/// The most chunks a kept queue has room for. A queue that grew for a backlog
/// (a slow reader's thousands of events, 32 bytes of queue each) goes back to
/// the allocator instead of staying with the loop; an echo's or an answer's
/// burst needs a few. Kept queues then hold at most 64 × 64 × 32 B = 128 KiB.
const MAX_SPARE_QUEUE_CHUNKS: usize = 64;
/// The capacity of a new buffer: a turn's output for one socket in the common
/// case (16 echoes of a small message, an HTTP answer) without regrowing.
const FIRST_CAPACITY: usize = 1024;

impl Spare {
    /// An empty buffer, grown by an earlier use if one is kept.
    fn take(&mut self) -> Vec<u8> {
        match self.buffers.pop() {
            Some(buffer) => {
                self.bytes -= buffer.capacity();
                buffer
            }
            None => Vec::with_capacity(FIRST_CAPACITY),
        }
    }

    /// Keeps a written buffer for the next use, if there is room and it is not too big.
    fn give(&mut self, mut buffer: Vec<u8>) {
        let capacity = buffer.capacity();
        if capacity > 0
            && capacity <= MAX_SPARE_CAPACITY
            && self.buffers.len() < MAX_SPARE_BUFFERS
            && self.bytes + capacity <= MAX_SPARE_BYTES
        {
            buffer.clear();
            self.bytes += capacity;
            self.buffers.push(buffer);
        }
    }

    /// An empty queue, a kept one if there is.
    fn take_queue(&mut self) -> Box<Queue> {
        self.queues.pop().unwrap_or_default()
    }

    /// Keeps a drained queue (its buffers went back chunk by chunk as they
    /// were written), unless it grew for a backlog.
    fn give_queue(&mut self, queue: Box<Queue>) {
        debug_assert!(
            queue.chunks.is_empty() && queue.queued == 0 && queue.front_written == 0,
            "only a drained queue is kept"
        );
        if self.queues.len() < MAX_SPARE_BUFFERS
            && queue.chunks.capacity() <= MAX_SPARE_QUEUE_CHUNKS
        {
            self.queues.push(queue);
        }
    }
}

enum Bytes {
    Owned(Vec<u8>),
    Shared(Arc<[u8]>),
}

struct Chunk {
    kind: Kind,
    bytes: Bytes,
}

impl Chunk {
    fn bytes(&self) -> &[u8] {
        match &self.bytes {
            Bytes::Owned(bytes) => bytes,
            Bytes::Shared(bytes) => bytes,
        }
    }
}

/// A FIFO of outgoing bytes with a running total (the browser's `bufferedAmount`).
///
/// Empty, it is one null pointer: the queue is boxed while it holds bytes and
/// let go when it drains, so an idle connection keeps 8 bytes for it instead
/// of 48 (40 bytes of every idle connection). A busy one takes a drained
/// queue back from the loop's [`Spare`] for its next burst of output.
#[derive(Default)]
pub struct Outbox {
    queue: Option<Box<Queue>>,
}

#[derive(Default)]
struct Queue {
    chunks: VecDeque<Chunk>,
    /// Bytes of the front chunk already written.
    front_written: usize,
    queued: usize,
}

/// What one flush did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flushed {
    /// Bytes the sink took.
    pub written: usize,
    /// The outbox is empty now.
    pub drained: bool,
}

impl Outbox {
    /// Bytes waiting to be written.
    pub fn len(&self) -> usize {
        self.queue.as_ref().map_or(0, |queue| queue.queued)
    }

    /// Nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `len` more bytes of data may be queued (the slow-reader rule):
    /// an empty queue takes any one message; otherwise the total must stay
    /// within `max_queued`.
    pub fn admits(&self, len: usize, max_queued: usize) -> bool {
        admits(self.len(), len, max_queued)
    }

    /// Appends through `encode`, which writes into the owned tail buffer (a
    /// spare one when the tail is not an owned chunk of the same kind).
    /// Returns the bytes appended. Writing nothing leaves the queue as it
    /// was (a WebSocket's input step usually writes nothing).
    ///
    /// Protocol bytes are written straight behind a data tail too, and moved
    /// to a chunk of their own only if there are any: a WebSocket's input
    /// step runs behind the previous message's echo and almost always writes
    /// nothing, and taking and giving back a spare buffer for that nothing
    /// was ~45 instructions per echoed message. What moves is small (a pong,
    /// a Close).
    pub fn push_with(
        &mut self,
        kind: Kind,
        spare: &mut Spare,
        encode: impl FnOnce(&mut Vec<u8>),
    ) -> usize {
        if let Some(queue) = self.queue.as_mut() {
            if let Some(Chunk {
                kind: tail_kind,
                bytes: Bytes::Owned(tail),
            }) = queue.chunks.back_mut()
            {
                let tail_kind = *tail_kind;
                if tail_kind == kind || kind == Kind::Protocol {
                    let before = tail.len();
                    encode(tail);
                    let added = tail.len() - before;
                    queue.queued += added;
                    if added > 0 && tail_kind != kind {
                        // Kinds never share a buffer: the slow-reader policy
                        // drops data chunks whole.
                        let mut own = spare.take();
                        own.extend_from_slice(&tail[before..]);
                        tail.truncate(before);
                        queue.chunks.push_back(Chunk {
                            kind,
                            bytes: Bytes::Owned(own),
                        });
                    }
                    return added;
                }
            }
        }
        let mut buffer = spare.take();
        encode(&mut buffer);
        let added = buffer.len();
        if added == 0 {
            spare.give(buffer);
            return 0;
        }
        let queue = self.queue.get_or_insert_with(|| spare.take_queue());
        queue.queued += added;
        queue.chunks.push_back(Chunk {
            kind,
            bytes: Bytes::Owned(buffer),
        });
        added
    }

    /// The last `len` bytes queued, when they are all in the owned tail
    /// buffer (as right after [`Outbox::push_with`] added them); for a trace.
    pub fn tail(&self, len: usize) -> &[u8] {
        match self.queue.as_ref().and_then(|queue| queue.chunks.back()) {
            Some(Chunk {
                bytes: Bytes::Owned(tail),
                ..
            }) => tail
                .get(tail.len().saturating_sub(len)..)
                .unwrap_or_default(),
            _ => &[],
        }
    }

    /// Appends bytes shared with other queues.
    pub fn push_shared(&mut self, kind: Kind, bytes: Arc<[u8]>) {
        if bytes.is_empty() {
            return;
        }
        let queue = self.queue.get_or_insert_with(Box::default);
        queue.queued += bytes.len();
        queue.chunks.push_back(Chunk {
            kind,
            bytes: Bytes::Shared(bytes),
        });
    }

    /// Writes as much as `sink` takes. Written owned buffers go to `spare`;
    /// a drained queue is let go (an idle connection owns no memory for it).
    pub fn flush_into(&mut self, sink: &mut impl Write, spare: &mut Spare) -> io::Result<Flushed> {
        let Some(queue) = self.queue.as_mut() else {
            return Ok(Flushed {
                written: 0,
                drained: true,
            });
        };
        let flushed = queue.flush_into(sink, spare);
        if queue.chunks.is_empty() {
            if let Some(queue) = self.queue.take() {
                spare.give_queue(queue);
            }
        }
        flushed
    }

    /// Drops every data chunk the socket has not started on, keeping protocol
    /// chunks (a response head, control frames) and the chunk being written.
    /// Chunks hold whole frames and events, so what is left still ends on a
    /// frame boundary and a Close frame can follow it. Returns the bytes
    /// dropped.
    pub fn drop_unstarted_data(&mut self) -> usize {
        let Some(queue) = self.queue.as_mut() else {
            return 0;
        };
        let started = usize::from(queue.front_written > 0);
        let mut dropped = 0;
        let mut index = 0;
        queue.chunks.retain(|chunk| {
            let keep = index < started || chunk.kind == Kind::Protocol;
            index += 1;
            if !keep {
                dropped += chunk.bytes().len();
            }
            keep
        });
        queue.queued -= dropped;
        if queue.chunks.is_empty() {
            self.queue = None;
        }
        dropped
    }

    /// Drops everything queued (the peer is gone).
    pub fn clear(&mut self) {
        self.queue = None;
    }
}

impl Queue {
    fn flush_into(&mut self, sink: &mut impl Write, spare: &mut Spare) -> io::Result<Flushed> {
        let mut written_total = 0;
        while !self.chunks.is_empty() {
            let written = {
                let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
                let mut count = 0;
                for (i, chunk) in self.chunks.iter().take(MAX_IOVECS).enumerate() {
                    let bytes = chunk.bytes();
                    slices[i] = IoSlice::new(if i == 0 {
                        &bytes[self.front_written..]
                    } else {
                        bytes
                    });
                    count += 1;
                }
                // One slice (an echo's answers share one buffer) goes out with
                // `send`, not `writev`: the same bytes without the kernel's
                // vector import and VFS layer (`vfs_writev` alone was ~1 % of
                // a 20 B echo's samples; µWebSockets uses `send` too).
                let result = match count {
                    1 => sink.write(&slices[0]),
                    _ => sink.write_vectored(&slices[..count]),
                };
                match result {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        return Ok(Flushed {
                            written: written_total,
                            drained: false,
                        })
                    }
                    Err(e) => return Err(e),
                }
            };
            written_total += written;
            self.consume(written, spare);
        }
        Ok(Flushed {
            written: written_total,
            drained: true,
        })
    }

    fn consume(&mut self, mut written: usize, spare: &mut Spare) {
        self.queued -= written;
        while written > 0 {
            let Some(front) = self.chunks.front() else {
                break;
            };
            let left = front.bytes().len() - self.front_written;
            if written < left {
                self.front_written += written;
                return;
            }
            written -= left;
            self.front_written = 0;
            if let Some(Chunk {
                bytes: Bytes::Owned(buffer),
                ..
            }) = self.chunks.pop_front()
            {
                spare.give(buffer);
            }
        }
    }
}

/// The slow-reader rule: with `queued` bytes waiting, may `len` more be
/// queued? An empty queue takes any one message; otherwise the total must
/// stay within `max_queued`.
pub(crate) fn admits(queued: usize, len: usize, max_queued: usize) -> bool {
    queued == 0 || queued.saturating_add(len) <= max_queued
}

/// Connections with shared bytes to write, in the order they got them.
#[derive(Default)]
pub struct FanoutLine {
    line: VecDeque<Token>,
    /// The deepest queue seen on a connection joining the line since it was
    /// last empty (an upper bound of what is queued in it now).
    deepest: usize,
}

impl FanoutLine {
    /// Connections waiting.
    pub fn len(&self) -> usize {
        self.line.len()
    }

    /// Nobody waits.
    pub fn is_empty(&self) -> bool {
        self.line.is_empty()
    }
}

/// A WebSocket data message (RFC 6455 §5.6), borrowed for the call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Message<'a> {
    /// A text message: always valid UTF-8 (RFC 6455 §8.1 is checked first).
    Text(&'a str),
    /// A binary message.
    Binary(&'a [u8]),
}

impl<'a> Message<'a> {
    /// The opcode and payload of the frame that carries it (§5.2, §5.6).
    pub fn frame(self) -> (OpCode, &'a [u8]) {
        match self {
            Message::Text(text) => (OpCode::Text, text.as_bytes()),
            Message::Binary(bytes) => (OpCode::Binary, bytes),
        }
    }
}

/// A WebSocket message going to many sockets: its frame, encoded once, and
/// (with permessage-deflate) where that frame compressed once is kept.
pub(crate) struct Fanout<'m> {
    /// The uncompressed frame (RFC 6455 §5.2, unmasked: §5.1).
    pub(crate) frame: &'m Arc<[u8]>,
    /// The frame compressed by the loop's shared compressor, made on first
    /// need (an event keeps it in its history entry).
    #[cfg(feature = "deflate")]
    pub(crate) deflated: &'m std::sync::OnceLock<Option<Arc<[u8]>>>,
}

/// How a message going to many reaches one connection.
pub(crate) enum Encoded {
    /// Bytes shared with other connections (a frame, an SSE event).
    Shared(Arc<[u8]>),
    /// The frame compressed once for every socket sharing the loop's
    /// compressor, and the length of the payload it stands for.
    #[cfg(feature = "deflate")]
    Deflated(Arc<[u8]>, usize),
    /// A message (here, its uncompressed frame) this socket's session
    /// compresses for it alone (RFC 7692: its own context, or a smaller
    /// window than the shared frame's).
    #[cfg(feature = "deflate")]
    Own(Arc<[u8]>),
}

impl Encoded {
    /// Bytes it queues (for a message compressed later: at most about this).
    pub(crate) fn len(&self) -> usize {
        match self {
            Encoded::Shared(bytes) => bytes.len(),
            #[cfg(feature = "deflate")]
            Encoded::Deflated(bytes, _) => bytes.len(),
            #[cfg(feature = "deflate")]
            Encoded::Own(frame) => frame.len(),
        }
    }
}

/// The opcode and payload of one of our own frames (unmasked, RFC 6455 §5.1).
#[cfg(feature = "deflate")]
fn frame_message(frame: &[u8]) -> Option<(OpCode, &[u8])> {
    let (header, header_len) = decode_header(frame, Role::Client, usize::MAX, true).ok()??;
    Some((header.opcode, frame.get(header_len..)?))
}

/// Why [`Core::send`] and the other data verbs queued nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendError {
    /// No open connection of a kind that can take this has this id (never
    /// was, already closing — RFC 6455 §5.5.1 forbids data after a Close
    /// frame — or a plain HTTP request).
    NotOpen,
    /// The connection's queue is full and the policy is `SlowReader::Drop`.
    Dropped,
    /// The queue was full and the connection is being closed (`SlowReader::Close`).
    Closing,
    /// The connection is on another loop, whose command queue is full
    /// (`Config::handle_capacity`): nothing was queued; try again later.
    Busy,
    /// The call works only for a connection of the calling loop (see
    /// `Context::subscribe`).
    OtherLoop,
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SendError::NotOpen => "no open connection with this id can take a message",
            SendError::Dropped => "the connection's write queue is full; message dropped",
            SendError::Closing => "the connection's write queue is full; closing it (1008)",
            SendError::Busy => "the connection's loop has too many commands waiting",
            SendError::OtherLoop => "the connection is on another loop",
        })
    }
}

impl std::error::Error for SendError {}

impl Core {
    // ---- Queuing ---------------------------------------------------------------

    /// Queues protocol bytes built for this connection alone (a response, a
    /// control frame, an event stream's head): never dropped, always admitted.
    /// One instance for every call site: `encode` is called through a pointer.
    pub fn push_protocol(&mut self, token: Token, encode: &dyn Fn(&mut Vec<u8>)) {
        self.push_owned(token, Kind::Protocol, encode);
    }

    /// Queues bytes built for this connection alone, of either kind.
    pub(crate) fn push_owned(&mut self, token: Token, kind: Kind, encode: &dyn Fn(&mut Vec<u8>)) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        let added = conn.outbox.push_with(kind, &mut self.spare, encode);
        self.stats.of(conn.transport).bytes_written += added as u64;
        let queued = conn.outbox.len();
        if added > 0 && self.tracing(token) {
            let mut bytes = Vec::with_capacity(added);
            encode(&mut bytes);
            self.trace_out(token, &bytes);
            debug_assert!(queued >= added);
        }
        self.mark_dirty(token);
    }

    /// Admits `len` more data bytes to a connection's queue, or applies the
    /// slow-reader policy (see the module doc).
    pub(crate) fn admit(&mut self, token: Token, len: usize) -> Result<(), SendError> {
        let limits = self.config.limits;
        let Some(conn) = self.conns.get_mut(token) else {
            return Err(SendError::NotOpen);
        };
        if conn.admits(len, limits.max_queued_bytes) {
            return Ok(());
        }
        self.stats.slow_readers += 1;
        match limits.slow_reader {
            SlowReader::Drop => {
                self.stats.dropped_messages += 1;
                Err(SendError::Dropped)
            }
            SlowReader::Close => {
                // Unsent messages and events are dropped so the close is not
                // stuck behind them; the client resumes from its cursor.
                conn.outbox.drop_unstarted_data();
                conn.ending.get_or_insert(Ending::SlowReader);
                if conn.is_open_websocket() {
                    self.close(token, CloseCode::POLICY_VIOLATION, "slow reader");
                } else {
                    // Nothing more is owed to a reader that is let go: what is
                    // left must be taken within `close_timeout`.
                    self.start_closing(token, true);
                }
                Err(SendError::Closing)
            }
        }
    }

    /// Queues data shared with other connections, under the slow-reader
    /// policy, and puts the connection in the fan-out line.
    pub(crate) fn push_shared(&mut self, token: Token, bytes: &Arc<[u8]>) -> Result<(), SendError> {
        self.admit(token, bytes.len())?;
        self.push_shared_admitted(token, Kind::Data, bytes)
    }

    /// Queues shared bytes that were already admitted (or that must go out
    /// whatever the queue holds: a shared answer, a resync notice).
    pub(crate) fn push_shared_admitted(
        &mut self,
        token: Token,
        kind: Kind,
        bytes: &Arc<[u8]>,
    ) -> Result<(), SendError> {
        let bucket = self
            .conns
            .get(token)
            .map(|conn| conn.transport)
            .ok_or(SendError::NotOpen)?;
        self.push_shared_to(token, kind, bytes, bucket);
        Ok(())
    }

    /// Queues shared bytes, counted under `bucket`, and puts the connection
    /// in the fan-out line.
    pub(crate) fn push_shared_to(
        &mut self,
        token: Token,
        kind: Kind,
        bytes: &Arc<[u8]>,
        bucket: Transport,
    ) {
        if self.tracing(token) {
            self.trace_out(token, bytes);
        }
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        conn.outbox.push_shared(kind, Arc::clone(bytes));
        self.stats.of(bucket).bytes_written += bytes.len() as u64;
        self.fanout.deepest = self.fanout.deepest.max(conn.queued_bytes());
        if !conn.in_fanout {
            conn.in_fanout = true;
            self.fanout.line.push_back(token);
        }
    }

    /// Runs `f` on a WebSocket's session with this loop's environment; the
    /// frames it writes go straight into the connection's outbox as `kind`
    /// (and into the trace). `None` if the connection is not a WebSocket.
    ///
    /// A protocol step (input, a timeout, a Close) can move the session's
    /// deadline, so the connection's timer is armed again after it; data
    /// never does (sending touches neither the heartbeat nor the closing
    /// handshake), which spares an echo ~95 instructions per message.
    pub(crate) fn ws_do<R>(
        &mut self,
        token: Token,
        kind: Kind,
        f: impl FnOnce(&mut Session, &mut Env) -> R,
    ) -> Option<R> {
        let (result, added) = self.ws_do_untraced(token, kind, f)?;
        self.trace_frames_out(token, added);
        if kind == Kind::Protocol {
            self.rearm(token);
        }
        Some(result)
    }

    /// [`Core::ws_do`] without tracing what was written (returns how many
    /// bytes it was, so the caller can trace them after what caused them) and
    /// without arming the timer: a caller stepping through a batch of input
    /// ends it with a [`Core::ws_do`] of `Kind::Protocol`, which arms it once.
    pub(crate) fn ws_do_untraced<R>(
        &mut self,
        token: Token,
        kind: Kind,
        f: impl FnOnce(&mut Session, &mut Env) -> R,
    ) -> Option<(R, usize)> {
        let Core {
            conns,
            spare,
            websocket,
            now,
            stats,
            config,
            #[cfg(feature = "client")]
            outbound,
            #[cfg(feature = "deflate")]
            deflate,
            ..
        } = self;
        let conn = conns.get_mut(token)?;
        let transport = conn.transport;
        let (ws, outbox) = conn.websocket_and_outbox()?;
        // Past half its bound the queue is not being read fast enough: the
        // session answers only the latest of a burst of pings.
        let backed_up = outbox.len() >= config.limits.max_queued_bytes / 2;
        // An outbound socket (a client) plays by its link's rules and masks
        // with the loop's keys; the server's own sockets need no keys.
        #[cfg(feature = "client")]
        let (rules, keys) = outbound.session_parts(token, ws.session.role(), websocket);
        #[cfg(not(feature = "client"))]
        let rules = &*websocket;
        let mut result = None;
        let added = outbox.push_with(kind, spare, |out| {
            let mut env = Env {
                now: *now,
                config: rules,
                out,
                #[cfg(feature = "client")]
                keys: keys.map(|keys| keys as &mut dyn MaskKeys),
                #[cfg(not(feature = "client"))]
                keys: None,
                backed_up,
                #[cfg(feature = "deflate")]
                deflate,
            };
            result = Some(f(&mut ws.session, &mut env));
        });
        #[cfg(feature = "client")]
        if outbound.key_failure(token) {
            // RFC 6455 §5.3: no frame leaves with a key that could be
            // guessed; the connection is dropped and the link ends.
            conn.outbox.clear();
            conn.ending.get_or_insert(Ending::Reset);
            self.dead.push(token);
            return result.map(|result| (result, 0));
        }
        stats.of(transport).bytes_written += added as u64;
        if added > 0 {
            self.mark_dirty(token);
        }
        result.map(|result| (result, added))
    }

    /// Traces the last `added` bytes queued for a WebSocket as frames.
    pub(crate) fn trace_frames_out(&mut self, token: Token, added: usize) {
        if added == 0 || !self.tracing(token) {
            return;
        }
        let Some(conn) = self.conns.get(token) else {
            return;
        };
        let bytes = conn.outbox.tail(added).to_vec();
        self.trace(|tracer, now| tracer.bytes_out(now, token, Outgoing::Frames, &bytes));
    }

    /// Sends a message to one connection alone, under the slow-reader policy:
    /// a WebSocket gets a frame (its session compresses it when
    /// permessage-deflate was negotiated); an event stream an SSE event of type
    /// `message` (bytes in base64); a held long-poll is answered with it now
    /// (a JSON array of one `{"event":"message","data":…}`). No id, no topic:
    /// it is not a feed event, and no cursor can bring it back.
    pub fn send(&mut self, token: Token, message: Message) -> Result<(), SendError> {
        let Some(conn) = self.conns.get(token) else {
            return Err(SendError::NotOpen);
        };
        if conn.is_open_websocket() {
            let (opcode, payload) = message.frame();
            return self.send_payload(token, opcode, payload, false);
        }
        let streaming = conn.is_event_stream();
        let polling = conn.is_held_long_poll();
        if !streaming && !polling {
            return Err(SendError::NotOpen);
        }
        let payload = match message {
            Message::Text(text) => Payload::Text(text),
            Message::Binary(bytes) => Payload::Binary(bytes),
        };
        let direct = Direct::encode(payload).map_err(|_| SendError::NotOpen)?;
        if streaming {
            self.admit(token, direct.sse.len())?;
            self.push_owned(token, Kind::Data, &|out| out.extend_from_slice(&direct.sse));
        } else {
            let mut body = Vec::with_capacity(direct.json.len() + 2);
            body.push(b'[');
            body.extend_from_slice(&direct.json);
            body.push(b']');
            self.answer_long_poll_with(token, &body);
        }
        Ok(())
    }

    /// [`Core::send`] to an open WebSocket by opcode and payload; `admitted`:
    /// the queue was checked already.
    fn send_payload(
        &mut self,
        token: Token,
        opcode: OpCode,
        payload: &[u8],
        admitted: bool,
    ) -> Result<(), SendError> {
        if !self
            .conns
            .get(token)
            .is_some_and(|conn| conn.is_open_websocket())
        {
            return Err(SendError::NotOpen);
        }
        if !admitted {
            self.admit(token, payload.len())?;
        }
        match self.ws_do(token, Kind::Data, |session, env| {
            session.send(opcode, payload, env)
        }) {
            Some(Ok(())) => Ok(()),
            _ => Err(SendError::NotOpen),
        }
    }

    /// Sends a message to every open WebSocket but `except`: one frame,
    /// encoded once (and compressed once) and shared by every queue. Returns
    /// how many queued it.
    pub fn broadcast(&mut self, except: Option<Token>, message: Message) -> usize {
        let (opcode, payload) = message.frame();
        let mut frame = Vec::with_capacity(payload.len() + MAX_HEADER_LEN);
        // RFC 6455 §5.1: a server's frames are not masked.
        encode_frame(&mut frame, true, opcode, None, payload);
        let frame: Arc<[u8]> = frame.into();
        #[cfg(feature = "deflate")]
        let deflated = std::sync::OnceLock::new();
        let fanout = Fanout {
            frame: &frame,
            #[cfg(feature = "deflate")]
            deflated: &deflated,
        };
        let mut recipients = std::mem::take(&mut self.recipients);
        recipients.extend(
            self.conns
                .iter_mut()
                .filter(|(token, conn)| Some(*token) != except && conn.takes_shared_frames())
                .map(|(token, _)| token),
        );
        let mut sent = 0;
        for &token in &recipients {
            let Some(encoded) = self.ws_encoding(token, &fanout) else {
                continue;
            };
            if self.push_encoded(token, encoded, false).is_ok() {
                sent += 1;
            }
        }
        recipients.clear();
        self.recipients = recipients;
        sent
    }

    /// How a message going to many reaches this WebSocket: the shared frame,
    /// compressed or not, or compressed by its own session. `None` if it is
    /// not an open WebSocket (RFC 6455 §5.5.1: no data after our Close).
    pub(crate) fn ws_encoding(&mut self, token: Token, message: &Fanout) -> Option<Encoded> {
        let ws = self.conns.get(token)?.open_websocket()?;
        #[cfg(not(feature = "deflate"))]
        let _ = ws;
        #[cfg(feature = "deflate")]
        {
            // The frame the shared compressor makes suits the sockets whose
            // window is the one it was made for (RFC 7692 §7.1.2.1).
            let shared_full_window = self.config.deflate.is_some_and(|deflate| {
                deflate.max_window_bits >= crate::ws::deflate::MAX_WINDOW_BITS
            });
            match ws.session.send_mode() {
                SendMode::Off => {}
                SendMode::Shared { full_window } if full_window == shared_full_window => {
                    let deflated = message.deflated.get_or_init(|| {
                        let (opcode, payload) = frame_message(message.frame)?;
                        self.deflate
                            .compress_frame(full_window, opcode, payload)
                            .map(Arc::from)
                    });
                    if let Some((deflated, (_, payload))) =
                        deflated.as_ref().zip(frame_message(message.frame))
                    {
                        return Some(Encoded::Deflated(Arc::clone(deflated), payload.len()));
                    }
                }
                SendMode::Shared { .. } | SendMode::Own => {
                    return Some(Encoded::Own(Arc::clone(message.frame)));
                }
            }
        }
        Some(Encoded::Shared(Arc::clone(message.frame)))
    }

    /// Queues a message going to many for one connection, under the
    /// slow-reader policy unless `admitted` (the queue was checked already).
    pub(crate) fn push_encoded(
        &mut self,
        token: Token,
        encoded: Encoded,
        admitted: bool,
    ) -> Result<(), SendError> {
        match encoded {
            Encoded::Shared(bytes) if admitted => {
                self.push_shared_admitted(token, Kind::Data, &bytes)
            }
            Encoded::Shared(bytes) => self.push_shared(token, &bytes),
            #[cfg(feature = "deflate")]
            Encoded::Deflated(bytes, before) => {
                if !admitted {
                    self.admit(token, bytes.len())?;
                }
                self.push_shared_admitted(token, Kind::Data, &bytes)?;
                let after = frame_message(&bytes).map_or(0, |(_, payload)| payload.len());
                self.deflate.counters.count_sent(before, after);
                Ok(())
            }
            #[cfg(feature = "deflate")]
            Encoded::Own(frame) => {
                let (opcode, payload) = frame_message(&frame).ok_or(SendError::NotOpen)?;
                self.send_payload(token, opcode, payload, admitted)
            }
        }
    }

    /// Lists a connection for the end-of-turn flush, once.
    pub(crate) fn mark_dirty(&mut self, token: Token) {
        if let Some(conn) = self.conns.get_mut(token) {
            if !conn.in_dirty {
                conn.in_dirty = true;
                self.dirty.push(token);
            }
        }
    }

    /// Whether the connection's queue is past the bound at which its input
    /// waits ([`input_pause_bytes`](crate::engine::connection::Connection::input_pause_bytes)).
    pub(crate) fn output_full(&self, token: Token) -> bool {
        self.conns
            .get(token)
            .is_some_and(|conn| conn.queued_bytes() >= conn.input_pause_bytes(&self.config.limits))
    }

    /// Bytes queued for a connection.
    pub fn buffered_amount(&self, token: Token) -> Option<usize> {
        self.conns.get(token).map(|conn| conn.queued_bytes())
    }

    /// Traces bytes queued for a connection, by what its state makes them.
    fn trace_out(&mut self, token: Token, bytes: &[u8]) {
        let Some(conn) = self.conns.get(token) else {
            return;
        };
        let kind = conn.outgoing();
        self.trace(|tracer, now| tracer.bytes_out(now, token, kind, bytes));
    }

    // ---- Writing ---------------------------------------------------------------

    /// Writes every connection with an answer queued this turn (read before
    /// write: a turn's input has been handled, so its answers leave in as
    /// few calls as possible).
    pub fn flush_dirty(&mut self) {
        let mut dirty = std::mem::take(&mut self.dirty);
        for token in dirty.drain(..) {
            if let Some(conn) = self.conns.get_mut(token) {
                conn.in_dirty = false;
                self.flush(token);
            }
        }
        // Keep the allocation for the next turn.
        if self.dirty.is_empty() {
            self.dirty = dirty;
        }
    }

    /// Writes the next `slice` connections of the fan-out line (all of it
    /// when a queue in it is deep); true when some are left (the loop then
    /// polls without sleeping and comes back).
    pub fn flush_fanout(&mut self, slice: usize) -> bool {
        let deep = FANOUT_DEEP_QUEUE.min(self.config.limits.max_queued_bytes / 4);
        let slice = if self.fanout.deepest > deep {
            usize::MAX
        } else {
            slice
        };
        for _ in 0..slice {
            let Some(token) = self.fanout.line.pop_front() else {
                break;
            };
            if let Some(conn) = self.conns.get_mut(token) {
                conn.in_fanout = false;
                self.flush(token);
            }
        }
        if self.fanout.line.is_empty() {
            self.fanout.deepest = 0;
            // Release a line that a burst made long.
            if self.fanout.line.capacity() > 4096 {
                self.fanout.line = VecDeque::new();
            }
            return false;
        }
        true
    }

    /// Writes one connection's queue, keeps WRITABLE interest only while
    /// bytes remain, moves a closing connection along, and lets a paused
    /// connection read again once its queue has drained below half its bound.
    pub fn flush(&mut self, token: Token) {
        // TLS encrypts on the way (see `engine::tls`); the rest is the same.
        #[cfg(feature = "tls")]
        if self.conns.get(token).is_some_and(|conn| conn.tls.is_some()) {
            match self.write_tls(token) {
                Ok(flushed) => self.settle(token, flushed),
                Err(error) => self.tls_failed(token, error),
            }
            return;
        }
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        // A socket that closes once drained sends its last bytes with the FIN.
        let result = if conn.closes_when_drained() {
            conn.outbox
                .flush_into(&mut LastWrite(&mut conn.stream), &mut self.spare)
        } else {
            conn.outbox.flush_into(&mut conn.stream, &mut self.spare)
        };
        let flushed = match result {
            Ok(flushed) => flushed,
            Err(_) => {
                // The peer is gone (reset, broken pipe): nothing more can be said.
                conn.outbox.clear();
                conn.ending.get_or_insert(Ending::Reset);
                self.dead.push(token);
                return;
            }
        };
        self.settle(token, flushed);
    }

    /// After a write: WRITABLE interest only while bytes remain, then the
    /// connection moves on (see [`Core::after_write`]) and a follower
    /// catching up on history gets its next part.
    fn settle(&mut self, token: Token, flushed: Flushed) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        let want_writable = !flushed.drained;
        if want_writable != conn.wants_writable {
            let interest = if want_writable {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            if self
                .registry
                .reregister(&mut conn.stream, token, interest)
                .is_err()
            {
                self.dead.push(token);
                return;
            }
            conn.wants_writable = want_writable;
        }
        self.after_write(token, flushed);
        if flushed.written > 0 {
            self.catch_up(token);
        }
    }

    /// Lists a connection to be read (or its leftover processed) next turn.
    pub(crate) fn make_ready(&mut self, token: Token) {
        if let Some(conn) = self.conns.get_mut(token) {
            if !conn.in_ready {
                conn.in_ready = true;
                self.ready.push_back(token);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink that takes at most `per_call` bytes per call, then would block.
    struct Trickle {
        taken: Vec<u8>,
        per_call: usize,
        calls_left: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.calls_left == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.calls_left -= 1;
            let n = buf.len().min(self.per_call);
            self.taken.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn trickle(per_call: usize, calls_left: usize) -> Trickle {
        Trickle {
            taken: Vec::new(),
            per_call,
            calls_left,
        }
    }

    #[test]
    fn keeps_order_across_owned_and_shared_chunks_and_partial_writes() {
        let mut outbox = Outbox::default();
        let mut spare = Spare::default();
        outbox.push_with(Kind::Protocol, &mut spare, |out| {
            out.extend_from_slice(b"ab")
        });
        outbox.push_with(Kind::Protocol, &mut spare, |out| {
            out.extend_from_slice(b"cd")
        });
        outbox.push_shared(Kind::Data, Arc::from(&b"efg"[..]));
        outbox.push_with(Kind::Data, &mut spare, |out| out.extend_from_slice(b"h"));
        assert_eq!(outbox.len(), 8);
        let mut sink = trickle(3, 1);
        let flushed = outbox.flush_into(&mut sink, &mut spare).unwrap();
        assert_eq!(
            flushed,
            Flushed {
                written: 3,
                drained: false
            }
        );
        assert_eq!(outbox.len(), 5);
        sink.calls_left = 10;
        assert!(outbox.flush_into(&mut sink, &mut spare).unwrap().drained);
        assert_eq!(sink.taken, b"abcdefgh");
        assert_eq!(outbox.len(), 0);
    }

    #[test]
    fn a_head_is_never_dropped_by_the_slow_reader_policy() {
        let mut outbox = Outbox::default();
        let mut spare = Spare::default();
        outbox.push_with(Kind::Protocol, &mut spare, |out| {
            out.extend_from_slice(b"HTTP/1.1 101 Switching Protocols\r\n\r\n")
        });
        for _ in 0..20 {
            outbox.push_shared(Kind::Data, Arc::from(&[b'e'; 300][..]));
        }
        let dropped = outbox.drop_unstarted_data();
        assert_eq!(dropped, 20 * 300);
        outbox.push_with(Kind::Protocol, &mut spare, |out| {
            out.extend_from_slice(b"close")
        });
        let mut sink = trickle(usize::MAX, 10);
        outbox.flush_into(&mut sink, &mut spare).unwrap();
        assert_eq!(sink.taken, b"HTTP/1.1 101 Switching Protocols\r\n\r\nclose");
    }

    #[test]
    fn drop_unstarted_keeps_the_chunk_being_written() {
        let mut outbox = Outbox::default();
        let mut spare = Spare::default();
        outbox.push_with(Kind::Data, &mut spare, |out| {
            out.extend_from_slice(b"frame-one")
        });
        outbox.push_shared(Kind::Data, Arc::from(&b"frame-two"[..]));
        let mut sink = trickle(4, 1);
        outbox.flush_into(&mut sink, &mut spare).unwrap();
        outbox.drop_unstarted_data();
        assert_eq!(outbox.len(), 5, "the rest of frame-one stays");
        outbox.push_with(Kind::Protocol, &mut spare, |out| {
            out.extend_from_slice(b"close")
        });
        sink.calls_left = 10;
        assert!(outbox.flush_into(&mut sink, &mut spare).unwrap().drained);
        assert_eq!(sink.taken, b"frame-oneclose");
    }

    #[test]
    fn admission_takes_one_message_into_an_empty_queue_and_then_bounds_it() {
        let mut outbox = Outbox::default();
        let mut spare = Spare::default();
        assert!(
            outbox.admits(10_000, 100),
            "an empty queue takes any one message"
        );
        outbox.push_with(Kind::Data, &mut spare, |out| {
            out.extend_from_slice(&[0; 60])
        });
        assert!(outbox.admits(40, 100));
        assert!(!outbox.admits(41, 100));
    }

    #[test]
    fn kinds_do_not_share_an_owned_buffer() {
        let mut outbox = Outbox::default();
        let mut spare = Spare::default();
        outbox.push_with(Kind::Data, &mut spare, |out| out.extend_from_slice(b"data"));
        outbox.push_with(Kind::Protocol, &mut spare, |out| {
            out.extend_from_slice(b"pong")
        });
        outbox.push_with(Kind::Protocol, &mut spare, |out| {
            out.extend_from_slice(b"+")
        });
        assert_eq!(
            outbox.queue.as_ref().map(|queue| queue.chunks.len()),
            Some(2)
        );
        outbox.drop_unstarted_data();
        assert_eq!(outbox.len(), 5);
    }

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn an_empty_outbox_is_one_pointer() {
        assert_eq!(std::mem::size_of::<Outbox>(), 8);
    }

    #[test]
    fn an_emptied_outbox_holds_no_buffer_and_spares_are_bounded() {
        let mut outbox = Outbox::default();
        let mut spare = Spare::default();
        outbox.push_with(Kind::Data, &mut spare, |out| {
            out.extend_from_slice(&[7; 4096])
        });
        let mut sink = trickle(usize::MAX, 1);
        assert!(outbox.flush_into(&mut sink, &mut spare).unwrap().drained);
        assert!(outbox.queue.is_none(), "a drained queue is let go");
        assert_eq!(
            spare.buffers.len(),
            1,
            "the written buffer is kept for reuse"
        );
        spare.give(Vec::with_capacity(MAX_SPARE_CAPACITY + 1));
        assert_eq!(spare.buffers.len(), 1, "too big to keep");
        for _ in 0..MAX_SPARE_BUFFERS + 5 {
            spare.give(Vec::with_capacity(64));
        }
        assert_eq!(spare.buffers.len(), MAX_SPARE_BUFFERS);
    }

    #[test]
    fn a_queue_grown_for_a_backlog_is_not_kept() {
        let mut spare = Spare::default();
        let event: Arc<[u8]> = Arc::from(&b"data: x\n\n"[..]);
        for backlog in [8, MAX_SPARE_QUEUE_CHUNKS + 1] {
            let mut outbox = Outbox::default();
            for _ in 0..backlog {
                outbox.push_shared(Kind::Data, Arc::clone(&event));
            }
            let mut sink = trickle(usize::MAX, usize::MAX);
            assert!(outbox.flush_into(&mut sink, &mut spare).unwrap().drained);
            assert_eq!(sink.taken.len(), backlog * event.len());
        }
        assert_eq!(
            spare.queues.len(),
            1,
            "the small queue is kept, the grown one not"
        );
        assert!(spare.queues[0].chunks.capacity() <= MAX_SPARE_QUEUE_CHUNKS);
    }

    #[test]
    fn spares_are_bounded_in_bytes() {
        let mut spare = Spare::default();
        let kept = MAX_SPARE_BYTES / MAX_SPARE_CAPACITY;
        for _ in 0..kept + 3 {
            spare.give(Vec::with_capacity(MAX_SPARE_CAPACITY));
        }
        assert_eq!(spare.buffers.len(), kept);
        assert!(spare.bytes <= MAX_SPARE_BYTES);
        let taken = spare.take();
        assert_eq!(spare.bytes, (kept - 1) * taken.capacity());
        assert!(spare.take().capacity() >= MAX_SPARE_CAPACITY);
    }

    #[test]
    fn a_new_buffer_holds_a_turn_of_small_answers_without_regrowing() {
        let mut buffer = Spare::default().take();
        let capacity = buffer.capacity();
        for _ in 0..16 {
            encode_frame(&mut buffer, true, OpCode::Text, None, &[b'x'; 20]);
        }
        assert_eq!(buffer.capacity(), capacity);
    }

    #[test]
    fn writing_nothing_leaves_no_queue_and_a_drained_queue_is_reused() {
        let mut outbox = Outbox::default();
        let mut spare = Spare::default();
        assert_eq!(outbox.push_with(Kind::Protocol, &mut spare, |_| {}), 0);
        assert!(outbox.queue.is_none(), "nothing written, nothing queued");
        outbox.push_with(Kind::Data, &mut spare, |out| out.extend_from_slice(b"d"));
        assert_eq!(outbox.push_with(Kind::Protocol, &mut spare, |_| {}), 0);
        assert_eq!(
            outbox.queue.as_ref().map(|queue| queue.chunks.len()),
            Some(1)
        );
        let mut sink = trickle(usize::MAX, 1);
        assert!(outbox.flush_into(&mut sink, &mut spare).unwrap().drained);
        assert!(outbox.queue.is_none());
        assert_eq!(spare.queues.len(), 1, "the emptied queue is kept");
        outbox.push_with(Kind::Data, &mut spare, |out| out.extend_from_slice(b"e"));
        assert!(spare.queues.is_empty(), "and taken again");
        assert_eq!(outbox.len(), 1);
    }
}
