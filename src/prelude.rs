//! The names almost every application uses: `use pushloop::prelude::*;`.
//!
//! One `Message` (the app's), one `Payload`, the ids, the trait and the
//! context, HTTP requests and responses, close codes and the server.

pub use crate::app::{
    Accept, App, ConnId, Context, Message, Reply, SendError, TimerId, TopicId, Upgrading,
};
pub use crate::feeds::{Payload, PublishError, TopicError};
pub use crate::http::{Request, Response};
pub use crate::limits::Limits;
pub use crate::server::{signal, Config, Handle, HandleError, OwnedPayload, Server, Stats};
pub use crate::ws::close::CloseCode;
pub use crate::ws::handshake::Upgrade;
