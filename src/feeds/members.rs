//! Who follows and who waits on what, on one loop.
//!
//! A connection of any transport *follows* any number of topics (event
//! streams and WebSockets get each new event) or *waits* on them (a held
//! long-poll, answered by the next event). Both lists are kept in
//! subscription order, so deliveries and traces repeat exactly. Each loop
//! keeps its own: a connection belongs to one loop, so these never need a
//! lock, even when the topics themselves are shared.

use std::collections::{BTreeMap, HashMap};

use mio::Token;

use crate::ids::TopicId;

/// Which of a topic's two lists a membership is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum List {
    /// Gets every new event (event streams, WebSockets).
    Followers,
    /// Gets the next event once (held long-polls).
    Waiters,
}

/// One topic's lists: subscription sequence number → connection, so
/// iteration is in subscription order and removal is O(log n).
#[derive(Default)]
struct Lists {
    followers: BTreeMap<u64, Token>,
    waiters: BTreeMap<u64, Token>,
}

impl Lists {
    fn list(&mut self, list: List) -> &mut BTreeMap<u64, Token> {
        match list {
            List::Followers => &mut self.followers,
            List::Waiters => &mut self.waiters,
        }
    }
}

/// Every membership of one loop's connections.
#[derive(Default)]
pub struct Members {
    lists: HashMap<TopicId, Lists>,
    /// For each connection, the topics it follows and waits on, with the
    /// sequence number of each membership (to find it in the topic's list).
    memberships: HashMap<Token, Vec<(List, TopicId, u64)>>,
    next_seq: u64,
}

impl Members {
    fn join(&mut self, list: List, conn: Token, topic: TopicId) {
        let memberships = self.memberships.entry(conn).or_default();
        if memberships
            .iter()
            .any(|(l, id, _)| *l == list && *id == topic)
        {
            return;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        memberships.push((list, topic, seq));
        self.lists
            .entry(topic)
            .or_default()
            .list(list)
            .insert(seq, conn);
    }

    fn leave(&mut self, list: List, conn: Token, topic: Option<TopicId>) -> usize {
        let Some(memberships) = self.memberships.get_mut(&conn) else {
            return 0;
        };
        let mut left = Vec::new();
        memberships.retain(|&(l, id, seq)| {
            let leaving = l == list && topic.is_none_or(|topic| topic == id);
            if leaving {
                left.push((id, seq));
            }
            !leaving
        });
        if memberships.is_empty() {
            self.memberships.remove(&conn);
        }
        for &(id, seq) in &left {
            if let Some(lists) = self.lists.get_mut(&id) {
                lists.list(list).remove(&seq);
                if lists.followers.is_empty() && lists.waiters.is_empty() {
                    self.lists.remove(&id);
                }
            }
        }
        left.len()
    }

    /// `conn` follows `topic` from now on (again is a no-op).
    pub fn follow(&mut self, conn: Token, topic: TopicId) {
        self.join(List::Followers, conn, topic);
    }

    /// `conn` no longer follows `topic`. False if it did not.
    pub fn unfollow(&mut self, conn: Token, topic: TopicId) -> bool {
        self.leave(List::Followers, conn, Some(topic)) > 0
    }

    /// The topics `conn` follows, in the order it followed them.
    pub fn followed(&self, conn: Token) -> Vec<TopicId> {
        self.memberships.get(&conn).map_or_else(Vec::new, |list| {
            list.iter()
                .filter(|(l, _, _)| *l == List::Followers)
                .map(|(_, id, _)| *id)
                .collect()
        })
    }

    /// Appends the followers of `topic` to `out`, in subscription order.
    pub fn followers(&self, topic: TopicId, out: &mut Vec<Token>) {
        if let Some(lists) = self.lists.get(&topic) {
            out.extend(lists.followers.values().copied());
        }
    }

    /// Every connection that follows anything, each once.
    pub fn all_followers(&self) -> Vec<Token> {
        self.with_any(List::Followers)
    }

    /// Every connection that waits on anything, each once.
    pub fn all_waiters(&self) -> Vec<Token> {
        self.with_any(List::Waiters)
    }

    fn with_any(&self, list: List) -> Vec<Token> {
        let mut conns: Vec<Token> = self
            .memberships
            .iter()
            .filter(|(_, memberships)| memberships.iter().any(|(l, _, _)| *l == list))
            .map(|(conn, _)| *conn)
            .collect();
        // Token order, so what follows from it repeats from run to run.
        conns.sort_unstable();
        conns
    }

    /// `conn` waits for the next event of any of `topics` (a held long-poll).
    pub fn wait(&mut self, conn: Token, topics: &[TopicId]) {
        for &topic in topics {
            self.join(List::Waiters, conn, topic);
        }
    }

    /// Every connection waiting on `topic`, in arrival order; none of them
    /// waits on anything any more.
    pub fn take_waiters(&mut self, topic: TopicId) -> Vec<Token> {
        let waiters: Vec<Token> = self
            .lists
            .get(&topic)
            .map_or_else(Vec::new, |lists| lists.waiters.values().copied().collect());
        for &conn in &waiters {
            self.leave(List::Waiters, conn, None);
        }
        waiters
    }

    /// `conn` stops waiting (answered by a timeout, or gone).
    pub fn stop_waiting(&mut self, conn: Token) {
        self.leave(List::Waiters, conn, None);
    }

    /// `conn` is gone: it follows and waits on nothing.
    pub fn forget(&mut self, conn: Token) {
        self.leave(List::Followers, conn, None);
        self.leave(List::Waiters, conn, None);
    }

    /// A topic was removed: nobody follows or waits on it any more.
    pub fn drop_topic(&mut self, topic: TopicId) {
        let Some(lists) = self.lists.remove(&topic) else {
            return;
        };
        for conn in lists.followers.values().chain(lists.waiters.values()) {
            if let Some(memberships) = self.memberships.get_mut(conn) {
                memberships.retain(|(_, id, _)| *id != topic);
                if memberships.is_empty() {
                    self.memberships.remove(conn);
                }
            }
        }
    }

    /// True when no connection follows or waits on anything.
    pub fn is_empty(&self) -> bool {
        self.memberships.is_empty() && self.lists.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: TopicId = TopicId {
        index: 0,
        generation: 0,
    };
    const B: TopicId = TopicId {
        index: 1,
        generation: 0,
    };

    #[test]
    fn followers_are_kept_in_subscription_order_and_forgotten() {
        let mut members = Members::default();
        for token in [5, 1, 9] {
            members.follow(Token(token), A);
        }
        members.follow(Token(1), A);
        let mut out = Vec::new();
        members.followers(A, &mut out);
        assert_eq!(out, [Token(5), Token(1), Token(9)], "again is a no-op");
        assert!(members.unfollow(Token(1), A));
        assert!(!members.unfollow(Token(1), A));
        members.forget(Token(5));
        out.clear();
        members.followers(A, &mut out);
        assert_eq!(out, [Token(9)]);
        assert_eq!(members.all_followers(), [Token(9)]);
        members.forget(Token(9));
        assert!(members.is_empty(), "nothing left behind");
    }

    #[test]
    fn a_waiter_on_two_topics_is_taken_once() {
        let mut members = Members::default();
        members.wait(Token(1), &[A, B]);
        members.wait(Token(2), &[B]);
        assert_eq!(members.all_waiters(), [Token(1), Token(2)]);
        assert_eq!(members.take_waiters(B), [Token(1), Token(2)]);
        assert_eq!(members.take_waiters(A), [], "no longer waiting on a either");
        assert!(members.is_empty());
    }

    #[test]
    fn a_removed_topic_lets_its_members_go() {
        let mut members = Members::default();
        members.follow(Token(1), A);
        members.follow(Token(1), B);
        members.wait(Token(2), &[A]);
        members.drop_topic(A);
        assert_eq!(members.followed(Token(1)), [B]);
        assert!(members.all_waiters().is_empty());
        members.forget(Token(1));
        assert!(members.is_empty());
    }
}
