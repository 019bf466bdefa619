//! The names the loop gives things: connections, topics, timers.
//!
//! A leaf: every layer above uses these, and this module uses none of them.

use std::fmt;

/// A connection, as the loop knows it. Ids are not reused while a stale copy
/// could matter: a slot's generation changes when its connection goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub(crate) mio::Token);

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&display_token(self.0))
    }
}

/// Low bits of a connection's token: its slot index (16 M slots, far past
/// any fd limit); the bits above are the slot's generation (see
/// [`crate::engine::slab`]).
pub(crate) const INDEX_BITS: u32 = 24;
pub(crate) const INDEX_MASK: usize = (1 << INDEX_BITS) - 1;

/// A token as people read it: `#slot`, or `#slot.generation` once the slot
/// has been reused.
pub fn display_token(token: mio::Token) -> String {
    match token.0 >> INDEX_BITS {
        0 => format!("#{}", token.0 & INDEX_MASK),
        generation => format!("#{}.{generation}", token.0 & INDEX_MASK),
    }
}

/// A topic (a room): created by name with [`crate::server::Server::topic`] or
/// [`crate::app::Context::topic`]. Its generation changes when it is removed,
/// so a stale id never reaches a new topic in the same slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicId {
    pub(crate) index: u32,
    pub(crate) generation: u32,
}

/// A timer set with [`crate::app::Context::set_timeout`] or
/// [`crate::app::Context::set_interval`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimerId {
    pub(crate) slot: usize,
    pub(crate) generation: u32,
}
