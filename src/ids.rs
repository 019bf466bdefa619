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
        f.write_str(&crate::engine::slab::display_token(self.0))
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
