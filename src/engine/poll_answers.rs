//! Poll answers kept for every poll that asks the same thing, until the next
//! publish changes what the answer would be: encode once, send to many.
//!
//! A poll's answer is a function of the feeds' history and of what it asks:
//! its topics, its cursor and its framing (keep-alive, `HEAD`). History
//! changes only when an event is published or a topic removed, so between
//! two of those every poll that asks the same thing gets the same bytes —
//! one `Arc<[u8]>` queued for each of them instead of a copy each. That is
//! what most pollers do: the waiters of a long-poll woken by a publish, and
//! the same clients coming back, all hold the newest id before it. A client
//! that pipelines the same poll a hundred times queues a hundred references
//! to one answer.
//!
//! With several loops, another loop's publish changes the shared history
//! before this loop hears of it; the newest id at the time of the question
//! is therefore part of the question, so a kept answer is never one from
//! before an event the poll could see.
//!
//! The cache is the loop's, bounded in count ([`SHARED_POLL_ANSWERS`]):
//! what it keeps is at most that many answers, each at most the polled
//! topics' history.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::http::Framing;
use crate::ids::TopicId;

/// Answers kept at most, the oldest let go first. Most pollers share one or
/// two cursors (the newest id before the last publish, `0` for "everything"),
/// so a few are enough; each may be as large as the history it reads.
pub const SHARED_POLL_ANSWERS: usize = 8;

/// What a poll asked, and the answer it got.
struct Kept {
    topics: Vec<TopicId>,
    after: u64,
    framing: Framing,
    /// The newest id of the feed when the answer was made.
    latest: u64,
    bytes: Arc<[u8]>,
    /// Events in the answer (for the counters).
    events: u64,
}

/// The poll answers of the current history (see the module doc).
#[derive(Default)]
pub struct PollAnswers {
    kept: VecDeque<Kept>,
}

impl PollAnswers {
    /// The answer kept for this question, and how many events it holds.
    pub fn get(
        &self,
        topics: &[TopicId],
        after: u64,
        framing: Framing,
        latest: u64,
    ) -> Option<(Arc<[u8]>, u64)> {
        self.kept
            .iter()
            .find(|kept| {
                kept.after == after
                    && kept.latest == latest
                    && kept.framing == framing
                    && kept.topics == topics
            })
            .map(|kept| (Arc::clone(&kept.bytes), kept.events))
    }

    /// Keeps the answer to a question, letting the oldest go when full.
    pub fn keep(
        &mut self,
        topics: &[TopicId],
        after: u64,
        framing: Framing,
        latest: u64,
        bytes: &Arc<[u8]>,
        events: u64,
    ) {
        if self.kept.len() >= SHARED_POLL_ANSWERS {
            self.kept.pop_front();
        }
        self.kept.push_back(Kept {
            topics: topics.to_vec(),
            after,
            framing,
            latest,
            bytes: Arc::clone(bytes),
            events,
        });
    }

    /// History changed (a publish, a topic removed): every kept answer may
    /// be wrong now.
    pub fn clear(&mut self) {
        self.kept = VecDeque::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEEP_ALIVE: Framing = Framing {
        keep_alive: true,
        head_only: false,
    };

    const LATEST: u64 = 7;

    fn topic(index: u32) -> TopicId {
        TopicId {
            index,
            generation: 0,
        }
    }

    fn answer(text: &str) -> Arc<[u8]> {
        Arc::from(text.as_bytes())
    }

    #[test]
    fn the_same_question_gets_the_same_bytes() {
        let mut answers = PollAnswers::default();
        let bytes = answer("[{\"id\":7}]");
        answers.keep(&[topic(1), topic(2)], 6, KEEP_ALIVE, LATEST, &bytes, 1);
        let (got, events) = answers
            .get(&[topic(1), topic(2)], 6, KEEP_ALIVE, LATEST)
            .expect("kept");
        assert!(Arc::ptr_eq(&got, &bytes), "shared, not copied");
        assert_eq!(events, 1);
    }

    #[test]
    fn another_cursor_topic_list_or_framing_is_another_question() {
        let mut answers = PollAnswers::default();
        answers.keep(&[topic(1)], 6, KEEP_ALIVE, LATEST, &answer("[]"), 0);
        assert!(answers.get(&[topic(1)], 5, KEEP_ALIVE, LATEST).is_none());
        assert!(answers.get(&[topic(2)], 6, KEEP_ALIVE, LATEST).is_none());
        assert!(answers
            .get(&[topic(1), topic(2)], 6, KEEP_ALIVE, LATEST)
            .is_none());
        let closing = Framing {
            keep_alive: false,
            head_only: false,
        };
        assert!(answers.get(&[topic(1)], 6, closing, LATEST).is_none());
        let head = Framing {
            keep_alive: true,
            head_only: true,
        };
        assert!(answers.get(&[topic(1)], 6, head, LATEST).is_none());
        assert!(
            answers
                .get(&[topic(1)], 6, KEEP_ALIVE, LATEST + 1)
                .is_none(),
            "another loop published since"
        );
    }

    #[test]
    fn at_most_the_bound_is_kept_and_the_oldest_goes_first() {
        let mut answers = PollAnswers::default();
        for after in 0..SHARED_POLL_ANSWERS as u64 + 3 {
            answers.keep(&[topic(1)], after, KEEP_ALIVE, LATEST, &answer("[]"), 0);
        }
        assert_eq!(answers.kept.len(), SHARED_POLL_ANSWERS);
        assert!(
            answers.get(&[topic(1)], 2, KEEP_ALIVE, LATEST).is_none(),
            "let go"
        );
        assert!(answers.get(&[topic(1)], 3, KEEP_ALIVE, LATEST).is_some());
    }

    #[test]
    fn a_change_of_history_forgets_every_answer() {
        let mut answers = PollAnswers::default();
        answers.keep(&[topic(1)], 6, KEEP_ALIVE, LATEST, &answer("[]"), 0);
        answers.clear();
        assert!(answers.kept.is_empty());
        assert!(answers.get(&[topic(1)], 6, KEEP_ALIVE, LATEST).is_none());
    }
}
