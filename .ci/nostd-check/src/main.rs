//! A `#![no_std]` program that drives pushloop-proto's layers once: parse a
//! request head, answer a WebSocket handshake, decode a masked frame, encode
//! an SSE event, negotiate permessage-deflate and compress and inflate a
//! message. It exists to be built (see Cargo.toml); running it prints
//! nothing and exits 0 when every step gave the expected answer.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec::Vec;
use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::panic::PanicInfo;

use pushloop_proto::http::{httparse, parse_request};
use pushloop_proto::sse;
use pushloop_proto::ws::deflate::{accept_offer, Deflater, Inflater, ServerConfig};
use pushloop_proto::ws::frame::{encode_frame, OpCode, Role};
use pushloop_proto::ws::handshake;
use pushloop_proto::ws::frame::{Decoded, MessageDecoder, MessageLimits, Step};

/// The arena's size: a compressor is ~320 KB of it (`ws::deflate`'s doc).
const ARENA_BYTES: usize = 1 << 20;

/// A bump allocator over a static arena: enough for this program, and no
/// dependency on a libc `malloc` binding.
struct Arena {
    bytes: UnsafeCell<[u8; ARENA_BYTES]>,
    used: UnsafeCell<usize>,
}

// SAFETY: the program is single-threaded; nothing else touches the arena.
unsafe impl Sync for Arena {}

// SAFETY: every block handed out is inside the arena, aligned as asked, and
// never handed out twice (the bump pointer only grows; `dealloc` is a no-op).
unsafe impl GlobalAlloc for Arena {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let used = &mut *self.used.get();
        let base = self.bytes.get() as *mut u8;
        let start = (base as usize + *used).next_multiple_of(layout.align()) - base as usize;
        match start.checked_add(layout.size()) {
            Some(end) if end <= ARENA_BYTES => {
                *used = end;
                base.add(start)
            }
            _ => core::ptr::null_mut(),
        }
    }

    unsafe fn dealloc(&self, _: *mut u8, _: Layout) {}
}

#[global_allocator]
static ARENA: Arena = Arena {
    bytes: UnsafeCell::new([0; ARENA_BYTES]),
    used: UnsafeCell::new(0),
};

#[panic_handler]
fn panic(_: &PanicInfo) -> ! {
    loop {}
}

/// The prebuilt `core` and `alloc` refer to the unwinding personality even
/// when this binary aborts on panic; it is never called.
#[no_mangle]
pub extern "C" fn rust_eh_personality() {}

fn run() -> bool {
    let head = b"GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let Ok(request) = parse_request(head, &mut headers) else {
        return false;
    };
    let Ok(upgrade) = handshake::check(&request) else {
        return false;
    };
    let mut answer = Vec::new();
    // RFC 6455 §1.3: the sample key's accept value.
    if upgrade.write_accept(None, None, &mut answer).is_err()
        || !answer
            .windows(28)
            .any(|w| w == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    {
        return false;
    }
    let mut frame = Vec::new();
    encode_frame(&mut frame, true, OpCode::Text, Some([1, 2, 3, 4]), b"Hello");
    let limits = MessageLimits {
        max_frame_bytes: 1024,
        max_message_bytes: 1024,
        max_fragments: 4,
    };
    let mut decoder = MessageDecoder::new(Role::Server, limits);
    let decoded = matches!(
        decoder.step(&mut frame),
        Ok(Step::Message {
            message: Decoded::Text("Hello"),
            ..
        })
    );
    let mut event = Vec::new();
    let encoded = sse::encode(&sse::Event::new("hi").id("1"), &mut event).is_ok()
        && event == b"id: 1\ndata: hi\n\n";
    decoded && encoded && deflated()
}

/// permessage-deflate: accept a browser's offer, then "Hello" both ways
/// (RFC 7692 §7.2.3.1).
fn deflated() -> bool {
    let offer: &[u8] = b"permessage-deflate; client_max_window_bits";
    let mut response = Vec::new();
    let Some(agreed) = accept_offer([offer], ServerConfig::default(), &mut response) else {
        return false;
    };
    let mut compressed = Vec::new();
    Deflater::new(agreed.sending(Role::Server)).compress_message(b"Hello", &mut compressed);
    let mut inflated = Vec::new();
    let inflater = Inflater::new(agreed.receiving(Role::Server)).inflate_message(
        &compressed,
        1024,
        &mut inflated,
    );
    compressed == [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]
        && inflater.is_ok()
        && inflated == b"Hello"
}

/// The C runtime's entry point calls this (`#![no_main]`: no Rust `main`).
#[no_mangle]
pub extern "C" fn main(_argc: i32, _argv: *const *const u8) -> i32 {
    if run() {
        0
    } else {
        1
    }
}
