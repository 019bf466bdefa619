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
        let index = match self.free.pop() {
            Some(index) => index,
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    value: None,
                });
                self.slots.len() - 1
            }
        };
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
    fn tokens_never_collide_with_the_reserved_ones() {
        let mut slab = Slab::new();
        for _ in 0..1000 {
            let token = slab.insert_with(|_| ());
            assert_ne!(token, LISTENER);
            assert_ne!(token, WAKER);
            slab.remove(token);
        }
    }
}
