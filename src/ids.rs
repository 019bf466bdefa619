//! The names the loop gives things: connections, topics, timers.
//!
//! A leaf: every layer above uses these, and this module uses none of them.

use std::fmt;

/// A connection: the loop it lives on and its token there. Ids are unique
/// across the loops of a server and not reused while a stale copy could
/// matter: a slot's generation changes when its connection goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    pub(crate) loop_index: u16,
    pub(crate) token: mio::Token,
}

impl ConnId {
    pub(crate) fn new(loop_index: u16, token: mio::Token) -> ConnId {
        ConnId { loop_index, token }
    }

    /// The loop the connection lives on (0 when there is one).
    pub fn loop_index(self) -> usize {
        usize::from(self.loop_index)
    }
}

impl fmt::Display for ConnId {
    /// `#slot` (see [`display_token`]); on any loop but the first, followed
    /// by `@loop`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&display_token(self.token))?;
        match self.loop_index {
            0 => Ok(()),
            index => write!(f, "@{index}"),
        }
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
