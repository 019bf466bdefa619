//! One WebSocket endpoint, either role: every rule of RFC 6455 §5.5 and §7 in
//! one sans-IO state machine.
//!
//! Reading list:
//! - §5.4 (control frames may come between fragments), §5.5.1 (Close: answer
//!   it, send nothing after it), §5.5.2-5.5.3 (Ping → Pong with the same
//!   payload; only the most recent ping needs its pong).
//! - §7.1.1-7.1.5 (closing: who closes TCP, the close code when there was no
//!   Close frame), §7.1.7 (failing the connection), §7.4.1 (status codes).
//! - §5.3 (a client masks every frame with a fresh, unpredictable key).
//! - RFC 7692 §6 (with permessage-deflate, a message of at least the
//!   threshold goes out compressed, RSV1 on its frame; one that came in
//!   compressed is inflated before it is handed out), §7.1.1 (which state a
//!   direction keeps: see `ws::deflate::state`).
//!
//! [`Session`] is the whole endpoint but for one part: the frames-to-messages
//! work, done by a [`MessageDecoder`] that the caller keeps beside it and
//! lends to [`Session::step`]. The decoder may hold the message being handed
//! out, and keeping it apart lets the caller handle that message and still
//! send (or close) on the same session while it does. The session adds what
//! an endpoint must *do* about each message: answer pings, echo a Close, fail
//! the connection with the right code, refuse data after its own Close, ping
//! a silent peer, give up on one that stops answering. It never touches a
//! socket or a clock: the caller passes the time and an output buffer in an
//! [`Env`] with every call, and asks [`Session::poll_timeout`] when to call
//! back.
//!
//! ```text
//!                 close() / idle / peer's Close answered
//!   ┌──────┐ ─────────────────────────────────────────▶ ┌───────────┐
//!   │ Open │   send our Close          peer's Close     │ CloseSent │
//!   └──────┘ ──────────┐                 ┌───────────── └───────────┘
//!     │  │  peer's     │                 ▼                 │ close_timeout
//!     │  │  Close:     └─────────▶ ┌────────┐              ▼
//!     │  │  echo it               │ Closed │          ┌──────┐
//!     │  │                        └────────┘          │ Gone │ 1006
//!     │  └─ protocol error: send our Close ─▶ Failed    └──────┘
//!     └──── pong_timeout / EOF ───────────────────────────▲
//! ```
//!
//! Driving it (the same for both roles):
//! 1. Bytes arrive: call [`Session::step`] (lending it the decoder) on the
//!    unconsumed bytes until it
//!    says [`Step::NeedMore`], dropping `used` bytes after each call, and act
//!    on each [`Event`].
//! 2. Then call [`Session::poll_transmit`] once: it writes the pong owed for
//!    the latest ping (while the output is backed up, a burst of pings gets
//!    one pong, §5.5.3).
//! 3. Send with [`Session::send`] (and [`Session::ping`]); close with
//!    [`Session::close`].
//! 4. Arm a timer for [`Session::poll_timeout`]; when it passes, call
//!    [`Session::handle_timeout`].
//! 5. When [`Session::wants_tcp_close`] is true, close TCP once the output is
//!    written; on EOF from the peer, call [`Session::on_eof`].
//!
//! Everything the session writes goes to `env.out` and is a whole frame.
//!
//! With permessage-deflate (`Session::with_deflate`, feature `deflate`), the
//! caller also lends the compression state its sessions share
//! (`Env::deflate`); a compressed message is inflated into the decoder's
//! buffer, so it too lives with the receiving half, and the application can
//! send on the session (compressing with the same shared state) while it
//! reads it.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt;
use core::time::Duration;

use super::close::{encode_close_payload, CloseCode, MAX_REASON_LEN};
#[cfg(feature = "deflate")]
use super::deflate::{
    state::{Receiving, Sending},
    AgreedParams, Direction, SendMode, Shared,
};
use super::frame::{encode_frame, OpCode, Role, MAX_CONTROL_PAYLOAD};
use super::frame::{
    Decoded, MessageDecoder, MessageError, MessageLimits, Observed, Step as DecoderStep,
};
use crate::time::Instant;

/// The rules a session plays by; one value serves every session of a server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    /// Size limits on what the peer sends (§10.4).
    pub limits: MessageLimits,
    /// Close with `1001` when the peer has sent nothing at all for this long.
    /// `None`: never.
    pub idle_timeout: Option<Duration>,
    /// Ping the peer after this much silence from it. `None`: never ping.
    pub ping_interval: Option<Duration>,
    /// How long a ping may go unanswered (by a pong or any other byte) before
    /// the peer is taken for gone (code 1006, no close handshake).
    pub pong_timeout: Duration,
    /// How long we wait for the peer's Close after sending ours (and, as a
    /// client, for the server to close TCP after the handshake), §7.1.1.
    pub close_timeout: Duration,
}

/// Where a client's masking keys come from (RFC 6455 §5.3: "a fresh masking
/// key MUST be selected", "unpredictable"). A client session asks for one
/// per frame; a server session never does.
pub trait MaskKeys {
    /// A fresh, unpredictable 4-byte key.
    fn next_key(&mut self) -> [u8; 4];
}

/// What the caller lends a session for one call: the time, the rules, where
/// the frames it writes go, and (client role only) the masking keys.
pub struct Env<'e> {
    /// Now, on the caller's clock.
    pub now: Instant,
    /// The rules (one value for every session of a server).
    pub config: &'e SessionConfig,
    /// Frames the session writes are appended here.
    pub out: &'e mut Vec<u8>,
    /// Masking keys; required in the client role (§5.3), ignored by a server.
    pub keys: Option<&'e mut dyn MaskKeys>,
    /// The caller's output is backed up (the peer is not reading it): pings
    /// are then answered only for the most recent one (§5.5.3 allows it),
    /// and that pong waits for [`Session::poll_transmit`] or the next
    /// message. Otherwise every ping gets its pong at once.
    pub backed_up: bool,
    /// permessage-deflate: the compressors and inflater every session of the
    /// caller shares (one per loop), and the threshold. Used only by sessions
    /// made with [`Session::with_deflate`].
    #[cfg(feature = "deflate")]
    pub deflate: &'e mut Shared,
}

/// Where the endpoint is in its life (RFC 6455 §7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Data flows both ways. `awaiting_pong`: a heartbeat ping is out and no
    /// byte has arrived since.
    Open {
        /// A ping we sent is unanswered.
        awaiting_pong: bool,
    },
    /// §7.1.2: we sent our Close and wait for the peer's. We send no more data
    /// (§5.5.1); data the peer still sends is read and dropped.
    CloseSent,
    /// §7.1.4: both Close frames have been sent: the closing handshake is
    /// complete. The server closes TCP now (§7.1.1); a client waits for the
    /// server to do so, at most `close_timeout`.
    Closed,
    /// §7.1.7: the peer broke the protocol; our Close with the error's code
    /// is written, and TCP closes without waiting for a reply.
    Failed,
    /// The connection is gone without a complete closing handshake: the peer
    /// closed TCP, stopped answering pings, or never answered our Close.
    /// §7.1.5: the close code is then 1006.
    Gone,
}

impl State {
    /// The state's name, as a protocol trace prints it.
    pub fn name(self) -> &'static str {
        match self {
            State::Open { .. } => "open",
            State::CloseSent => "close-sent",
            State::Closed => "closed",
            State::Failed => "failed",
            State::Gone => "gone",
        }
    }
}

/// What the peer's bytes meant, for the application.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// A whole text message (§5.6), valid UTF-8 (§8.1).
    Text(&'a str),
    /// A whole binary message (§5.6).
    Binary(&'a [u8]),
    /// A ping (§5.5.2); its pong is owed and goes out with
    /// [`Session::poll_transmit`].
    Ping(&'a [u8]),
    /// A pong (§5.5.3): the peer is alive.
    Pong(&'a [u8]),
    /// The peer's Close (§5.5.1), with its code (1005 when it gave none,
    /// §7.1.5) and reason. If we had not sent ours, it is written now (§5.5.1:
    /// the same code echoed). The conversation is over.
    Closed {
        /// The peer's code.
        code: CloseCode,
        /// The peer's reason (may be empty).
        reason: &'a str,
    },
    /// The peer broke the protocol (§7.1.7): our Close with
    /// [`MessageError::close_code`] is written; the conversation is over.
    Failed(MessageError),
}

/// What one call to [`Session::step`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Step<'a> {
    /// An event; `used` input bytes were consumed.
    Event {
        /// What happened.
        event: Event<'a>,
        /// Input bytes consumed.
        used: usize,
    },
    /// `used` > 0 bytes were consumed and nothing is ready yet; call again.
    Progress {
        /// Input bytes consumed.
        used: usize,
    },
    /// Nothing consumed: keep the bytes and call again with more appended.
    NeedMore,
}

/// Which deadline passed, as [`Session::handle_timeout`] reports it (a ping
/// that fell due is not reported: it is simply sent).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timeout {
    /// The peer sent nothing for `idle_timeout`: our Close `1001` is written.
    Idle,
    /// A ping went unanswered for `pong_timeout`: the peer is gone (1006).
    Pong,
    /// The closing handshake (or, as a client, the server's TCP close after
    /// it) took longer than `close_timeout`: close TCP now.
    Close,
}

impl Timeout {
    /// The timeout's name, for counters and traces.
    pub fn name(self) -> &'static str {
        match self {
            Timeout::Idle => "idle",
            Timeout::Pong => "pong",
            Timeout::Close => "close",
        }
    }
}

/// Why [`Session::send`] wrote nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendError {
    /// Our Close frame has gone out (or the connection is gone): §5.5.1, "the
    /// endpoint MUST NOT send any more data frames".
    Closing,
    /// A client session was called without masking keys (§5.3): a bug of the
    /// caller, not of the peer.
    NoMaskKeys,
    /// A ping payload over 125 bytes (§5.5: "All control frames MUST have a
    /// payload length of 125 bytes or less"): a bug of the caller.
    ControlTooLong,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SendError::Closing => "the WebSocket is closing: no data after a Close frame",
            SendError::NoMaskKeys => "a client must mask its frames, and no keys were given",
            SendError::ControlTooLong => "a ping payload is at most 125 bytes",
        })
    }
}

impl core::error::Error for SendError {}

/// One WebSocket endpoint (server or client): see the module doc for how to
/// drive it. 40 bytes on x86-64 (56 with the `deflate` feature, compressing or
/// not); it owns heap memory only while a pong with a payload is owed, or,
/// with context takeover, once it has compressed (its [`MessageDecoder`] holds
/// a buffer only while a fragmented or partly received message is being
/// gathered, or handed out).
#[derive(Debug)]
pub struct Session {
    role: Role,
    state: State,
    /// The last time the peer sent anything: every byte is a sign of life.
    heard: Instant,
    /// When we sent the ping that is awaited, or our Close.
    since: Instant,
    /// The payload of the most recent ping, while its pong is owed (§5.5.3).
    pong_owed: Option<Box<[u8]>>,
    /// How we compress what we send, when permessage-deflate was negotiated.
    #[cfg(feature = "deflate")]
    deflate: Option<Sending>,
    /// How the peer compresses, when negotiated: whether a fresh decoder
    /// borrows the shared inflater or makes its own (RFC 7692 §7.1.1).
    #[cfg(feature = "deflate")]
    peer_compresses: Option<Direction>,
}

impl Session {
    /// A session for a connection whose opening handshake just completed,
    /// and the decoder to keep beside it for the peer's frames.
    pub fn new(role: Role, limits: MessageLimits, now: Instant) -> (Session, MessageDecoder) {
        let session = Session {
            role,
            state: State::Open {
                awaiting_pong: false,
            },
            heard: now,
            since: now,
            pong_owed: None,
            #[cfg(feature = "deflate")]
            deflate: None,
            #[cfg(feature = "deflate")]
            peer_compresses: None,
        };
        let decoder = session.fresh_decoder(limits);
        (session, decoder)
    }

    /// A decoder for this session's peer as [`Session::new`] or
    /// `Session::with_deflate` made it, with `limits` (the same ones):
    /// what replaces one dropped while [`MessageDecoder::is_fresh`] (a
    /// server keeps no decoder for an idle socket: 144 bytes each, with the
    /// `deflate` feature). The limits are not kept here, as they are the
    /// same for every socket of a server: 24 bytes per session.
    pub fn fresh_decoder(&self, limits: MessageLimits) -> MessageDecoder {
        #[cfg(feature = "deflate")]
        if let Some(peer) = self.peer_compresses {
            let receiving = match peer.context_takeover {
                true => Receiving::Own {
                    direction: peer,
                    inflater: None,
                },
                false => Receiving::Shared,
            };
            return MessageDecoder::receiving(self.role, limits, receiving);
        }
        MessageDecoder::new(self.role, limits)
    }

    /// [`Session::new`] for a connection that negotiated permessage-deflate
    /// (RFC 7692 §7.1): each direction without context takeover uses the
    /// state lent in [`Env::deflate`], each with it a state of its own, made
    /// on its first compressed message.
    ///
    /// ```
    /// use pushloop_proto::time::Instant;
    /// use pushloop_proto::ws::deflate::{accept_offer, SendMode, ServerConfig};
    /// use pushloop_proto::ws::frame::{MessageLimits, Role};
    /// use pushloop_proto::ws::session::Session;
    /// let offer: &[u8] = b"permessage-deflate; client_max_window_bits";
    /// let agreed = accept_offer([offer], ServerConfig::default(), &mut Vec::new()).unwrap();
    /// let limits = MessageLimits { max_frame_bytes: 1 << 20, max_message_bytes: 1 << 20, max_fragments: 64 };
    /// let (session, _decoder) = Session::with_deflate(Role::Server, limits, Instant::ZERO, agreed);
    /// assert_eq!(session.send_mode(), SendMode::Shared { full_window: true });
    /// ```
    #[cfg(feature = "deflate")]
    pub fn with_deflate(
        role: Role,
        limits: MessageLimits,
        now: Instant,
        agreed: AgreedParams,
    ) -> (Session, MessageDecoder) {
        let (mut session, _) = Session::new(role, limits, now);
        session.deflate = Some(Sending::new(agreed.sending(role)));
        session.peer_compresses = Some(agreed.receiving(role));
        let decoder = session.fresh_decoder(limits);
        (session, decoder)
    }

    /// How this session compresses what it sends: for a caller that fans a
    /// message out and compresses it once for every session that shares a
    /// compressor ([`Shared::compress_frame`]).
    #[cfg(feature = "deflate")]
    pub fn send_mode(&self) -> SendMode {
        self.deflate.as_ref().map_or(SendMode::Off, Sending::mode)
    }

    /// The role we play.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Where the endpoint is.
    pub fn state(&self) -> State {
        self.state
    }

    /// Data may be sent: no Close frame of ours has gone out (§5.5.1).
    pub fn can_send(&self) -> bool {
        matches!(self.state, State::Open { .. })
    }

    /// The connection should close TCP once its output is written: a server
    /// after a complete handshake (§7.1.1: "the server MUST close the
    /// underlying TCP connection immediately"), either role after failing or
    /// giving up. A client after a complete handshake waits for the server's
    /// FIN instead, until [`Session::handle_timeout`] says [`Timeout::Close`].
    pub fn wants_tcp_close(&self) -> bool {
        match self.state {
            State::Closed => self.role == Role::Server,
            State::Failed | State::Gone => true,
            State::Open { .. } | State::CloseSent => false,
        }
    }

    /// One step over `input`, the unconsumed bytes (unmasked in place), with
    /// the decoder kept beside the session. Any byte counts as a sign of
    /// life. Never panics.
    pub fn step<'a>(
        &mut self,
        decoder: &'a mut MessageDecoder,
        input: &'a mut [u8],
        env: &mut Env,
    ) -> Step<'a> {
        self.step_observed(decoder, input, env, &mut Observed::default())
    }

    /// [`Session::step`], also handing out the header of the frame this step
    /// started on (once per frame) and the sizes of a compressed message, for
    /// a protocol trace.
    pub fn step_observed<'a>(
        &mut self,
        decoder: &'a mut MessageDecoder,
        input: &'a mut [u8],
        env: &mut Env,
        observed: &mut Observed,
    ) -> Step<'a> {
        // §7.1.7: after failing, nothing the peer sends matters any more.
        if self.state == State::Failed {
            return match input.len() {
                0 => Step::NeedMore,
                used => Step::Progress { used },
            };
        }
        let role = self.role;
        let input_len = input.len();
        if !input.is_empty() {
            self.heard = env.now;
            if let State::Open { awaiting_pong } = &mut self.state {
                *awaiting_pong = false;
            }
        }
        #[cfg(feature = "deflate")]
        let decoded = decoder.step_inflating(input, observed, env.deflate);
        #[cfg(not(feature = "deflate"))]
        let decoded = decoder.step_observed(input, observed);
        let step = match decoded {
            Ok(step) => step,
            Err(error) => {
                // §7.1.7: fail the connection — our Close carries the code
                // §7.4.1 gives the error, and nothing waits for a reply.
                if matches!(self.state, State::Open { .. }) {
                    write_close(env, role, error.close_code(), "");
                }
                self.state = State::Failed;
                self.pong_owed = None;
                return Step::Event {
                    event: Event::Failed(error),
                    used: input_len,
                };
            }
        };
        let (message, used) = match step {
            DecoderStep::NeedMore => return Step::NeedMore,
            DecoderStep::Progress { used } => return Step::Progress { used },
            DecoderStep::Message { message, used } => (message, used),
        };
        let open = matches!(self.state, State::Open { .. });
        let event = match message {
            // §5.5.1: after our Close, the peer's data is read and dropped.
            Decoded::Text(_) | Decoded::Binary(_) if !open => return Step::Progress { used },
            Decoded::Text(text) => {
                // The pong owed for earlier pings goes before whatever the
                // answer to this message will be.
                self.poll_transmit(env);
                Event::Text(text)
            }
            Decoded::Binary(bytes) => {
                self.poll_transmit(env);
                Event::Binary(bytes)
            }
            Decoded::Ping(payload) => {
                // §5.5.2: a Ping is answered with a Pong carrying its payload.
                // §5.5.3: "If an endpoint receives a Ping frame and has not yet
                // sent Pong frame(s) in response to previous Ping frame(s), the
                // endpoint MAY elect to send a Pong frame for only the most
                // recently processed Ping frame" — done while the output is
                // backed up, so a ping flood cannot grow it. Nothing answers
                // after our Close (§5.5.1).
                if open {
                    if env.backed_up {
                        self.pong_owed = Some(payload.into());
                    } else {
                        self.pong_owed = None;
                        let mask = mask_for(role, env);
                        encode_frame(env.out, true, OpCode::Pong, mask, payload);
                    }
                }
                Event::Ping(payload)
            }
            Decoded::Pong(payload) => Event::Pong(payload),
            Decoded::Close(close) => {
                // §7.1.5: no code in the peer's Close is reported as 1005.
                let (code, reason) = close.unwrap_or((CloseCode::NO_STATUS, ""));
                if open {
                    // §5.5.1: "it MUST send a Close frame in response…
                    // typically echoing the status code it received".
                    self.pong_owed = None;
                    let echo = close.map_or(CloseCode::NO_STATUS, |(code, _)| code);
                    write_close(env, role, echo, "");
                }
                self.state = State::Closed;
                // A client waits for the server's FIN from now (§7.1.1).
                self.since = env.now;
                Event::Closed { code, reason }
            }
        };
        Step::Event { event, used }
    }

    /// Writes what is owed now: the pong for the most recent ping, when pings
    /// came while the output was backed up (§5.5.3). Call it after each batch
    /// of input.
    ///
    /// Inline, with the rare write out of line: it runs after every message
    /// (a pong owed goes before the answer), almost always with nothing owed.
    #[inline]
    pub fn poll_transmit(&mut self, env: &mut Env) {
        if self.pong_owed.is_some() {
            self.send_owed_pong(env);
        }
    }

    fn send_owed_pong(&mut self, env: &mut Env) {
        if let Some(payload) = self.pong_owed.take() {
            let mask = mask_for(self.role, env);
            encode_frame(env.out, true, OpCode::Pong, mask, &payload);
        }
    }

    /// Sends one whole text or binary message, in one frame. Refused after
    /// our Close (§5.5.1). `opcode` must be [`OpCode::Text`] (with UTF-8
    /// `payload`) or [`OpCode::Binary`].
    ///
    /// With permessage-deflate, a message of at least the threshold
    /// (`ws::deflate::Shared::threshold`) goes compressed, RSV1 set (RFC 7692 §6.1); one
    /// that would not shrink goes as it is, unless this direction keeps
    /// context (the message is then in our window, so it must be in the
    /// peer's).
    pub fn send(&mut self, opcode: OpCode, payload: &[u8], env: &mut Env) -> Result<(), SendError> {
        debug_assert!(matches!(opcode, OpCode::Text | OpCode::Binary));
        if !self.can_send() {
            return Err(SendError::Closing);
        }
        let mask = match self.role {
            Role::Server => None,
            Role::Client => Some(env.keys.as_mut().ok_or(SendError::NoMaskKeys)?.next_key()),
        };
        #[cfg(feature = "deflate")]
        if let Some(sending) = self.deflate.as_mut() {
            if sending.send(env.deflate, opcode, mask, payload, env.out) {
                return Ok(());
            }
        }
        encode_frame(env.out, true, opcode, mask, payload);
        Ok(())
    }

    /// Sends a ping of the application's own (§5.5.2), e.g. to measure the
    /// round trip; its pong comes back as [`Event::Pong`]. It does not touch
    /// the heartbeat (`ping_interval`), which keeps its own ping. Refused after
    /// our Close (§5.5.1) and over 125 bytes (§5.5).
    pub fn ping(&mut self, payload: &[u8], env: &mut Env) -> Result<(), SendError> {
        if !self.can_send() {
            return Err(SendError::Closing);
        }
        // §5.5: "All control frames MUST have a payload length of 125 bytes or less".
        if payload.len() > MAX_CONTROL_PAYLOAD {
            return Err(SendError::ControlTooLong);
        }
        let mask = match self.role {
            Role::Server => None,
            Role::Client => Some(env.keys.as_mut().ok_or(SendError::NoMaskKeys)?.next_key()),
        };
        encode_frame(env.out, true, OpCode::Ping, mask, payload);
        Ok(())
    }

    /// Starts the closing handshake (§7.1.2): writes our Close with `code` and
    /// `reason` (cut to 123 bytes at a character boundary) and waits up to
    /// `close_timeout` for the peer's. False if ours was already sent or the
    /// connection is over (nothing is written then).
    pub fn close(&mut self, code: CloseCode, reason: &str, env: &mut Env) -> bool {
        if !matches!(self.state, State::Open { .. }) {
            return false;
        }
        // §5.5.1: nothing follows our Close, not even a pong that is owed.
        self.pong_owed = None;
        write_close(env, self.role, code, reason);
        self.state = State::CloseSent;
        self.since = env.now;
        true
    }

    /// The peer closed TCP (EOF or reset). Returns the close code of the
    /// connection: the peer's if its Close came first, else 1006 (§7.1.5: "If
    /// _The WebSocket Connection is Closed_ and no Close control frame was
    /// received…, _The WebSocket Connection Close Code_ is considered to be
    /// 1006").
    pub fn on_eof(&mut self) -> Option<CloseCode> {
        match self.state {
            State::Closed | State::Failed => None,
            State::Open { .. } | State::CloseSent | State::Gone => {
                self.state = State::Gone;
                self.pong_owed = None;
                Some(CloseCode::ABNORMAL)
            }
        }
    }

    /// When [`Session::handle_timeout`] should be called next, if ever.
    pub fn poll_timeout(&self, config: &SessionConfig) -> Option<Instant> {
        match self.state {
            State::Open { awaiting_pong } => {
                let idle = config.idle_timeout.map(|idle| self.heard + idle);
                let heartbeat = if awaiting_pong {
                    Some(self.since + config.pong_timeout)
                } else {
                    config.ping_interval.map(|interval| self.heard + interval)
                };
                match (idle, heartbeat) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            }
            State::CloseSent => Some(self.since + config.close_timeout),
            State::Closed if self.role == Role::Client => Some(self.since + config.close_timeout),
            State::Closed | State::Failed | State::Gone => None,
        }
    }

    /// Acts on the deadlines that have passed at `env.now`: a heartbeat ping
    /// is written, an idle peer gets our Close `1001`, an unanswered ping or
    /// Close ends the connection. Returns what timed out, if anything did.
    pub fn handle_timeout(&mut self, env: &mut Env) -> Option<Timeout> {
        let now = env.now;
        let config = *env.config;
        match self.state {
            State::Open { awaiting_pong } => {
                if awaiting_pong && now >= self.since + config.pong_timeout {
                    // The peer did not answer in time: it is gone, and a
                    // closing handshake with it would only wait again.
                    self.state = State::Gone;
                    self.pong_owed = None;
                    return Some(Timeout::Pong);
                }
                if config
                    .idle_timeout
                    .is_some_and(|idle| now >= self.heard + idle)
                {
                    self.close(CloseCode::GOING_AWAY, "idle timeout", env);
                    return Some(Timeout::Idle);
                }
                let ping_due = config
                    .ping_interval
                    .is_some_and(|interval| now >= self.heard + interval);
                if !awaiting_pong && ping_due {
                    let mask = mask_for(self.role, env);
                    encode_frame(env.out, true, OpCode::Ping, mask, b"");
                    self.state = State::Open {
                        awaiting_pong: true,
                    };
                    self.since = now;
                }
                None
            }
            // §7.1.2: our Close got no reply in time. Without the peer's
            // Close, the code is 1006 (§7.1.5).
            State::CloseSent if now >= self.since + config.close_timeout => {
                self.state = State::Gone;
                Some(Timeout::Close)
            }
            // §7.1.1: a client waited long enough for the server's FIN; the
            // handshake itself was clean.
            State::Closed
                if self.role == Role::Client && now >= self.since + config.close_timeout =>
            {
                Some(Timeout::Close)
            }
            State::CloseSent | State::Closed | State::Failed | State::Gone => None,
        }
    }
}

/// A masking key when we are the client (§5.3), `None` for a server. Without
/// keys a client's control frame goes out with a zero key: still a masked
/// frame the server accepts, and only reachable through a caller's bug.
fn mask_for(role: Role, env: &mut Env) -> Option<[u8; 4]> {
    match role {
        Role::Server => None,
        Role::Client => Some(env.keys.as_mut().map_or([0; 4], |keys| keys.next_key())),
    }
}

/// Appends a Close frame (§5.5.1: a 2-byte code, then a UTF-8 reason of at
/// most 123 bytes; no code at all for 1005, which is never sent, §7.4.1).
fn write_close(env: &mut Env, role: Role, code: CloseCode, reason: &str) {
    let mask = mask_for(role, env);
    if code == CloseCode::NO_STATUS || !code.is_allowed_on_wire() {
        encode_frame(env.out, true, OpCode::Close, mask, b"");
        return;
    }
    let mut payload = [0; 2 + MAX_REASON_LEN];
    let len = encode_close_payload(code, reason, &mut payload);
    encode_frame(env.out, true, OpCode::Close, mask, &payload[..len]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::frame::decode_header;

    const LIMITS: MessageLimits = MessageLimits {
        max_frame_bytes: 1 << 16,
        max_message_bytes: 1 << 16,
        max_fragments: 64,
    };

    const CONFIG: SessionConfig = SessionConfig {
        limits: LIMITS,
        idle_timeout: Some(Duration::from_secs(120)),
        ping_interval: Some(Duration::from_secs(25)),
        pong_timeout: Duration::from_secs(20),
        close_timeout: Duration::from_secs(5),
    };

    const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    /// Keys for a client under test: always the RFC's §5.7 example key.
    struct FixedKeys;

    impl MaskKeys for FixedKeys {
        fn next_key(&mut self) -> [u8; 4] {
            KEY
        }
    }

    fn at(secs: u64) -> Instant {
        Instant::from_micros(secs * 1_000_000)
    }

    /// A session and what it has written so far.
    struct Endpoint {
        session: Session,
        decoder: MessageDecoder,
        out: Vec<u8>,
        keys: FixedKeys,
        /// What the environment says of the output (see `Env::backed_up`).
        backed_up: bool,
        /// The compression state lent with every call.
        #[cfg(feature = "deflate")]
        shared: Shared,
    }

    /// What a step produced, owned, so tests can compare it.
    #[derive(Debug, PartialEq, Eq)]
    enum Seen {
        Text(String),
        Binary(Vec<u8>),
        Ping(Vec<u8>),
        Pong(Vec<u8>),
        Closed(CloseCode, String),
        Failed(MessageError),
    }

    impl Endpoint {
        fn server() -> Endpoint {
            Endpoint::new(Role::Server)
        }

        fn client() -> Endpoint {
            Endpoint::new(Role::Client)
        }

        fn new(role: Role) -> Endpoint {
            let (session, decoder) = Session::new(role, LIMITS, at(0));
            Endpoint::with(session, decoder)
        }

        fn with(session: Session, decoder: MessageDecoder) -> Endpoint {
            Endpoint {
                session,
                decoder,
                out: Vec::new(),
                keys: FixedKeys,
                backed_up: false,
                #[cfg(feature = "deflate")]
                shared: Shared::new(crate::ws::deflate::DEFAULT_THRESHOLD),
            }
        }

        /// Runs `f` on the session with an environment at `now`.
        fn act<R>(&mut self, now: Instant, f: impl FnOnce(&mut Session, &mut Env) -> R) -> R {
            let mut env = Env {
                now,
                config: &CONFIG,
                out: &mut self.out,
                keys: Some(&mut self.keys),
                backed_up: self.backed_up,
                #[cfg(feature = "deflate")]
                deflate: &mut self.shared,
            };
            f(&mut self.session, &mut env)
        }

        /// Feeds `input` whole at `now`, then drains `poll_transmit`.
        fn receive(&mut self, input: &[u8], now: Instant) -> Vec<Seen> {
            self.receive_chunks(&[input], now)
        }

        /// Feeds `chunks` one after the other, keeping what a step did not
        /// consume in front of the next chunk, as a transport does.
        fn receive_chunks(&mut self, chunks: &[&[u8]], now: Instant) -> Vec<Seen> {
            let mut seen = Vec::new();
            let mut pending = Vec::new();
            for chunk in chunks {
                pending.extend_from_slice(chunk);
                let mut start = 0;
                loop {
                    let mut env = Env {
                        now,
                        config: &CONFIG,
                        out: &mut self.out,
                        keys: Some(&mut self.keys),
                        backed_up: self.backed_up,
                        #[cfg(feature = "deflate")]
                        deflate: &mut self.shared,
                    };
                    match self
                        .session
                        .step(&mut self.decoder, &mut pending[start..], &mut env)
                    {
                        Step::NeedMore => break,
                        Step::Progress { used } => start += used,
                        Step::Event { event, used } => {
                            start += used;
                            seen.push(match event {
                                Event::Text(text) => Seen::Text(text.into()),
                                Event::Binary(bytes) => Seen::Binary(bytes.into()),
                                Event::Ping(bytes) => Seen::Ping(bytes.into()),
                                Event::Pong(bytes) => Seen::Pong(bytes.into()),
                                Event::Closed { code, reason } => Seen::Closed(code, reason.into()),
                                Event::Failed(error) => Seen::Failed(error),
                            });
                        }
                    }
                }
                pending.drain(..start);
            }
            self.act(now, |session, env| session.poll_transmit(env));
            seen
        }

        /// The frames written since the last call, decoded as (opcode, payload).
        fn written(&mut self) -> Vec<(OpCode, Vec<u8>)> {
            let role = match self.session.role() {
                // What we wrote is read by the other role.
                Role::Server => Role::Client,
                Role::Client => Role::Server,
            };
            let mut frames = Vec::new();
            let mut rest = &self.out[..];
            while let Ok(Some((header, len))) = decode_header(rest, role, 1 << 20, true) {
                let end = len + header.payload_len as usize;
                let mut payload = rest[len..end].to_vec();
                if let Some(key) = header.mask {
                    crate::ws::frame::apply_mask(&mut payload, key, 0);
                }
                frames.push((header.opcode, payload));
                rest = &rest[end..];
            }
            assert!(rest.is_empty(), "whole frames only");
            self.out.clear();
            frames
        }
    }

    /// A server drops a fresh decoder between batches and asks the session
    /// for another: it must be fresh exactly while nothing is under way.
    #[test]
    fn a_decoder_is_fresh_only_while_nothing_is_under_way() {
        let mut server = Endpoint::server();
        assert!(server.decoder.is_fresh());
        assert!(server.session.fresh_decoder(LIMITS).is_fresh());
        // A whole message in the input is handed out zero-copy: still fresh.
        let seen = server.receive(&from_client(true, OpCode::Text, b"hi"), at(1));
        assert_eq!(seen, [Seen::Text("hi".into())]);
        server.decoder.release();
        assert!(server.decoder.is_fresh());
        // The first fragment of a message: the decoder holds it.
        server.receive(&from_client(false, OpCode::Text, b"Hel"), at(2));
        assert!(!server.decoder.is_fresh());
        // Half a frame's payload: the decoder is inside that frame.
        let mut other = Endpoint::server();
        let frame = from_client(true, OpCode::Binary, &[7; 300]);
        other.receive(&frame[..100], at(1));
        assert!(!other.decoder.is_fresh());
        // A fresh decoder from the session takes the next message as the
        // first one did.
        server.decoder = Endpoint::server().session.fresh_decoder(LIMITS);
        let seen = server.receive(&from_client(true, OpCode::Text, b"again"), at(3));
        assert_eq!(seen, [Seen::Text("again".into())]);
    }

    /// A frame as a client sends it (masked with the §5.7 key).
    fn from_client(fin: bool, opcode: OpCode, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_frame(&mut out, fin, opcode, Some(KEY), payload);
        out
    }

    /// A frame as a server sends it (unmasked).
    fn from_server(opcode: OpCode, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_frame(&mut out, true, opcode, None, payload);
        out
    }

    fn close_payload(code: u16, reason: &str) -> Vec<u8> {
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice(reason.as_bytes());
        payload
    }

    // --- Open: messages, pings, pongs ---

    #[test]
    fn delivers_the_rfc_masked_hello() {
        let mut server = Endpoint::server();
        // RFC 6455 §5.7: "A single-frame masked text message".
        let frame = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        assert_eq!(server.receive(&frame, at(1)), [Seen::Text("Hello".into())]);
        assert!(server.written().is_empty());
    }

    #[test]
    fn answers_a_ping_with_a_pong_carrying_its_payload() {
        let mut server = Endpoint::server();
        // RFC 6455 §5.7: "Unmasked Ping request and masked Ping response" —
        // here the client's masked ping.
        let ping = from_client(true, OpCode::Ping, b"Hello");
        assert_eq!(
            server.receive(&ping, at(1)),
            [Seen::Ping(b"Hello".to_vec())]
        );
        assert_eq!(server.written(), [(OpCode::Pong, b"Hello".to_vec())]);
    }

    #[test]
    fn every_ping_gets_its_pong_while_the_output_flows() {
        let mut server = Endpoint::server();
        let mut burst = Vec::new();
        for payload in [&b"1"[..], b"2", b"3"] {
            burst.extend(from_client(true, OpCode::Ping, payload));
        }
        server.receive(&burst, at(1));
        let pongs: Vec<_> = server.written();
        assert_eq!(
            pongs,
            [
                (OpCode::Pong, b"1".to_vec()),
                (OpCode::Pong, b"2".to_vec()),
                (OpCode::Pong, b"3".to_vec())
            ]
        );
    }

    #[test]
    fn a_burst_of_pings_gets_one_pong_for_the_latest_while_the_output_is_backed_up() {
        let mut server = Endpoint::server();
        server.backed_up = true;
        let mut burst = Vec::new();
        for payload in [&b"1"[..], b"2", b"3"] {
            burst.extend(from_client(true, OpCode::Ping, payload));
        }
        assert_eq!(server.receive(&burst, at(1)).len(), 3);
        // §5.5.3: "If an endpoint receives a Ping frame and has not yet sent
        // Pong frame(s) in response to previous Ping frame(s), the endpoint
        // MAY elect to send a Pong frame for only the most recently processed
        // Ping frame."
        assert_eq!(server.written(), [(OpCode::Pong, b"3".to_vec())]);
    }

    #[test]
    fn an_owed_pong_goes_before_the_next_message() {
        let mut server = Endpoint::server();
        server.backed_up = true;
        let mut input = from_client(true, OpCode::Ping, b"p");
        input.extend(from_client(true, OpCode::Text, b"after"));
        let mut pending = input.clone();
        let mut env = Env {
            now: at(1),
            config: &CONFIG,
            out: &mut server.out,
            keys: None,
            backed_up: true,
            #[cfg(feature = "deflate")]
            deflate: &mut server.shared,
        };
        let first = server
            .session
            .step(&mut server.decoder, &mut pending, &mut env);
        let Step::Event { used, .. } = first else {
            panic!("the ping")
        };
        assert!(env.out.is_empty(), "held while backed up");
        let second = server
            .session
            .step(&mut server.decoder, &mut pending[used..], &mut env);
        assert!(matches!(
            second,
            Step::Event {
                event: Event::Text("after"),
                ..
            }
        ));
        assert_eq!(server.written(), [(OpCode::Pong, b"p".to_vec())]);
    }

    #[test]
    fn a_ping_between_fragments_is_answered_and_the_message_completes() {
        let mut server = Endpoint::server();
        let mut input = from_client(false, OpCode::Text, b"Hel");
        input.extend(from_client(true, OpCode::Ping, b"?"));
        input.extend(from_client(true, OpCode::Continuation, b"lo"));
        // §5.4: control frames may be injected in the middle of a message.
        assert_eq!(
            server.receive(&input, at(1)),
            [Seen::Ping(b"?".to_vec()), Seen::Text("Hello".into())]
        );
        assert_eq!(server.written(), [(OpCode::Pong, b"?".to_vec())]);
    }

    #[test]
    fn every_split_of_the_input_gives_the_same_events_and_frames() {
        let mut input = from_client(false, OpCode::Binary, &[1, 2, 3]);
        input.extend(from_client(true, OpCode::Ping, b"p"));
        input.extend(from_client(true, OpCode::Continuation, &[4]));
        input.extend(from_client(
            true,
            OpCode::Close,
            &close_payload(1000, "bye"),
        ));
        let mut whole = Endpoint::server();
        let expected = whole.receive(&input, at(1));
        assert_eq!(
            expected,
            [
                Seen::Ping(b"p".to_vec()),
                Seen::Binary(vec![1, 2, 3, 4]),
                Seen::Closed(CloseCode::NORMAL, "bye".into())
            ]
        );
        let expected_frames = whole.written();
        for split in 0..=input.len() {
            let mut server = Endpoint::server();
            let (head, tail) = input.split_at(split);
            assert_eq!(
                server.receive_chunks(&[head, tail], at(1)),
                expected,
                "at {split}"
            );
            assert_eq!(server.written(), expected_frames, "at {split}");
        }
        let mut bytewise = Endpoint::server();
        let chunks: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(bytewise.receive_chunks(&chunks, at(1)), expected);
    }

    #[test]
    fn a_server_sends_unmasked_and_a_client_masks_every_frame() {
        let mut server = Endpoint::server();
        server
            .act(at(1), |s, env| s.send(OpCode::Text, b"hi", env))
            .unwrap();
        assert_eq!(server.out, [0x81, 0x02, b'h', b'i']);

        let mut client = Endpoint::client();
        client
            .act(at(1), |s, env| s.send(OpCode::Text, b"Hello", env))
            .unwrap();
        // RFC 6455 §5.7: the masked "Hello" with key 37 fa 21 3d.
        assert_eq!(
            client.out,
            [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]
        );
        let mut unkeyed = Env {
            now: at(1),
            config: &CONFIG,
            out: &mut Vec::new(),
            keys: None,
            backed_up: false,
            #[cfg(feature = "deflate")]
            deflate: &mut Shared::new(0),
        };
        assert_eq!(
            client.session.send(OpCode::Text, b"x", &mut unkeyed),
            Err(SendError::NoMaskKeys)
        );
    }

    #[test]
    fn a_client_rejects_a_masked_frame_from_the_server() {
        let mut client = Endpoint::client();
        let seen = client.receive(&from_client(true, OpCode::Text, b"x"), at(1));
        assert!(matches!(seen[..], [Seen::Failed(MessageError::Frame(_))]));
        // Our Close carries 1002 and is masked, as every client frame (§5.3).
        assert_eq!(client.written(), [(OpCode::Close, close_payload(1002, ""))]);
        assert!(client.session.wants_tcp_close());
    }

    // --- Closing: every path of §7.1 ---

    #[test]
    fn the_peers_close_is_echoed_with_its_code_and_the_server_closes_tcp() {
        let mut server = Endpoint::server();
        let close = from_client(true, OpCode::Close, &close_payload(1000, "bye"));
        assert_eq!(
            server.receive(&close, at(1)),
            [Seen::Closed(CloseCode::NORMAL, "bye".into())]
        );
        // §5.5.1: the response typically echoes the code.
        assert_eq!(server.written(), [(OpCode::Close, close_payload(1000, ""))]);
        assert_eq!(server.session.state(), State::Closed);
        // §7.1.1: the server closes TCP first, at once.
        assert!(server.session.wants_tcp_close());
        assert_eq!(server.session.poll_timeout(&CONFIG), None);
    }

    #[test]
    fn a_close_without_a_code_is_reported_as_1005_and_answered_empty() {
        let mut server = Endpoint::server();
        let close = from_client(true, OpCode::Close, b"");
        assert_eq!(
            server.receive(&close, at(1)),
            [Seen::Closed(CloseCode::NO_STATUS, String::new())]
        );
        // §7.4.1: 1005 is never sent, so the echo has no code.
        assert_eq!(server.written(), [(OpCode::Close, Vec::new())]);
    }

    #[test]
    fn our_close_then_theirs_completes_the_handshake() {
        let mut server = Endpoint::server();
        assert!(server.act(at(1), |s, env| s.close(
            CloseCode::GOING_AWAY,
            "restart",
            env
        )));
        assert!(!server.act(at(1), |s, env| s.close(CloseCode::NORMAL, "again", env)));
        assert_eq!(
            server.written(),
            [(OpCode::Close, close_payload(1001, "restart"))]
        );
        assert_eq!(server.session.state(), State::CloseSent);
        assert_eq!(server.session.poll_timeout(&CONFIG), Some(at(6)));
        let reply = from_client(true, OpCode::Close, &close_payload(1001, ""));
        assert_eq!(
            server.receive(&reply, at(2)),
            [Seen::Closed(CloseCode::GOING_AWAY, String::new())]
        );
        assert!(server.written().is_empty(), "no second Close");
        assert_eq!(server.session.state(), State::Closed);
        assert!(server.session.wants_tcp_close());
    }

    #[test]
    fn no_data_is_sent_after_our_close_and_data_received_is_dropped() {
        let mut server = Endpoint::server();
        server.act(at(1), |s, env| s.close(CloseCode::NORMAL, "", env));
        server.written();
        // §5.5.1: "the endpoint MUST NOT send any more data frames".
        assert_eq!(
            server.act(at(1), |s, env| s.send(OpCode::Text, b"late", env)),
            Err(SendError::Closing)
        );
        assert!(!server.session.can_send());
        let mut input = from_client(true, OpCode::Text, b"still talking");
        input.extend(from_client(true, OpCode::Ping, b""));
        assert_eq!(server.receive(&input, at(2)), [Seen::Ping(Vec::new())]);
        assert!(server.written().is_empty(), "no pong after our Close");
    }

    #[test]
    fn an_owed_pong_is_dropped_when_we_close() {
        let mut server = Endpoint::server();
        server.backed_up = true;
        let mut input = from_client(true, OpCode::Ping, b"p");
        input.extend(from_client(true, OpCode::Close, &close_payload(1000, "")));
        server.receive(&input, at(1));
        // Nothing may follow the Close (§5.5.1), and no pong is needed any more.
        assert_eq!(server.written(), [(OpCode::Close, close_payload(1000, ""))]);
    }

    #[test]
    fn a_protocol_error_fails_the_connection_with_its_code() {
        for (input, code) in [
            // §5.2: RSV bits without an extension.
            (vec![0xC1, 0x80, 0, 0, 0, 0], 1002),
            // §5.4: a continuation with nothing to continue.
            (from_client(true, OpCode::Continuation, b"x"), 1002),
            // §8.1: invalid UTF-8.
            (from_client(true, OpCode::Text, &[0xff]), 1007),
            // §10.4: over the message limit.
            (
                from_client(true, OpCode::Binary, &vec![0; (1 << 16) + 1]),
                1009,
            ),
            // §5.5.1: a Close with a code that is never sent.
            (
                from_client(true, OpCode::Close, &close_payload(1005, "")),
                1002,
            ),
        ] {
            let mut server = Endpoint::server();
            let seen = server.receive(&input, at(1));
            assert!(matches!(seen[..], [Seen::Failed(_)]), "{seen:?}");
            // §7.1.7: our Close with the error's code, then TCP goes.
            assert_eq!(server.written(), [(OpCode::Close, close_payload(code, ""))]);
            assert_eq!(server.session.state(), State::Failed);
            assert!(server.session.wants_tcp_close());
            assert_eq!(server.session.poll_timeout(&CONFIG), None);
        }
    }

    #[test]
    fn a_protocol_error_after_our_close_sends_no_second_close() {
        let mut server = Endpoint::server();
        server.act(at(1), |s, env| s.close(CloseCode::NORMAL, "", env));
        server.written();
        let seen = server.receive(&from_client(true, OpCode::Continuation, b"x"), at(2));
        assert!(matches!(seen[..], [Seen::Failed(_)]));
        assert!(server.written().is_empty());
    }

    #[test]
    fn eof_without_a_close_frame_is_1006() {
        let mut server = Endpoint::server();
        // §7.1.5: no Close frame received → 1006.
        assert_eq!(server.session.on_eof(), Some(CloseCode::ABNORMAL));
        assert_eq!(server.session.state(), State::Gone);

        let mut closing = Endpoint::server();
        closing.act(at(1), |s, env| s.close(CloseCode::NORMAL, "", env));
        assert_eq!(closing.session.on_eof(), Some(CloseCode::ABNORMAL));

        let mut done = Endpoint::server();
        done.receive(&from_client(true, OpCode::Close, b""), at(1));
        assert_eq!(
            done.session.on_eof(),
            None,
            "the close was already reported"
        );
    }

    #[test]
    fn our_close_unanswered_times_out_as_1006() {
        let mut server = Endpoint::server();
        server.act(at(10), |s, env| s.close(CloseCode::NORMAL, "", env));
        assert_eq!(server.act(at(14), |s, env| s.handle_timeout(env)), None);
        assert_eq!(
            server.act(at(15), |s, env| s.handle_timeout(env)),
            Some(Timeout::Close)
        );
        assert_eq!(server.session.state(), State::Gone);
        assert!(server.session.wants_tcp_close());
    }

    #[test]
    fn a_client_waits_for_the_servers_fin_after_the_handshake() {
        let mut client = Endpoint::client();
        let close = from_server(OpCode::Close, &close_payload(1000, ""));
        client.receive(&close, at(3));
        assert_eq!(client.written(), [(OpCode::Close, close_payload(1000, ""))]);
        // §7.1.1: the client waits for the server to close TCP…
        assert!(!client.session.wants_tcp_close());
        assert_eq!(client.session.poll_timeout(&CONFIG), Some(at(8)));
        // …but not forever.
        assert_eq!(
            client.act(at(8), |s, env| s.handle_timeout(env)),
            Some(Timeout::Close)
        );
        assert_eq!(client.session.state(), State::Closed, "still a clean close");
    }

    // --- Heartbeats and idle ---

    #[test]
    fn a_silent_peer_is_pinged_and_any_byte_answers() {
        let mut server = Endpoint::server();
        assert_eq!(server.session.poll_timeout(&CONFIG), Some(at(25)));
        assert_eq!(server.act(at(25), |s, env| s.handle_timeout(env)), None);
        assert_eq!(server.written(), [(OpCode::Ping, Vec::new())]);
        assert_eq!(
            server.session.state(),
            State::Open {
                awaiting_pong: true
            }
        );
        assert_eq!(server.session.poll_timeout(&CONFIG), Some(at(45)));
        // Any byte is a sign of life, not only the pong.
        server.receive(&from_client(true, OpCode::Text, b"here"), at(30));
        assert_eq!(server.session.poll_timeout(&CONFIG), Some(at(55)));
    }

    #[test]
    fn an_unanswered_ping_ends_the_connection_without_a_handshake() {
        let mut server = Endpoint::server();
        server.act(at(25), |s, env| s.handle_timeout(env));
        server.written();
        assert_eq!(server.act(at(44), |s, env| s.handle_timeout(env)), None);
        assert_eq!(
            server.act(at(45), |s, env| s.handle_timeout(env)),
            Some(Timeout::Pong)
        );
        assert!(
            server.written().is_empty(),
            "no Close to a peer that is gone"
        );
        assert_eq!(server.session.state(), State::Gone);
        assert!(server.session.wants_tcp_close());
        assert_eq!(server.session.on_eof(), Some(CloseCode::ABNORMAL));
    }

    #[test]
    fn an_idle_peer_gets_1001_when_pings_are_off() {
        let config = SessionConfig {
            ping_interval: None,
            idle_timeout: Some(Duration::from_secs(60)),
            ..CONFIG
        };
        let mut server = Endpoint::server();
        assert_eq!(server.session.poll_timeout(&config), Some(at(60)));
        let mut env = Env {
            now: at(60),
            config: &config,
            out: &mut server.out,
            keys: None,
            backed_up: false,
            #[cfg(feature = "deflate")]
            deflate: &mut server.shared,
        };
        assert_eq!(server.session.handle_timeout(&mut env), Some(Timeout::Idle));
        assert_eq!(
            server.written(),
            [(OpCode::Close, close_payload(1001, "idle timeout"))]
        );
        assert_eq!(server.session.state(), State::CloseSent);
    }

    #[test]
    fn a_client_pings_masked() {
        let mut client = Endpoint::client();
        client.act(at(25), |s, env| s.handle_timeout(env));
        assert_eq!(
            &client.out[..2],
            [0x89, 0x80],
            "FIN + ping, MASK set, empty"
        );
    }

    #[test]
    fn an_application_ping_leaves_the_heartbeat_alone_and_its_pong_is_reported() {
        let mut client = Endpoint::client();
        client
            .act(at(1), |s, env| s.ping(b"rtt", env))
            .expect("a ping while open");
        assert_eq!(client.written(), [(OpCode::Ping, b"rtt".to_vec())]);
        assert_eq!(
            client.session.state(),
            State::Open {
                awaiting_pong: false
            },
            "not a heartbeat ping"
        );
        let pong = from_server(OpCode::Pong, b"rtt");
        assert_eq!(client.receive(&pong, at(2)), [Seen::Pong(b"rtt".to_vec())]);
        // §5.5: a control frame's payload is at most 125 bytes.
        assert_eq!(
            client.act(at(3), |s, env| s.ping(&[0; 126], env)),
            Err(SendError::ControlTooLong)
        );
        client.act(at(3), |s, env| s.ping(&[0; 125], env)).unwrap();
        client.written();
        client.act(at(4), |s, env| s.close(CloseCode::NORMAL, "", env));
        assert_eq!(
            client.act(at(4), |s, env| s.ping(b"", env)),
            Err(SendError::Closing)
        );
    }

    #[test]
    fn nothing_is_due_for_a_failed_or_closed_server_session() {
        let mut server = Endpoint::server();
        server.receive(&from_client(true, OpCode::Close, b""), at(1));
        assert_eq!(server.act(at(1000), |s, env| s.handle_timeout(env)), None);
    }

    /// permessage-deflate in the session (RFC 7692 §6, §7.2).
    #[cfg(feature = "deflate")]
    mod deflate {
        use super::*;
        use crate::ws::deflate::vectors::{CONTEXT, HELLO, HELLO_AGAIN, NO_CONTEXT};
        use crate::ws::deflate::{
            accept_offer, Deflater, Inflater, ServerConfig, ServerMode, DEFAULT_THRESHOLD,
        };
        use crate::ws::frame::{apply_mask, decode_header, RSV1};

        /// A server that agreed to the offer, in `mode`.
        fn negotiated(offer: &str, mode: ServerMode) -> Endpoint {
            let config = ServerConfig {
                mode,
                ..ServerConfig::default()
            };
            let agreed = accept_offer([offer.as_bytes()], config, &mut Vec::new()).unwrap();
            let (session, decoder) = Session::with_deflate(Role::Server, LIMITS, at(0), agreed);
            Endpoint::with(session, decoder)
        }

        fn shared_server() -> Endpoint {
            negotiated(
                "permessage-deflate; client_max_window_bits",
                ServerMode::Shared,
            )
        }

        /// A client frame, compressed when `rsv1`, masked.
        fn compressed_from_client(opcode: OpCode, payload: &[u8], peer: &mut Deflater) -> Vec<u8> {
            let mut compressed = Vec::new();
            peer.compress_message(payload, &mut compressed);
            let mut out = from_client(true, opcode, &compressed);
            out[0] |= RSV1;
            out
        }

        /// The frames written since the last call: (RSV1, opcode, payload
        /// inflated by `peer` when RSV1 is set).
        fn written_inflated(
            server: &mut Endpoint,
            peer: &mut Inflater,
        ) -> Vec<(bool, OpCode, Vec<u8>)> {
            let mut frames = Vec::new();
            let mut rest = &server.out[..];
            while let Ok(Some((header, len))) = decode_header(rest, Role::Client, 1 << 20, true) {
                let end = len + header.payload_len as usize;
                let mut payload = rest[len..end].to_vec();
                if let Some(key) = header.mask {
                    apply_mask(&mut payload, key, 0);
                }
                if header.rsv1 {
                    let mut inflated = Vec::new();
                    peer.inflate_message(&payload, 1 << 20, &mut inflated)
                        .unwrap();
                    payload = inflated;
                }
                frames.push((header.rsv1, header.opcode, payload));
                rest = &rest[end..];
            }
            assert!(rest.is_empty(), "whole frames only");
            server.out.clear();
            frames
        }

        fn json(len: usize) -> Vec<u8> {
            let mut text = Vec::new();
            let mut n = 0;
            while text.len() < len {
                text.extend_from_slice(format!("{{\"id\":{n},\"data\":\"hello\"}},").as_bytes());
                n += 1;
            }
            text.truncate(len);
            text
        }

        #[test]
        fn rfc7692_7_2_3_1_hello_arrives_inflated() {
            let mut server = shared_server();
            let mut input = from_client(true, OpCode::Text, &HELLO);
            input[0] |= RSV1;
            assert_eq!(server.receive(&input, at(1)), [Seen::Text("Hello".into())]);
            assert_eq!(server.shared.counters.messages_received, 1);
            assert_eq!(server.shared.counters.received_bytes_after, 5);
        }

        #[test]
        fn sends_compressed_from_the_threshold_on() {
            let mut server = shared_server();
            let mut peer = Inflater::new(NO_CONTEXT);
            let below = json(DEFAULT_THRESHOLD - 1);
            let at_threshold = json(DEFAULT_THRESHOLD);
            server
                .act(at(1), |s, env| s.send(OpCode::Text, &below, env))
                .unwrap();
            server
                .act(at(1), |s, env| s.send(OpCode::Text, &at_threshold, env))
                .unwrap();
            let frames = written_inflated(&mut server, &mut peer);
            assert_eq!(
                frames,
                [
                    (false, OpCode::Text, below),
                    (true, OpCode::Text, at_threshold.clone())
                ]
            );
            let counters = server.shared.counters;
            assert_eq!((counters.messages_sent, counters.compressions), (1, 1));
            assert_eq!(counters.sent_bytes_before, at_threshold.len() as u64);
            assert!(counters.sent_bytes_after < counters.sent_bytes_before / 2);
        }

        #[test]
        fn control_frames_are_never_compressed() {
            let mut server = shared_server();
            server.shared = Shared::new(0);
            let mut peer = Inflater::new(NO_CONTEXT);
            let ping = from_client(true, OpCode::Ping, &json(100));
            server.receive(&ping, at(1));
            server.act(at(1), |s, env| s.close(CloseCode::NORMAL, "bye", env));
            let frames = written_inflated(&mut server, &mut peer);
            assert_eq!(frames.len(), 2);
            assert!(frames.iter().all(|(rsv1, _, _)| !rsv1), "{frames:?}");
        }

        #[test]
        fn the_app_sends_on_the_session_while_it_reads_an_inflated_message() {
            let mut server = shared_server();
            let mut client = Deflater::new(NO_CONTEXT);
            let message = json(4000);
            let mut input = compressed_from_client(OpCode::Text, &message, &mut client);
            let Endpoint {
                session,
                decoder,
                out,
                keys,
                shared,
                ..
            } = &mut server;
            let mut env = Env {
                now: at(1),
                config: &CONFIG,
                out,
                keys: Some(keys),
                backed_up: false,
                deflate: shared,
            };
            let Step::Event {
                event: Event::Text(text),
                ..
            } = session.step(decoder, &mut input, &mut env)
            else {
                panic!("no text");
            };
            // The message borrows the decoder; the session and the shared
            // compressor are free for the answer.
            session
                .send(OpCode::Text, text.as_bytes(), &mut env)
                .unwrap();
            assert_eq!(text.as_bytes(), &message[..]);
            let frames = written_inflated(&mut server, &mut Inflater::new(NO_CONTEXT));
            assert_eq!(frames, [(true, OpCode::Text, message)]);
        }

        #[test]
        fn a_bomb_fails_the_session_with_1009() {
            let mut server = shared_server();
            let mut client = Deflater::new(NO_CONTEXT);
            // ~1 KiB on the wire, 1 MiB inflated; the limit is 64 KiB.
            let input = compressed_from_client(OpCode::Binary, &vec![0; 1 << 20], &mut client);
            assert!(input.len() < 1200, "{}", input.len());
            assert_eq!(
                server.receive(&input, at(1)),
                [Seen::Failed(MessageError::InflatesTooBig)]
            );
            assert_eq!(server.written(), [(OpCode::Close, close_payload(1009, ""))]);
            assert_eq!(server.session.state(), State::Failed);
            assert_eq!(server.decoder.buffered_bytes(), 0);
        }

        #[test]
        fn inflated_text_that_is_not_utf8_fails_the_session_with_1007() {
            let mut server = shared_server();
            let mut client = Deflater::new(NO_CONTEXT);
            let input = compressed_from_client(OpCode::Text, b"\xc3\x28 not UTF-8", &mut client);
            assert_eq!(
                server.receive(&input, at(1)),
                [Seen::Failed(MessageError::InvalidUtf8)]
            );
            assert_eq!(server.written(), [(OpCode::Close, close_payload(1007, ""))]);
        }

        #[test]
        fn a_session_without_deflate_fails_on_rsv1_with_1002() {
            let mut server = Endpoint::server();
            let mut input = from_client(true, OpCode::Text, &HELLO);
            input[0] |= RSV1;
            assert_eq!(
                server.receive(&input, at(1)),
                [Seen::Failed(MessageError::Frame(
                    crate::ws::frame::FrameError::ReservedBits
                ))]
            );
            assert_eq!(server.written(), [(OpCode::Close, close_payload(1002, ""))]);
            assert_eq!(server.session.send_mode(), SendMode::Off);
        }

        #[test]
        fn with_context_takeover_each_direction_keeps_its_own_window() {
            let mut server = negotiated("permessage-deflate", ServerMode::ContextTakeover);
            assert_eq!(server.session.send_mode(), SendMode::Own);
            // RFC 7692 §7.2.3.2: the second "Hello" refers to the first.
            let mut first = from_client(true, OpCode::Text, &HELLO);
            first[0] |= RSV1;
            let mut second = from_client(true, OpCode::Text, &HELLO_AGAIN);
            second[0] |= RSV1;
            assert_eq!(
                server.receive(&[first, second].concat(), at(1)),
                [Seen::Text("Hello".into()), Seen::Text("Hello".into())]
            );
            // Sending: alike messages after the first are far smaller, made
            // from it; a peer that keeps every message inflates them all.
            let message = json(2000);
            let mut ends = Vec::new();
            for _ in 0..3 {
                server
                    .act(at(1), |s, env| s.send(OpCode::Text, &message, env))
                    .unwrap();
                ends.push(server.out.len());
            }
            let sizes = [ends[0], ends[1] - ends[0], ends[2] - ends[1]];
            assert!(
                sizes[1] * 2 < sizes[0] && sizes[2] * 2 < sizes[0],
                "{sizes:?}"
            );
            let mut peer = Inflater::new(CONTEXT);
            let frames = written_inflated(&mut server, &mut peer);
            assert_eq!(frames, vec![(true, OpCode::Text, message.clone()); 3]);
            assert_eq!(server.shared.counters.compressions, 3);
            // Under the threshold a message goes as it is; from it on, even one
            // that grows goes compressed: once in our window it must be in
            // the peer's too (§7.1.1).
            server
                .act(at(1), |s, env| s.send(OpCode::Binary, &[7, 1, 9, 3], env))
                .unwrap();
            let mut peer_after = peer;
            server.shared = Shared::new(0);
            server
                .act(at(1), |s, env| s.send(OpCode::Binary, &[7, 1, 9, 3], env))
                .unwrap();
            let frames = written_inflated(&mut server, &mut peer_after);
            assert_eq!(
                frames,
                [
                    (false, OpCode::Binary, vec![7, 1, 9, 3]),
                    (true, OpCode::Binary, vec![7, 1, 9, 3])
                ]
            );
        }
    }
}
