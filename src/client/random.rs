//! Randomness for the clients, injected: the reconnect jitter asks a
//! [`Random`] for numbers, so tests pass a fixed sequence and assert exact
//! delays; real clients use [`OsRandom`], the operating system's source.

use std::io;

/// A source of random 64-bit numbers. Any `FnMut() -> u64` closure is one:
///
/// ```
/// use pushloop::client::random::Random;
/// let mut fixed = || 1u64 << 63;
/// assert_eq!(fixed.next_u64(), 1 << 63);
/// ```
pub trait Random {
    /// The next number, uniform over all of `u64`.
    fn next_u64(&mut self) -> u64;
}

impl<F: FnMut() -> u64> Random for F {
    fn next_u64(&mut self) -> u64 {
        self()
    }
}

/// The operating system's random source (`getrandom(2)` on Linux), through
/// the `getrandom` crate.
#[derive(Clone, Copy, Debug, Default)]
pub struct OsRandom;

impl OsRandom {
    /// Fills `bytes` with unpredictable bytes: what a WebSocket client needs
    /// for its handshake nonce (RFC 6455 §4.1 item 7: "selected randomly for
    /// each connection") and for each frame's masking key (§5.3: "MUST be
    /// derived from a strong source of entropy"). An error means the OS has no
    /// source to give; a client must then not connect, rather than mask with
    /// guessable keys.
    pub fn fill(bytes: &mut [u8]) -> io::Result<()> {
        getrandom::fill(bytes).map_err(io::Error::from)
    }
}

impl Random for OsRandom {
    /// A random number for jitter. Should the OS have no random source (it
    /// never fails on Linux once booted), jitter falls back to the middle of
    /// its window: reconnects stay bounded, only less spread out.
    fn next_u64(&mut self) -> u64 {
        getrandom::u64().unwrap_or(1 << 63)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_random_gives_different_nonces() {
        let (mut a, mut b) = ([0u8; 16], [0u8; 16]);
        OsRandom::fill(&mut a).unwrap();
        OsRandom::fill(&mut b).unwrap();
        // Equal by chance with probability 2^-128.
        assert_ne!(a, b);
        assert_ne!(OsRandom.next_u64(), OsRandom.next_u64());
    }

    #[test]
    fn closures_are_sources() {
        let mut n = 0u64;
        let mut counter = || {
            n += 1;
            n
        };
        assert_eq!((counter.next_u64(), counter.next_u64()), (1, 2));
    }
}
