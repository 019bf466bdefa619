//! The heap a `Deflater` and an `Inflater` hold, measured by an allocator that
//! counts live bytes: the figures quoted in `ws::deflate`'s module doc. A test
//! binary of its own, because the counting allocator is global.
#![cfg(feature = "deflate")]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use pushloop_proto::ws::deflate::{Deflater, Direction, Inflater};

/// The system allocator, counting the bytes it has handed out and not got back.
struct Counting;

static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed on to `System` unchanged; the counter is only
// arithmetic on the sizes of those calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size(), Ordering::SeqCst);
        // SAFETY: the caller's contract for `alloc` is `System.alloc`'s.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::SeqCst);
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The heap bytes `make` leaves live, plus the value's own size.
fn footprint<T>(make: impl FnOnce() -> T) -> (usize, T) {
    let before = LIVE_BYTES.load(Ordering::SeqCst);
    let value = make();
    let heap = LIVE_BYTES.load(Ordering::SeqCst) - before;
    (heap + size_of::<T>(), value)
}

/// One test, so no other test allocates while this one counts.
#[test]
fn deflater_and_inflater_footprints() {
    let shared = Direction {
        window_bits: 15,
        context_takeover: false,
    };
    let (deflater, mut kept) = footprint(|| Deflater::new(shared));
    // Compressing does not grow it: the buffers are all made up front.
    let mut out = Vec::with_capacity(1 << 16);
    let before = LIVE_BYTES.load(Ordering::SeqCst);
    kept.compress_message(&[b'a'; 40_000], &mut out);
    assert_eq!(
        LIVE_BYTES.load(Ordering::SeqCst),
        before,
        "compressing allocates"
    );
    drop(kept);

    let (inflater_shared, _) = footprint(|| Inflater::new(shared));
    let mut windows = Vec::new();
    for window_bits in [15, 9] {
        let direction = Direction {
            window_bits,
            context_takeover: true,
        };
        windows.push((window_bits, footprint(|| Inflater::new(direction)).0));
    }
    println!("Deflater: {deflater} B");
    println!("Inflater, no context takeover: {inflater_shared} B");
    for (window_bits, bytes) in &windows {
        println!("Inflater, context takeover, window {window_bits}: {bytes} B");
    }
    // The figures in the module doc, within a few per cent.
    assert!((310_000..330_000).contains(&deflater), "{deflater}");
    assert!(inflater_shared < 11_000, "{inflater_shared}");
    assert!(windows[0].1 < inflater_shared + 33_000, "{windows:?}");
    assert!(windows[1].1 < inflater_shared + 1_000, "{windows:?}");
}
