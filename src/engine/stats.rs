//! Counters of a loop, by transport (see `GET /stats` in the demo).

#[cfg(feature = "deflate")]
pub use crate::ws::deflate::Counters as DeflateCounters;

/// The per-transport bucket a connection's counters go to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// Plain HTTP responses (including errors and the demo page).
    Http,
    /// Short polls.
    Poll,
    /// Long polls.
    LongPoll,
    /// Server-Sent Events streams.
    EventStream,
    /// WebSockets.
    WebSocket,
}

/// Counters of one transport.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TransportStats {
    /// Connections now in this transport.
    pub connections: u64,
    /// Requests (or upgrades) served by this transport since start.
    pub requests: u64,
    /// Bytes queued for writing (heads, frames, events).
    pub bytes_written: u64,
    /// Feed events delivered (a poll answer counts its events).
    pub events_delivered: u64,
}

/// Per-transport counters of a server.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Plain HTTP responses.
    pub http: TransportStats,
    /// Short polls.
    pub poll: TransportStats,
    /// Long polls.
    pub long_poll: TransportStats,
    /// Event streams.
    pub event_stream: TransportStats,
    /// WebSockets.
    pub websocket: TransportStats,
    /// Times a queue was past `max_queued_bytes` when data was sent to it.
    pub slow_readers: u64,
    /// Messages dropped under `SlowReader::Drop`.
    pub dropped_messages: u64,
    /// Connections refused at `max_connections`.
    pub refused_connections: u64,
    /// Callbacks that panicked (their connection was closed).
    pub panics: u64,
    /// Times a connection's input was paused because its queue was past
    /// `max_queued_bytes` (it is read again once the queue drains).
    pub paused_reads: u64,
    /// permessage-deflate: messages and bytes before and after compression,
    /// each way, and how often the compressor ran.
    #[cfg(feature = "deflate")]
    pub deflate: DeflateCounters,
}

impl Stats {
    /// The counters of a transport.
    pub(crate) fn of(&mut self, transport: Transport) -> &mut TransportStats {
        match transport {
            Transport::Http => &mut self.http,
            Transport::Poll => &mut self.poll,
            Transport::LongPoll => &mut self.long_poll,
            Transport::EventStream => &mut self.event_stream,
            Transport::WebSocket => &mut self.websocket,
        }
    }

    /// Moves a connection's count to another transport and counts a request there.
    pub(crate) fn switch(&mut self, transport: &mut Transport, to: Transport) {
        self.of(*transport).connections -= 1;
        *transport = to;
        let stats = self.of(to);
        stats.connections += 1;
        stats.requests += 1;
    }

    /// Moves a connection's count to another transport without counting a
    /// request (a held long-poll answered goes back to plain HTTP).
    pub(crate) fn move_to(&mut self, transport: &mut Transport, to: Transport) {
        self.of(*transport).connections -= 1;
        *transport = to;
        self.of(to).connections += 1;
    }

    /// The counters as a JSON object, transports by name.
    pub fn to_json(&self) -> String {
        let transports = [
            ("http", &self.http),
            ("poll", &self.poll),
            ("longpoll", &self.long_poll),
            ("sse", &self.event_stream),
            ("websocket", &self.websocket),
        ];
        let mut json = String::from("{");
        for (name, t) in transports {
            json.push_str(&format!(
                "\"{name}\":{{\"connections\":{},\"requests\":{},\"bytes_written\":{},\"events_delivered\":{}}},",
                t.connections, t.requests, t.bytes_written, t.events_delivered
            ));
        }
        #[cfg(feature = "deflate")]
        {
            let d = &self.deflate;
            json.push_str(&format!(
                "\"deflate\":{{\"messages_sent\":{},\"sent_bytes_before\":{},\"sent_bytes_after\":{},\"compressions\":{},\"messages_received\":{},\"received_bytes_before\":{},\"received_bytes_after\":{}}},",
                d.messages_sent,
                d.sent_bytes_before,
                d.sent_bytes_after,
                d.compressions,
                d.messages_received,
                d.received_bytes_before,
                d.received_bytes_after
            ));
        }
        json.push_str(&format!(
            "\"slow_readers\":{},\"dropped_messages\":{},\"refused_connections\":{},\"panics\":{},\"paused_reads\":{}}}",
            self.slow_readers,
            self.dropped_messages,
            self.refused_connections,
            self.panics,
            self.paused_reads
        ));
        json
    }
}
