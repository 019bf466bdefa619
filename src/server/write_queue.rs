//! Bytes a connection has produced but its socket has not taken yet.
//!
//! Writes go straight to the socket at the end of each loop turn; only what the
//! kernel did not accept stays here, and WRITABLE interest is registered only
//! while something does. Frames built for one connection are appended to an
//! owned tail buffer (no allocation per message); bytes shared by many
//! recipients (a broadcast, a published event) are queued as `Rc<[u8]>`, so one
//! encoding serves every queue. An emptied queue releases its memory: an idle
//! connection owns no buffer. Its written owned buffers go to the loop's
//! [`Spare`] buffers instead of the allocator, so the next connection that
//! writes takes one that is already grown and already mapped: a busy loop
//! neither regrows a buffer by copying nor has freed pages faulted back in.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::rc::Rc;

/// Shared slices gathered into one `writev` call at most.
const MAX_IOVECS: usize = 64;

/// Owned buffers kept for reuse across connections (most recent first).
/// Bounded in count and size, so what it keeps is the loop's, not a
/// connection's: at most `MAX_SPARE_BUFFERS × MAX_SPARE_CAPACITY` bytes.
#[derive(Default)]
pub struct Spare {
    buffers: Vec<Vec<u8>>,
}

/// Buffers a [`Spare`] keeps at most.
const MAX_SPARE_BUFFERS: usize = 16;
/// The largest buffer a [`Spare`] keeps (a larger one goes back to the allocator).
const MAX_SPARE_CAPACITY: usize = 128 * 1024;

impl Spare {
    /// An empty buffer, grown by an earlier use if one is kept.
    fn take(&mut self) -> Vec<u8> {
        self.buffers.pop().unwrap_or_default()
    }

    /// Keeps a written buffer for the next use, if there is room and it is not too big.
    fn give(&mut self, mut buffer: Vec<u8>) {
        let capacity = buffer.capacity();
        if capacity > 0 && capacity <= MAX_SPARE_CAPACITY && self.buffers.len() < MAX_SPARE_BUFFERS
        {
            buffer.clear();
            self.buffers.push(buffer);
        }
    }
}

enum Chunk {
    Owned(Vec<u8>),
    Shared(Rc<[u8]>),
}

impl Chunk {
    fn bytes(&self) -> &[u8] {
        match self {
            Chunk::Owned(bytes) => bytes,
            Chunk::Shared(bytes) => bytes,
        }
    }
}

/// A FIFO of outgoing bytes with a running total (the browser's `bufferedAmount`).
#[derive(Default)]
pub struct WriteQueue {
    chunks: VecDeque<Chunk>,
    /// Bytes of the front chunk already written.
    front_written: usize,
    queued: usize,
}

impl WriteQueue {
    /// Bytes waiting to be written.
    pub fn len(&self) -> usize {
        self.queued
    }

    /// Appends through `encode`, which writes into the owned tail buffer (a
    /// spare one when the queue has none).
    pub fn append_with(&mut self, spare: &mut Spare, encode: impl FnOnce(&mut Vec<u8>)) {
        if !matches!(self.chunks.back(), Some(Chunk::Owned(_))) {
            self.chunks.push_back(Chunk::Owned(spare.take()));
        }
        if let Some(Chunk::Owned(tail)) = self.chunks.back_mut() {
            let before = tail.len();
            encode(tail);
            self.queued += tail.len() - before;
        }
    }

    /// Appends bytes shared with other queues.
    pub fn push_shared(&mut self, bytes: Rc<[u8]>) {
        if bytes.is_empty() {
            return;
        }
        self.queued += bytes.len();
        self.chunks.push_back(Chunk::Shared(bytes));
    }

    /// Writes as much as `sink` takes. `Ok(true)` when the queue is now empty;
    /// `Ok(false)` when the sink would block with bytes left. Written owned
    /// buffers go to `spare`.
    pub fn flush_into(&mut self, sink: &mut impl Write, spare: &mut Spare) -> io::Result<bool> {
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
                match sink.write_vectored(&slices[..count]) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                    Err(e) => return Err(e),
                }
            };
            self.consume(written, spare);
        }
        Ok(true)
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
            if let Some(Chunk::Owned(buffer)) = self.chunks.pop_front() {
                spare.give(buffer);
            }
        }
        if self.chunks.is_empty() {
            // Release the deque's buffer too: an idle connection owns no memory.
            self.chunks = VecDeque::new();
        }
    }

    /// Drops every chunk the socket has not started on. Chunks hold whole
    /// frames and events, so what is left still ends on a frame boundary and a
    /// Close frame can follow it.
    pub fn drop_unstarted(&mut self) {
        let keep = usize::from(self.front_written > 0);
        for chunk in self.chunks.drain(keep..) {
            self.queued -= chunk.bytes().len();
        }
    }

    /// Drops everything queued.
    pub fn clear(&mut self) {
        *self = WriteQueue::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink that takes at most `budget` bytes per call, then would block.
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

    #[test]
    fn keeps_order_across_owned_and_shared_chunks_and_partial_writes() {
        let mut queue = WriteQueue::default();
        let mut spare = Spare::default();
        queue.append_with(&mut spare, |out| out.extend_from_slice(b"ab"));
        queue.append_with(&mut spare, |out| out.extend_from_slice(b"cd"));
        queue.push_shared(Rc::from(&b"efg"[..]));
        queue.append_with(&mut spare, |out| out.extend_from_slice(b"h"));
        assert_eq!(queue.len(), 8);
        let mut sink = Trickle {
            taken: Vec::new(),
            per_call: 3,
            calls_left: 1,
        };
        assert!(!queue.flush_into(&mut sink, &mut spare).unwrap());
        assert_eq!(queue.len(), 5);
        sink.calls_left = 10;
        assert!(queue.flush_into(&mut sink, &mut spare).unwrap());
        assert_eq!(sink.taken, b"abcdefgh");
        assert_eq!(queue.len(), 0);
    }

    #[test]
    fn drop_unstarted_keeps_the_chunk_being_written() {
        let mut queue = WriteQueue::default();
        let mut spare = Spare::default();
        queue.append_with(&mut spare, |out| out.extend_from_slice(b"frame-one"));
        queue.push_shared(Rc::from(&b"frame-two"[..]));
        let mut sink = Trickle {
            taken: Vec::new(),
            per_call: 4,
            calls_left: 1,
        };
        assert!(!queue.flush_into(&mut sink, &mut spare).unwrap());
        queue.drop_unstarted();
        assert_eq!(queue.len(), 5, "the rest of frame-one stays");
        queue.append_with(&mut spare, |out| out.extend_from_slice(b"close"));
        sink.calls_left = 10;
        assert!(queue.flush_into(&mut sink, &mut spare).unwrap());
        assert_eq!(sink.taken, b"frame-oneclose");
    }

    #[test]
    fn an_emptied_queue_holds_no_buffer() {
        let mut queue = WriteQueue::default();
        let mut spare = Spare::default();
        queue.append_with(&mut spare, |out| out.extend_from_slice(&[7; 4096]));
        let mut sink = Trickle {
            taken: Vec::new(),
            per_call: usize::MAX,
            calls_left: 1,
        };
        assert!(queue.flush_into(&mut sink, &mut spare).unwrap());
        assert!(queue.chunks.capacity() == 0);
        assert_eq!(
            spare.buffers.len(),
            1,
            "the written buffer is kept for reuse"
        );
        queue.append_with(&mut spare, |out| out.push(1));
        assert!(spare.buffers.is_empty());
        assert!(matches!(queue.chunks.front(), Some(Chunk::Owned(b)) if b.capacity() >= 4096));
    }

    #[test]
    fn spare_buffers_are_bounded_in_count_and_size() {
        let mut spare = Spare::default();
        spare.give(Vec::with_capacity(MAX_SPARE_CAPACITY + 1));
        assert!(spare.buffers.is_empty());
        for _ in 0..MAX_SPARE_BUFFERS + 5 {
            spare.give(Vec::with_capacity(64));
        }
        assert_eq!(spare.buffers.len(), MAX_SPARE_BUFFERS);
    }
}
