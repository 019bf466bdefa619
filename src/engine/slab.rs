//! Connection slots with generation-tagged tokens.
//!
//! A `mio::Token` carries both the slot index and the slot's generation. When a
//! connection closes, its slot's generation is bumped; an event that was already
//! in the current poll batch for the old connection then names a generation that
//! no longer matches, and is dropped instead of reaching the slot's new owner.

use mio::Token;

pub use crate::ids::display_token;
use crate::ids::{INDEX_BITS, INDEX_MASK};

/// Generations wrap within the bits left over (8 on 32-bit targets, 40 on 64-bit).
const GENERATION_MASK: usize = usize::MAX >> INDEX_BITS;

/// Tokens at the top of the range are reserved for the loop's own sources.
pub const LISTENER: Token = Token(usize::MAX);
/// The cross-thread waker's token.
pub const WAKER: Token = Token(usize::MAX - 1);
/// The TLS listener's token (feature `tls`).
#[cfg(feature = "tls")]
pub const TLS_LISTENER: Token = Token(usize::MAX - 2);
/// The Redis link's reader connection (loop 0, feature `redis`).
#[cfg(feature = "redis")]
pub const REDIS_READER: Token = Token(usize::MAX - 3);
/// The Redis link's commands connection (loop 0, feature `redis`).
#[cfg(feature = "redis")]
pub const REDIS_COMMANDS: Token = Token(usize::MAX - 4);

/// Slab of values addressed by generation-tagged tokens.
pub struct Slab<T> {
    slots: Vec<Slot<T>>,
    free: Vec<usize>,
    len: usize,
}

struct Slot<T> {
    generation: usize,
    value: Option<T>,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab::new()
    }
}

impl<T> Slab<T> {
    /// An empty slab.
    pub fn new() -> Self {
        Slab {
            slots: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }

    /// Live values.
    pub fn len(&self) -> usize {
        self.len
    }

    /// No live value.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Reserves a slot and returns the token it will be known by; `make` builds the
    /// value with that token (a connection registers itself with mio by it).
    pub fn insert_with(&mut self, make: impl FnOnce(Token) -> T) -> Token {
        let index = self.vacant_index();
        let slot = &mut self.slots[index];
        let token = Token(slot.generation << INDEX_BITS | index);
        slot.value = Some(make(token));
        self.len += 1;
        token
    }

    fn slot_of(&self, token: Token) -> Option<usize> {
        let index = token.0 & INDEX_MASK;
        let generation = token.0 >> INDEX_BITS;
        match self.slots.get(index) {
            Some(slot) if slot.generation == generation && slot.value.is_some() => Some(index),
            _ => None,
        }
    }

    /// The value behind a token, if the token is current.
    pub fn get(&self, token: Token) -> Option<&T> {
        self.slot_of(token)
            .and_then(|i| self.slots[i].value.as_ref())
    }

    /// The value behind a token, if the token is current.
    pub fn get_mut(&mut self, token: Token) -> Option<&mut T> {
        self.slot_of(token)
            .and_then(|i| self.slots[i].value.as_mut())
    }

    /// Removes a value; its token (and every stale copy of it) stops resolving.
    pub fn remove(&mut self, token: Token) -> Option<T> {
        let index = self.slot_of(token)?;
        let slot = &mut self.slots[index];
        slot.generation = (slot.generation + 1) & GENERATION_MASK;
        self.free.push(index);
        self.len -= 1;
        slot.value.take()
    }

    /// Reserves a slot for values that come and go under one token: an
    /// outbound WebSocket keeps its id across reconnects
    /// ([`crate::engine::outbound`], feature `client`). The slot is empty
    /// until [`Slab::fill`]; [`Slab::vacate`] empties it again without
    /// retiring the token, and only [`Slab::release`] retires it. An empty
    /// reserved slot resolves no token and is not counted in [`Slab::len`].
    #[cfg(feature = "client")]
    pub fn reserve(&mut self) -> Token {
        let index = self.vacant_index();
        Token(self.slots[index].generation << INDEX_BITS | index)
    }

    /// An empty slot taken off the free list, or a new one.
    fn vacant_index(&mut self) -> usize {
        self.free.pop().unwrap_or_else(|| {
            self.slots.push(Slot {
                generation: 0,
                value: None,
            });
            self.slots.len() - 1
        })
    }

    /// The index of a reserved slot that is empty now, if `token` names one.
    /// (A freed slot's generation moved on when it was freed, so no token
    /// handed out names it: an empty slot under a current token is reserved.)
    #[cfg(feature = "client")]
    fn empty_reserved(&self, token: Token) -> Option<usize> {
        let index = token.0 & INDEX_MASK;
        let slot = self.slots.get(index)?;
        (slot.generation == token.0 >> INDEX_BITS
            && slot.value.is_none()
            && !self.free.contains(&index))
        .then_some(index)
    }

    /// Puts a value in a reserved, empty slot; gives it back if `token`
    /// names no such slot.
    #[cfg(feature = "client")]
    pub fn fill(&mut self, token: Token, value: T) -> Result<(), T> {
        let Some(index) = self.empty_reserved(token) else {
            return Err(value);
        };
        self.slots[index].value = Some(value);
        self.len += 1;
        Ok(())
    }

    /// Takes a reserved slot's value out; the token stays reserved (a later
    /// [`Slab::fill`] is found by it again).
    #[cfg(feature = "client")]
    pub fn vacate(&mut self, token: Token) -> Option<T> {
        let index = self.slot_of(token)?;
        self.len -= 1;
        self.slots[index].value.take()
    }

    /// Ends a reservation made by [`Slab::reserve`]: the slot is freed (and
    /// its value dropped, if it holds one) and the token stops resolving.
    #[cfg(feature = "client")]
    pub fn release(&mut self, token: Token) {
        if self.remove(token).is_none() {
            if let Some(index) = self.empty_reserved(token) {
                let slot = &mut self.slots[index];
                slot.generation = (slot.generation + 1) & GENERATION_MASK;
                self.free.push(index);
            }
        }
    }

    /// Tokens of every live value (a snapshot, so the caller may mutate while walking).
    pub fn tokens(&self) -> Vec<Token> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, slot)| slot.value.is_some())
            .map(|(index, slot)| Token(slot.generation << INDEX_BITS | index))
            .collect()
    }

    /// Every live value with its token.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (Token, &mut T)> {
        self.slots
            .iter_mut()
            .enumerate()
            .filter_map(|(index, slot)| {
                let token = Token(slot.generation << INDEX_BITS | index);
                slot.value.as_mut().map(|value| (token, value))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_token_does_not_reach_the_slots_new_owner() {
        let mut slab = Slab::new();
        let old = slab.insert_with(|_| "first");
        assert_eq!(slab.remove(old), Some("first"));
        let new = slab.insert_with(|_| "second");
        assert_eq!(old.0 & INDEX_MASK, new.0 & INDEX_MASK, "slot is reused");
        assert_eq!(slab.get(old), None);
        assert_eq!(slab.get(new), Some(&"second"));
        assert_eq!(slab.remove(old), None);
        assert_eq!(slab.len(), 1);
    }

    #[test]
    fn insert_with_sees_its_own_token() {
        let mut slab = Slab::new();
        let token = slab.insert_with(|token| token);
        assert_eq!(slab.get(token), Some(&token));
    }

    #[test]
    #[cfg(feature = "client")]
    fn a_reserved_token_survives_vacate_and_fill_until_released() {
        let mut slab = Slab::new();
        let link = slab.reserve();
        assert_eq!(
            (slab.get(link), slab.len()),
            (None, 0),
            "empty until filled"
        );
        assert_eq!(slab.fill(link, "first connection"), Ok(()));
        assert_eq!((slab.get(link), slab.len()), (Some(&"first connection"), 1));
        assert_eq!(slab.fill(link, "twice"), Err("twice"), "already full");
        let other = slab.insert_with(|_| "accepted");
        assert_ne!(other.0 & INDEX_MASK, link.0 & INDEX_MASK);
        assert_eq!(slab.vacate(link), Some("first connection"));
        assert_eq!((slab.get(link), slab.len()), (None, 1));
        // The vacated slot is not handed to anyone else meanwhile.
        let third = slab.insert_with(|_| "another");
        assert_ne!(third.0 & INDEX_MASK, link.0 & INDEX_MASK);
        assert_eq!(slab.fill(link, "reconnected"), Ok(()));
        assert_eq!(slab.get(link), Some(&"reconnected"));
        slab.release(link);
        assert_eq!((slab.get(link), slab.len()), (None, 2));
        assert_eq!(slab.fill(link, "stale"), Err("stale"), "released");
        let reused = slab.insert_with(|_| "new owner");
        assert_eq!(
            reused.0 & INDEX_MASK,
            link.0 & INDEX_MASK,
            "the slot is free again"
        );
        assert_ne!(reused, link);
    }

    #[test]
    #[cfg(feature = "client")]
    fn a_freed_slot_is_not_taken_for_a_reserved_one() {
        let mut slab = Slab::new();
        let gone = slab.insert_with(|_| 1);
        slab.remove(gone);
        let current = Token((((gone.0 >> INDEX_BITS) + 1) << INDEX_BITS) | (gone.0 & INDEX_MASK));
        assert_eq!(slab.fill(current, 2), Err(2));
        assert_eq!(slab.fill(gone, 3), Err(3));
        let empty_reserved = slab.reserve();
        slab.release(empty_reserved);
        assert_eq!(slab.fill(empty_reserved, 4), Err(4));
        assert!(slab.is_empty());
    }

    #[test]
    fn tokens_never_collide_with_the_reserved_ones() {
        let mut slab = Slab::new();
        for _ in 0..1000 {
            let token = slab.insert_with(|_| ());
            assert_ne!(token, LISTENER);
            assert_ne!(token, WAKER);
            slab.remove(token);
        }
    }

    #[test]
    fn reserved_tokens_are_distinct() {
        let mut reserved = vec![LISTENER, WAKER];
        #[cfg(feature = "tls")]
        reserved.push(TLS_LISTENER);
        #[cfg(feature = "redis")]
        reserved.extend([REDIS_READER, REDIS_COMMANDS]);
        let count = reserved.len();
        reserved.sort_unstable_by_key(|token| token.0);
        reserved.dedup();
        assert_eq!(reserved.len(), count, "two sources share a token");
    }
}
