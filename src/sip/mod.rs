//! SIP: the sans-IO core for simulated SIP peers and the reference gateway.
//!
//! Nothing here touches a socket or reads a clock: bytes come in as slices, time as an
//! `Instant` argument, and everything that needs I/O leaves as an output value.
//!
//! - [`message`]: requests, responses, the ordered header multimap (RFC 3261 §7).
//! - [`codec`]: the strict parser and its errors (RFC 3261 §7, §25).
//! - [`framing`]: one message per UDP datagram, a stream decoder for TCP (RFC 3261 §18.3).
//! - [`headers`]: typed header values (Via, From/To, CSeq, Event, Subscription-State, ...).
//! - [`validate`]: the receiver's mandatory-header check, with the status to answer.
//! - [`transaction`]: non-INVITE client and server transactions (RFC 3261 §17.1.2, §17.2.2).
//! - [`dialog`]: dialog state and subscriptions for SUBSCRIBE/NOTIFY (RFC 6665).
//! - [`builder`]: requests and responses with what a SIP stack must add (RFC 3261 §8).
//!
//! The parser is hand-written rather than built on `rsip`: the harness must tell *which*
//! rule a peer broke (bare LF, duplicated Content-Length, a header line without colon),
//! reject what lenient parsers accept, and keep header order and spelling for snapshots;
//! it also spares a dependency tree on a small build machine.

pub mod builder;
pub mod codec;
pub mod dialog;
pub mod framing;
pub mod headers;
pub mod message;
pub mod transaction;
pub mod validate;

pub use builder::{
    Local, OsRandom, RandomSource, RequestBuilder, ResponseBuilder, SeededRandom, parse_payload,
};
pub use codec::{Limits, ParseError, StartLineError, TextPart};
pub use dialog::{Dialog, DialogError, DialogId, Subscription};
pub use framing::{Item, Keepalive, StreamDecoder, parse_datagram};
pub use headers::{
    CSeq, ContentType, Event, HeaderError, NameAddr, Params, SubState, SubscriptionState, Via,
};
pub use message::{Header, Headers, Message, Method, Request, Response, Uri, Version};
pub use transaction::{
    ClientInput, ClientOutput, ClientTransaction, Reliability, ServerInput, ServerOutput,
    ServerTransaction, Timers, TransactionError,
};
pub use validate::{ValidationError, validate_request, validate_response};

#[cfg(test)]
mod tests;
