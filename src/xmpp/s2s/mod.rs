//! Sans-IO server-to-server sessions (RFC 6120 §4–§6, XEP-0220 Server Dialback, XEP-0178
//! SASL EXTERNAL).
//!
//! Two session types, one per TCP connection:
//! - [`InboundSession`]: the peer opened the stream. We act as *receiving server* (its
//!   `<db:result>` requests) and as *authoritative server* (its `<db:verify>` requests).
//! - [`OutboundSession`]: we opened the stream to a remote domain. We act as *initiating
//!   server* (our `<db:result>`, queueing stanzas until `valid`) and, piggybacked on the same
//!   stream, as *receiving server asking the authoritative server* (`<db:verify>`).
//!
//! Neither touches a socket or a clock: bytes come in as [`Input::Data`], time as an
//! `Instant` argument, and everything that needs I/O leaves as an [`Output`] (quinn-proto,
//! str0m style). After every call, drain [`poll_output`](InboundSession::poll_output); then
//! arm a timer for [`poll_timeout`](InboundSession::poll_timeout) and call `handle_timeout`
//! when it fires.
//!
//! A failed session stays failed: once it has sent a stream error or closed, every later
//! call returns the same [`Error`] and produces nothing (rustls `conn/mod.rs`).
//!
//! TLS and SASL: the sessions negotiate STARTTLS (RFC 6120 §5) and SASL EXTERNAL (§6) per
//! the partner's [`PartnerPolicy`] (MS-06..MS-09), but never do crypto. After `<proceed/>`
//! a session emits [`Output::UpgradeTls`]; the driver runs the handshake and answers with
//! [`Input::TlsEstablished`] carrying its [`CertVerdict`] on the peer's certificate (from
//! [`crate::tls::verify_peer`]), or [`Input::TlsFailed`]. Each restart (after TLS, after
//! SASL success) gets a fresh stream id (STR-05).

pub mod features;
mod inbound;
mod outbound;
pub mod policy;
#[cfg(test)]
mod tests;

use std::time::Duration;

pub use inbound::InboundSession;
pub use outbound::OutboundSession;
pub use policy::{Method, Negotiation, PartnerPolicy, Policies, PolicyRule};

use crate::tls::CertVerdict;

#[cfg(test)]
use super::codec::StreamHeader;
use super::codec::{CodecError, Limits};
use super::conditions::{StanzaCondition, StanzaError, StreamCondition, StreamError};
use super::element::{Element, NsContext, push_escaped_attr};
use super::ns;

/// Settings shared by every session of one server (one `Arc` per proxy instance).
#[derive(Debug, Clone)]
pub struct LocalConfig {
    /// Domains served here, for S2S: our own domains first (the first is the primary one,
    /// used when a peer names none), then component domains. A stream or stanza addressed
    /// to anything else gets `host-unknown` (RFC 6120 §4.9.3.6).
    pub domains: Vec<String>,
    /// XEP-0185 secret for dialback keys.
    pub dialback_secret: String,
    pub timeouts: Timeouts,
    pub limits: SessionLimits,
    /// Negotiation policy per partner domain (MS-06..MS-09).
    pub policies: Policies,
    /// What TLS we can do at all; policy can only narrow it.
    pub tls: TlsAbility,
}

/// Whether this server has what TLS needs (RFC 6120 §5.4.3.1, §13.7.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TlsAbility {
    /// We have a certificate and key: we can answer `<starttls/>` with `<proceed/>`.
    pub server: bool,
    /// We present a client certificate when we initiate: SASL EXTERNAL is possible.
    pub client_cert: bool,
}

impl LocalConfig {
    /// Dialback only, no TLS (the MS-12 profile), default timeouts and limits: what a
    /// server without certificates does.
    pub fn new(domains: &[&str], dialback_secret: &str) -> Self {
        LocalConfig {
            domains: domains.iter().map(|d| d.to_string()).collect(),
            dialback_secret: dialback_secret.to_string(),
            timeouts: Timeouts::default(),
            limits: SessionLimits::default(),
            policies: Policies::uniform(PartnerPolicy::DIALBACK_ONLY),
            tls: TlsAbility::default(),
        }
    }

    /// The policy that applies to `partner` (lowercase or not).
    pub fn policy(&self, partner: &str) -> &PartnerPolicy {
        self.policies.for_domain(partner)
    }

    /// Is `domain` one we serve? Domains compare case-insensitively (RFC 7622 §3.2 lowercases
    /// domainparts; we do not implement full IDNA mapping here).
    pub fn serves(&self, domain: &str) -> bool {
        self.domains.iter().any(|d| d.eq_ignore_ascii_case(domain))
    }

    /// The primary domain: the `from` we use when a peer does not name one of ours.
    pub fn primary(&self) -> &str {
        self.domains.first().map(String::as_str).unwrap_or("")
    }
}

/// Timeouts of the negotiation (XEP-0220 §2.1.1: "the Initiating Server MAY impose a
/// timeout on dialback operations").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// From TCP connect until the stream is usable (header and features received, or for an
    /// inbound stream: header received and a first dialback element seen).
    pub establish: Duration,
    /// Waiting for a `<db:result type=…>` or `<db:verify type=…>` answer, and on the
    /// receiving side for the verdict of the authoritative server.
    pub dialback: Duration,
    /// A stream with no traffic at all for this long is closed (RFC 6120 §4.6.3 asks for
    /// leniency, so keep it generous).
    pub idle: Duration,
    /// Send a whitespace keepalive when we wrote nothing for this long on an established
    /// stream (RFC 6120 §4.6.1, KA-01); `None`: never.
    pub keepalive_send: Option<Duration>,
    /// For partners with `keepalive` set (EnableKeepAlive, MS-10): an established stream
    /// from which nothing arrived for this long is closed with `connection-timeout`.
    pub keepalive_expect: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            establish: Duration::from_secs(30),
            dialback: Duration::from_secs(30),
            idle: Duration::from_secs(600),
            keepalive_send: None,
            // MS-10 KeepAliveInterval default.
            keepalive_expect: Duration::from_secs(300),
        }
    }
}

/// Per-stream resource limits (RFC 6120 §13.12).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    pub codec: Limits,
    /// Domain pairs (verified or pending) on one stream; more get a `resource-constraint`
    /// dialback error (XEP-0220 §2.5).
    pub max_pairs: usize,
    /// Stanzas held per pair while dialback is pending; more are bounced with
    /// `resource-constraint`.
    pub max_queued: usize,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            codec: Limits::default(),
            max_pairs: 64,
            max_queued: 1000,
        }
    }
}

/// The verdict on one dialback key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Valid,
    Invalid,
    /// Verification could not be done (XEP-0220 §2.5 dialback error conditions).
    Error(StanzaCondition),
}

/// A key that needs checking by the originating domain's authoritative server
/// (XEP-0220 §2.1.2, step 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyRequest {
    /// The Sender Domain, whose authoritative server must be asked.
    pub originating: String,
    /// Our domain the peer wants to send to.
    pub receiving: String,
    /// The id of the response header we sent on the stream that carried the `<db:result>`.
    pub stream_id: String,
    pub key: String,
}

/// What a session hands to its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Bytes to write, in order. Consecutive writes are coalesced into one.
    Transmit(Vec<u8>),
    /// Inbound: ask `originating`'s authoritative server about a key; answer with
    /// [`Input::VerifyResult`].
    VerifyRequest(VerifyRequest),
    /// Outbound: the answer to [`OutboundSession::request_verify`].
    VerifyResult {
        originating: String,
        receiving: String,
        stream_id: String,
        result: Verdict,
    },
    /// Inbound: a domain pair became usable (logging, metrics).
    PairVerified {
        originating: String,
        receiving: String,
    },
    /// Outbound: our pair `(from, to)` was accepted by the peer.
    PairAuthorized { from: String, to: String },
    /// An accepted stanza (inbound S2S, or from a component) for the router.
    Stanza(Element),
    /// A ready-made error reply to a stanza we could not deliver (RFC 6120 §8.3.1), for the
    /// router to hand back to its sender.
    Bounce(Element),
    /// Component streams: the component authenticated for this domain.
    ComponentReady(String),
    /// Write what was transmitted so far, then run the TLS handshake on this connection
    /// (RFC 6120 §5.4.3: right after `<proceed/>`) — as TLS server on an inbound stream, as
    /// client on an outbound one — and report with [`Input::TlsEstablished`] or
    /// [`Input::TlsFailed`]. Feed no data before that.
    UpgradeTls,
    /// Inbound: the peer named its domain in a stream header (for per-partner connection
    /// limits and logs; again after each restart if it changes).
    Partner(String),
    /// The stream is over: write what was transmitted, then close the TCP connection.
    /// `Some` when we sent a stream error.
    Close(Option<StreamError>),
}

/// What a driver feeds into a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input<'a> {
    /// Bytes read from the socket.
    Data(&'a [u8]),
    /// The peer closed its side of the TCP connection.
    Eof,
    /// Inbound sessions: the authoritative server's answer about a pending `<db:result>`
    /// (the reply to [`Output::VerifyRequest`]).
    VerifyResult {
        originating: String,
        receiving: String,
        result: Verdict,
    },
    /// The TLS handshake asked for by [`Output::UpgradeTls`] completed. `peer` is the
    /// driver's verdict on the certificate the peer presented (`None`: none was presented),
    /// from [`crate::tls::verify_peer`] with the peer's role.
    TlsEstablished { peer: Option<CertVerdict> },
    /// The TLS handshake failed: the session ends without writing anything (RFC 6120
    /// §5.4.3.2: the receiving entity closes the TCP connection, TLS-03).
    TlsFailed,
}

/// How a peer broke the protocol, each mapped to the stream error we sent
/// (rustls `PeerMisbehaved` → alert).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerMisbehaved {
    /// The stream element is not in `http://etherx.jabber.org/streams` (RFC 6120 §4.8.1).
    WrongStreamNamespace,
    /// Content namespace is not the one this stream type needs (RFC 6120 §4.8.2, XEP-0114).
    WrongContentNamespace,
    /// The header's `to` is not served here (RFC 6120 §4.9.1.3, §4.9.3.6).
    UnknownHost,
    /// `version` is not `major.minor` (RFC 6120 §4.7.5).
    MalformedVersion,
    /// A stanza before any domain pair was verified (RFC 6120 §4.3.5, §4.9.3.12).
    StanzaBeforeAuth,
    /// Stanza without valid `to`/`from` (RFC 6120 §8.1.1.2, §4.9.3.7).
    ImproperAddressing,
    /// Stanza `from` a domain not verified on this stream (RFC 6120 §4.9.3.9).
    InvalidFrom,
    /// Stanza `to` a domain not served or not validated for this stream (RFC 6120 §4.9.3.6).
    UnknownTo,
    /// A top-level element we do not know (RFC 6120 §4.9.3.23).
    UnsupportedElement,
    /// A stanza on a stream we initiated (RFC 6120 §4.5: streams are unidirectional).
    StanzaOnOutbound,
    /// A dialback element without the attributes XEP-0220 §2 requires.
    DialbackAddressing,
    /// XEP-0114 §3: wrong `<handshake/>`.
    BadHandshake,
    /// Nothing usable arrived in time (RFC 6120 §4.9.3.4).
    Timeout,
    /// The response header lacks the `id` dialback keys need (RFC 6120 §4.7.3).
    MissingStreamId,
    /// A stream header where content belongs, or content before the header. The decoder
    /// only yields headers in the prolog, so this guards the session's totality.
    UnexpectedStreamEvent,
    /// Bytes after `<starttls/>` (or `<proceed/>`) before the TLS handshake: plaintext
    /// that would be read as if protected (RFC 6120 §5.4.3.3, the STARTTLS injection bug).
    DataBeforeTls,
    /// More failed SASL attempts than we allow (RFC 6120 §6.4.5, SASL-06).
    TooManyAuthFailures,
    /// No authentication method that both local policy and the peer can use remains
    /// (RFC 6120 §6.4.5 implementation note, SASL-09).
    NoAcceptableAuth,
    /// An EnableKeepAlive partner sent nothing in time (MS-10; RFC 6120 §4.9.3.4).
    KeepAliveMissing,
    /// A SASL or TLS element out of sequence (e.g. `<auth/>` after success).
    OutOfSequence,
    /// The receiving server's certificate does not authenticate the domain we dialled,
    /// and policy leaves no dialback to fall back on (RFC 6120 §13.7.2.1, CERT-04).
    UnauthenticatedServer,
}

impl PeerMisbehaved {
    /// The stream error condition sent for each misbehaviour, as one table.
    pub fn condition(self) -> StreamCondition {
        use PeerMisbehaved as P;
        use StreamCondition as C;
        match self {
            P::WrongStreamNamespace | P::WrongContentNamespace => C::InvalidNamespace,
            P::UnknownHost | P::UnknownTo => C::HostUnknown,
            P::MalformedVersion => C::UnsupportedVersion,
            P::StanzaBeforeAuth | P::StanzaOnOutbound | P::BadHandshake => C::NotAuthorized,
            P::ImproperAddressing | P::DialbackAddressing => C::ImproperAddressing,
            P::InvalidFrom => C::InvalidFrom,
            P::UnsupportedElement => C::UnsupportedStanzaType,
            P::Timeout => C::ConnectionTimeout,
            P::MissingStreamId => C::BadFormat,
            P::UnexpectedStreamEvent => C::NotWellFormed,
            P::DataBeforeTls | P::TooManyAuthFailures | P::NoAcceptableAuth => C::PolicyViolation,
            P::KeepAliveMissing => C::ConnectionTimeout,
            P::OutOfSequence | P::UnauthenticatedServer => C::PolicyViolation,
        }
    }
}

/// The error type of this module (and of [`crate::xmpp::component`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("peer misbehaved ({0:?}): sent stream error {cond}", cond = .0.condition())]
    PeerMisbehaved(PeerMisbehaved),
    #[error("undecodable input: {0}")]
    Codec(CodecError),
    #[error("peer sent stream error: {0}")]
    PeerStreamError(StreamError),
    #[error("peer needs what we do not offer: {0}")]
    PeerIncompatible(&'static str),
    #[error("connection closed before the negotiation ended")]
    ConnectionLost,
    #[error("stream closed locally")]
    LocallyClosed,
    #[error("this input does not apply to this kind of session")]
    Misuse,
    #[error("TLS handshake failed")]
    TlsFailed,
}

/// Which timer fired (quinn `connection/timer.rs`): the session keeps one deadline per kind
/// plus per-pair deadlines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Timer {
    Establish,
    Idle,
    /// Time to send a whitespace keepalive.
    KeepAliveSend,
    /// An EnableKeepAlive partner's keepalive is overdue.
    KeepAliveExpect,
}

/// A fresh stream id for the stream restarted `n` times after the one with id `base`
/// (RFC 6120 §4.3.3, STR-05: a new id after TLS and after SASL). `base` went out in the
/// clear, so the id is keyed with the dialback secret: still unpredictable (DB-16), and
/// the session needs no randomness of its own.
pub(crate) fn restart_id(secret: &str, base: &str, n: u32) -> String {
    use hmac::{Hmac, Mac};
    use sha2::Sha256;
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    mac.update(b"fedcheck stream restart ");
    mac.update(base.as_bytes());
    mac.update(&n.to_be_bytes());
    let full = mac.finalize().into_bytes();
    hex::encode(full.get(..16).unwrap_or(&full))
}

/// Parse `major.minor` (RFC 6120 §4.7.5: each part an integer, leading zeros ignored, so
/// "1.10" is above "1.9").
pub(crate) fn parse_version(v: &str) -> Option<(u32, u32)> {
    let (a, b) = v.trim().split_once('.')?;
    if a.is_empty()
        || b.is_empty()
        || !a.bytes().all(|c| c.is_ascii_digit())
        || !b.bytes().all(|c| c.is_ascii_digit())
    {
        return None;
    }
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// Byte classes for [`jid_domain`]'s ASCII fast path: bit set = the byte may not appear in
/// that part. Bytes from 0x80 up are marked [`NON_ASCII`] and take the `char` path.
const BAD_LOCAL: u8 = 1;
const BAD_DOMAIN: u8 = 2;
const BAD_RESOURCE: u8 = 4;
const BAD_LABEL: u8 = 8;
const NON_ASCII: u8 = 16;

/// The table behind [`jid_domain`]: built once at compile time, so a stanza's addresses
/// cost one lookup per byte instead of a string search per character (DESIGN §6).
static JID_BYTES: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0usize;
    while b < 256 {
        let c = b as u8;
        t[b] = if c >= 0x80 {
            NON_ASCII
        } else if c < 0x20 || c == 0x7f {
            // Controls (`char::is_control`), which include ASCII whitespace but the space.
            BAD_LOCAL | BAD_DOMAIN | BAD_RESOURCE
        } else {
            match c {
                // RFC 7622 §3.4: a resourcepart may contain spaces.
                b' ' => BAD_LOCAL | BAD_DOMAIN,
                // RFC 7622 §3.3.1.
                b'"' | b'&' | b'\'' | b'<' | b'>' => BAD_LOCAL | BAD_DOMAIN,
                b'/' | b'@' => BAD_LOCAL | BAD_DOMAIN,
                b':' => BAD_LOCAL | BAD_LABEL,
                b'\\' | b'?' | b'#' | b'%' | b',' => BAD_DOMAIN,
                b'[' | b']' => BAD_LABEL,
                _ => 0,
            }
        };
        b += 1;
    }
    t
};

/// One part of a JID: non-empty, at most 1023 bytes (RFC 7622 §3.1), no control
/// character and nothing `mask` (ASCII) or `bad` (beyond ASCII) rules out.
fn jid_part_ok(p: &str, mask: u8, bad: fn(char) -> bool) -> bool {
    const MAX: usize = 1023; // RFC 7622 §3.1
    if p.is_empty() || p.len() > MAX {
        return false;
    }
    for (i, b) in p.bytes().enumerate() {
        let class = JID_BYTES[usize::from(b)];
        if class & NON_ASCII != 0 {
            // Everything before `i` is ASCII, so `i` is a char boundary.
            return p.get(i..).is_some_and(|rest| {
                rest.chars().all(|c| match u8::try_from(c) {
                    Ok(a) if a.is_ascii() => JID_BYTES[usize::from(a)] & mask == 0,
                    _ => !c.is_control() && !bad(c),
                })
            });
        }
        if class & mask != 0 {
            return false;
        }
    }
    true
}

/// `s` split around the first `b` (an ASCII byte, so both sides are whole characters):
/// a plain loop, cheaper than a `char` pattern search on strings this short.
fn split_at_byte(s: &str, b: u8) -> Option<(&str, &str)> {
    let i = s.bytes().position(|c| c == b)?;
    Some((s.get(..i)?, s.get(i + 1..)?))
}

/// The domainpart of a JID, or `None` when the address is not a valid JID
/// (RFC 7622 §3: `[local@]domain[/resource]`, the structural rules of
/// [`crate::xmpp::jid::Jid::parse`]), without allocating: this runs on every stanza.
/// The result keeps its case (and loses one trailing dot); compare it case-insensitively.
pub fn jid_domain(jid: &str) -> Option<&str> {
    let (bare, resource) = match split_at_byte(jid, b'/') {
        Some((b, r)) => (b, Some(r)),
        None => (jid, None),
    };
    // RFC 7622 §3.4: the resourcepart may contain spaces but no other whitespace.
    if resource.is_some_and(|r| !jid_part_ok(r, BAD_RESOURCE, char::is_whitespace)) {
        return None;
    }
    let domain = match split_at_byte(bare, b'@') {
        Some((local, d)) => {
            // RFC 7622 §3.3.1: characters a localpart must not contain.
            if !jid_part_ok(local, BAD_LOCAL, char::is_whitespace) {
                return None;
            }
            d
        }
        None => bare,
    };
    let domain = domain.strip_suffix('.').unwrap_or(domain);
    if !jid_part_ok(domain, BAD_DOMAIN, char::is_whitespace) {
        return None;
    }
    if let Some(inner) = domain.strip_prefix('[') {
        // RFC 3986 IP-literal (IPv6).
        let inner = inner.strip_suffix(']')?;
        let ok = !inner.is_empty()
            && inner
                .bytes()
                .all(|c| c.is_ascii_hexdigit() || c == b':' || c == b'.');
        return ok.then_some(domain);
    }
    // RFC 1035 §2.3.4 labels, as RFC 7622 §3.2 inherits them: 1..=63 bytes each.
    let mut label = 0usize;
    for b in domain.bytes() {
        if b == b'.' {
            if label == 0 {
                return None;
            }
            label = 0;
        } else if JID_BYTES[usize::from(b)] & BAD_LABEL != 0 {
            return None;
        } else {
            label += 1;
            if label > 63 {
                return None;
            }
        }
    }
    (label > 0).then_some(domain)
}

/// Namespace context of what we write on an S2S stream: our header binds the default
/// namespace, `stream:` and `db:` (XEP-0220 §2.4.1).
pub(crate) fn s2s_write_ctx() -> NsContext {
    NsContext::new(ns::SERVER)
        .with_prefix("stream", ns::STREAM)
        .with_prefix("db", ns::DIALBACK)
}

/// Fields of a stream header we write.
pub(crate) struct HeaderOut<'a> {
    pub content_ns: &'a str,
    pub from: Option<&'a str>,
    pub to: Option<&'a str>,
    pub id: Option<&'a str>,
    pub version: Option<&'a str>,
    pub lang: Option<&'a str>,
    pub dialback: bool,
}

impl HeaderOut<'_> {
    /// `<?xml version='1.0'?><stream:stream …>` (RFC 6120 §4.7, §11.5: the XML declaration
    /// is recommended).
    pub fn to_xml(&self) -> String {
        let mut out = String::with_capacity(320);
        self.write_to(&mut out);
        out
    }

    /// [`HeaderOut::to_xml`] into an existing buffer. Written directly rather than through
    /// a [`StreamHeader`], which costs dozens of allocations per stream set-up (DESIGN §6);
    /// the bytes are the same as `StreamHeader::s2s` / `StreamHeader::component` give
    /// (declarations first, then from, to, id, version, xml:lang), a test holds them equal.
    pub fn write_to(&self, out: &mut String) {
        let component = self.content_ns == ns::COMPONENT_ACCEPT;
        out.push_str("<?xml version='1.0'?><stream:stream xmlns='");
        out.push_str(if component {
            ns::COMPONENT_ACCEPT
        } else {
            ns::SERVER
        });
        out.push_str("' xmlns:stream='");
        out.push_str(ns::STREAM);
        out.push('\'');
        if self.dialback && !component {
            out.push_str(" xmlns:db='");
            out.push_str(ns::DIALBACK);
            out.push('\'');
        }
        // XEP-0114 §3: a component stream header carries no version.
        let version = if component { None } else { self.version };
        for (name, value) in [
            ("from", self.from),
            ("to", self.to),
            ("id", self.id),
            ("version", version),
            ("xml:lang", self.lang),
        ] {
            if let Some(v) = value {
                out.push(' ');
                out.push_str(name);
                out.push_str("='");
                push_escaped_attr(out, v);
                out.push('\'');
            }
        }
        out.push('>');
    }

    /// The header as [`StreamHeader`] writes it: the reference for [`HeaderOut::write_to`].
    #[cfg(test)]
    fn via_stream_header(&self) -> String {
        let mut h = if self.content_ns == ns::COMPONENT_ACCEPT {
            StreamHeader::component(self.from, self.to, self.id)
        } else {
            StreamHeader::s2s(self.from, self.to, self.id, self.version, self.dialback)
        };
        if let Some(l) = self.lang {
            h = h.with_lang(l);
        }
        h.to_xml(true)
    }
}

/// `</stream:stream>` (RFC 6120 §4.4).
pub(crate) const STREAM_CLOSE: &str = "</stream:stream>";

/// Output queue with write coalescing: everything written between two non-transmit outputs
/// goes into one buffer (one allocation, one write for the driver; DESIGN §6).
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    q: std::collections::VecDeque<Output>,
    pending: String,
    /// Something was written since the last [`Outbox::take_wrote`] (keepalive timer).
    wrote: bool,
}

/// Room reserved when the pending bytes start anew: a stanza or a stream header fits,
/// so serialising it costs one allocation instead of a chain of doublings. The buffer
/// leaves with its `Transmit`, so an idle stream holds none of it.
const PENDING_START: usize = 512;

impl Outbox {
    fn room(&mut self) {
        if self.pending.capacity() == 0 {
            self.pending.reserve(PENDING_START);
        }
    }
    pub fn transmit(&mut self, text: &str) {
        self.room();
        self.pending.push_str(text);
        self.wrote = true;
    }
    /// Our stream header, written straight into the pending bytes.
    pub fn header(&mut self, h: &HeaderOut<'_>) {
        self.room();
        h.write_to(&mut self.pending);
        self.wrote = true;
    }
    pub fn element(&mut self, el: &Element, ctx: &NsContext) {
        self.room();
        el.write_xml(&mut self.pending, ctx);
        self.wrote = true;
    }
    pub fn take_wrote(&mut self) -> bool {
        std::mem::take(&mut self.wrote)
    }
    pub fn push(&mut self, o: Output) {
        self.seal();
        self.q.push_back(o);
    }
    fn seal(&mut self) {
        if !self.pending.is_empty() {
            let bytes = std::mem::take(&mut self.pending).into_bytes();
            self.q.push_back(Output::Transmit(bytes));
        }
    }
    pub fn pop(&mut self) -> Option<Output> {
        if self.q.is_empty() {
            self.seal();
        }
        self.q.pop_front()
    }
}

/// `<db:result from to type='…'/>` answer, or with an `<error/>` (XEP-0220 §2.2.1, §2.5).
pub(crate) fn db_answer(
    name: &str,
    from: &str,
    to: &str,
    id: Option<&str>,
    verdict: Verdict,
) -> Element {
    let mut e = Element::new(ns::DIALBACK, name)
        .with_prefix("db")
        .with_attr("from", from)
        .with_attr("to", to);
    if let Some(id) = id {
        e.set_attr("id", id);
    }
    match verdict {
        Verdict::Valid => e.set_attr("type", "valid"),
        Verdict::Invalid => e.set_attr("type", "invalid"),
        Verdict::Error(c) => {
            e.set_attr("type", "error");
            // XEP-0220 §2.5: the <error/> is qualified by jabber:server.
            e = e.with_child(StanzaError::new(c).to_element(ns::SERVER));
        }
    }
    e
}

/// Read the verdict of a `<db:result/>` or `<db:verify/>` answer; `None` when it carries no
/// `type` (a request, not an answer) or an unknown one.
pub(crate) fn db_verdict(e: &Element) -> Option<Verdict> {
    match e.attr("type")? {
        "valid" => Some(Verdict::Valid),
        "invalid" => Some(Verdict::Invalid),
        "error" => {
            let c = e
                .elements()
                .find_map(StanzaError::from_element)
                .map(|s| s.condition)
                .unwrap_or(StanzaCondition::UndefinedCondition);
            Some(Verdict::Error(c))
        }
        _ => None,
    }
}

/// Is this a stanza (RFC 6120 §8) by name, whatever its namespace?
pub(crate) fn is_stanza_name(name: &str) -> bool {
    matches!(name, "message" | "presence" | "iq")
}

#[cfg(test)]
mod unit {
    use super::*;
    use rstest::rstest;

    /// The direct header writer gives the bytes the `StreamHeader` path gives, for every
    /// combination of fields the sessions use (and escaping).
    #[rstest]
    fn header_writer_matches_stream_header(
        #[values(ns::SERVER, ns::COMPONENT_ACCEPT)] content_ns: &str,
        #[values(None, Some("a.test"), Some("it's<&>\"\t"))] from: Option<&str>,
        #[values(None, Some("b.test"))] to: Option<&str>,
        #[values(None, Some("0123abcd"))] id: Option<&str>,
        #[values(None, Some("1.0"))] version: Option<&str>,
        #[values(None, Some("en"))] lang: Option<&str>,
        #[values(true, false)] dialback: bool,
    ) {
        let h = HeaderOut {
            content_ns,
            from,
            to,
            id,
            version,
            lang,
            dialback,
        };
        assert_eq!(h.to_xml(), h.via_stream_header());
    }

    #[rstest]
    #[case("1.0", Some((1, 0)))]
    #[case("1.10", Some((1, 10)))]
    #[case("01.009", Some((1, 9)))]
    #[case("1", None)]
    #[case("1.x", None)]
    #[case(".1", None)]
    fn versions(#[case] v: &str, #[case] want: Option<(u32, u32)>) {
        assert_eq!(parse_version(v), want);
        assert!(parse_version("1.10") > parse_version("1.9"));
    }

    #[rstest]
    #[case("a.test", Some("a.test"))]
    #[case("u@a.test", Some("a.test"))]
    #[case("u@a.test/r/x@y", Some("a.test"))]
    #[case("@a.test", None)]
    #[case("u@", None)]
    #[case("a.test/", None)]
    #[case("", None)]
    #[case("a b.test", None)]
    #[case("a.test.", Some("a.test"))]
    #[case("u@a..test", None)]
    #[case("u v@a.test", None)]
    #[case("u@a.test/with space", Some("a.test"))]
    #[case("[::1]", Some("[::1]"))]
    #[case("a:5269", None)]
    #[case("ü@ä.test/ö with space", Some("ä.test"))]
    #[case("u@a.test/ö\u{3000}x", None)]
    #[case("ü v@a.test", None)]
    #[case("ü:v@a.test", None)]
    #[case("u@ä\u{a0}.test", None)]
    #[case("u@ä,.test", None)]
    #[case("u@a.test/r\u{85}", None)]
    #[case("u@a.test/ä\t", None)]
    #[case("u@a\\b.test", None)]
    #[case("u@a.[b].test", None)]
    #[case("u@[::1", None)]
    fn jid_domains(#[case] j: &str, #[case] want: Option<&str>) {
        assert_eq!(jid_domain(j), want);
        // Agrees with the full parser on validity.
        assert_eq!(
            crate::xmpp::jid::Jid::parse(j).is_ok(),
            want.is_some(),
            "{j}"
        );
    }
}
