//! Randomness for the clients, injected: the reconnect jitter asks a
//! [`Random`] for numbers, so tests pass a fixed sequence and assert exact
//! delays; real clients use [`OsRandom`], the operating system's source,
//! which also hands out the WebSocket client's masking keys
//! ([`MaskKeys`], RFC 6455 §5.3).

use std::fmt;
use std::io;

use crate::ws::session::MaskKeys;

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

/// Bytes taken from the OS per refill: 64 masking keys in one `getrandom(2)`
/// call, so a client sending small messages makes one system call per 64
/// frames instead of one per frame. 256 bytes is also the largest request
/// `getrandom(2)` always answers whole from the kernel's CSPRNG (no short
/// read, no interruption by a signal, per its man page).
const POOL_BYTES: usize = 256;

/// The operating system's random source (`getrandom(2)` on Linux), through
/// the `getrandom` crate, with a small pool in front of it.
///
/// ## Why pooled keys are as unpredictable as fresh ones
///
/// RFC 6455 §5.3 asks that a masking key be "derived from a strong source of
/// entropy" and not predictable from earlier ones: §10.3's attacker chooses
/// the payload and must not know in advance which bytes reach the wire. The
/// key itself is no secret — it travels in clear in the frame header — so
/// what matters is that no key can be guessed from the ones already seen.
/// The pool keeps that property: its bytes are the kernel CSPRNG's output,
/// each byte is handed out once, in order, and never before its frame is
/// built. A CSPRNG's output is unpredictable from any amount of its earlier
/// output however it is cut into calls, so 256 bytes read at once are worth
/// 64 reads of 4: seeing keys 1 to 10 of a pool says nothing about key 11.
/// What a pool adds is keys *at rest in memory*: a process that can read
/// this one's memory, or a child it `fork`s, could learn the next keys — a
/// reader of our memory could also read our plaintext, and a forked child
/// must build its own client (this type is not `Clone`, for that reason).
pub struct OsRandom {
    pool: [u8; POOL_BYTES],
    /// Bytes of `pool` already handed out; `POOL_BYTES` when it is empty.
    used: usize,
    /// Why the last refill failed, until [`OsRandom::take_failure`] asks.
    failure: Option<io::ErrorKind>,
}

impl OsRandom {
    /// A source with an empty pool: the first key fills it.
    pub fn new() -> OsRandom {
        OsRandom {
            pool: [0; POOL_BYTES],
            used: POOL_BYTES,
            failure: None,
        }
    }

    /// Fills `bytes` with unpredictable bytes straight from the OS: what a
    /// WebSocket client needs for its handshake nonce (RFC 6455 §4.1 item 7:
    /// "selected randomly for each connection"). An error means the OS has no
    /// source to give; a client must then not connect, rather than use
    /// guessable values.
    pub fn fill(bytes: &mut [u8]) -> io::Result<()> {
        getrandom::fill(bytes).map_err(io::Error::from)
    }

    /// Why a refill of the pool failed since the last call, if one did. A
    /// [`MaskKeys::next_key`] that could not refill answers a zero key (the
    /// trait cannot fail), so a client asks this before writing anything it
    /// masked, and drops the frame instead of sending it with a guessable key.
    /// On Linux `getrandom(2)` does not fail once the system has booted.
    pub fn take_failure(&mut self) -> Option<io::ErrorKind> {
        self.failure.take()
    }

    /// The next `N` bytes of the pool; the pool is refilled whole first when
    /// fewer are left (the few left over are dropped, never reused).
    fn take<const N: usize>(&mut self) -> io::Result<[u8; N]> {
        if POOL_BYTES.saturating_sub(self.used) < N {
            OsRandom::fill(&mut self.pool)?;
            self.used = 0;
        }
        let mut bytes = [0; N];
        let fresh = self.pool.get(self.used..self.used + N).unwrap_or_default();
        bytes.copy_from_slice(fresh);
        self.used += N;
        Ok(bytes)
    }
}

impl Default for OsRandom {
    fn default() -> Self {
        OsRandom::new()
    }
}

/// Shows how much of the pool is left, never its bytes.
impl fmt::Debug for OsRandom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OsRandom")
            .field("pooled_bytes", &(POOL_BYTES - self.used))
            .finish_non_exhaustive()
    }
}

impl Random for OsRandom {
    /// A random number for jitter. Should the OS have no random source (it
    /// never fails on Linux once booted), jitter falls back to the middle of
    /// its window: reconnects stay bounded, only less spread out.
    fn next_u64(&mut self) -> u64 {
        self.take().map_or(1 << 63, u64::from_ne_bytes)
    }
}

impl MaskKeys for OsRandom {
    /// A fresh key from the pool (RFC 6455 §5.3: "a fresh masking key MUST be
    /// selected" for each frame). Should a refill fail, the answer is a zero
    /// key and the failure is kept for [`OsRandom::take_failure`].
    fn next_key(&mut self) -> [u8; 4] {
        match self.take() {
            Ok(key) => key,
            Err(error) => {
                self.failure = Some(error.kind());
                [0; 4]
            }
        }
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
        let mut random = OsRandom::new();
        assert_ne!(random.next_u64(), random.next_u64());
    }

    #[test]
    fn one_refill_serves_64_masking_keys() {
        let mut random = OsRandom::new();
        let first = random.next_key();
        assert_eq!(random.used, 4, "one refill, one key taken");
        let mut keys = vec![first];
        keys.extend((1..64).map(|_| random.next_key()));
        assert_eq!(random.used, POOL_BYTES, "64 keys, still the first refill");
        keys.push(random.next_key());
        assert_eq!(random.used, 4, "the 65th key refilled the pool");
        // Each key is 4 bytes of the pool, in order, never handed out twice.
        keys.sort_unstable();
        keys.dedup();
        // Two equal keys among 65 happen by chance with probability < 2^-20.
        assert!(keys.len() >= 64, "{} distinct keys of 65", keys.len());
        assert_eq!(random.take_failure(), None);
    }

    #[test]
    fn pooled_keys_are_spread_over_every_value() {
        // A weak check of a strong property: 4096 keys (64 refills) are
        // spread out — nearly all distinct (a few birthday collisions of
        // 32-bit values are expected: about 0.002 on average), and every
        // byte value turns up at every key position.
        let mut random = OsRandom::new();
        let keys: Vec<[u8; 4]> = (0..4096).map(|_| random.next_key()).collect();
        let mut distinct = keys.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert!(distinct.len() >= 4090, "{} distinct", distinct.len());
        for position in 0..4 {
            let mut seen = [false; 256];
            for key in &keys {
                seen[usize::from(key[position])] = true;
            }
            // Each of 256 values misses 4096 draws with probability (255/256)^4096 ≈ 1e-7.
            assert!(seen.iter().all(|&s| s), "position {position}");
        }
    }

    #[test]
    fn jitter_and_keys_share_the_pool_without_reusing_bytes() {
        let mut random = OsRandom::new();
        random.next_key();
        random.next_u64();
        assert_eq!(random.used, 12);
        // 252 used: 4 left, fewer than a u64 takes, so the pool refills.
        random.used = POOL_BYTES - 4;
        random.next_u64();
        assert_eq!(random.used, 8);
        assert!(format!("{random:?}").contains("pooled_bytes: 248"));
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
