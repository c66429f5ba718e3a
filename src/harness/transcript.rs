//! The record of everything the harness's actors sent and received, in step order.

use std::net::SocketAddr;
use std::time::Duration;

use crate::xmpp::codec::StreamHeader;
use crate::xmpp::element::Element;

/// Direction of a unit, seen from the harness.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Dir {
    /// The actor sent it to the SUT.
    ToSut,
    /// The SUT sent it to the actor.
    FromSut,
}

/// One wire unit or transport event.
#[derive(Debug, Clone, PartialEq)]
pub enum Unit {
    /// TCP connection opened by the actor (`Dir::ToSut`) or by the SUT (`Dir::FromSut`).
    Connected {
        local: SocketAddr,
        peer: SocketAddr,
    },
    Header(StreamHeader),
    Element(Element),
    /// `</stream:stream>`.
    StreamClose,
    /// Whitespace between top-level elements (keepalive); its length.
    Whitespace(usize),
    /// Bytes sent or received that do not decode as the next XML unit, with the reason.
    Undecodable {
        bytes: Vec<u8>,
        reason: String,
    },
    /// The sender half-closed TCP (FIN) — for `FromSut`, the SUT closed the connection.
    Eof,
    /// The connection was reset (RST).
    Reset,
    /// A TLS handshake completed on the stream (RFC 6120 §5.4.3.3): what was negotiated and
    /// what the harness made of the SUT's certificate (the harness records, it never refuses).
    Tls {
        version: String,
        alpn: Option<String>,
        /// One line: whether the SUT's chain is trusted by the run's test CA, problems, and the
        /// identities it presents.
        peer: String,
    },
    /// A comment the harness adds (helper step boundaries, notes).
    Note(String),
    /// A SIP message of a SIP actor (src/harness/sip_actor.rs). `retransmission`: a copy
    /// the transaction layer absorbed or resent (RFC 3261 §17), recorded as such and left
    /// out of snapshots, since whether one happens depends on timing.
    Sip {
        message: crate::sip::Message,
        retransmission: bool,
    },
}

/// One transcript entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Position in the transcript (0-based, step order).
    pub seq: usize,
    /// Time since the scenario started, when the unit was sent or received.
    pub at: Duration,
    /// Actor name (as declared in the scenario).
    pub actor: String,
    /// Stream name (as named in the scenario).
    pub stream: String,
    pub dir: Dir,
    pub unit: Unit,
    /// The bytes exactly as on the wire (empty for transport events and notes).
    pub raw: Vec<u8>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Transcript {
    pub entries: Vec<Entry>,
}

impl Transcript {
    pub fn push(
        &mut self,
        at: Duration,
        actor: &str,
        stream: &str,
        dir: Dir,
        unit: Unit,
        raw: Vec<u8>,
    ) {
        let seq = self.entries.len();
        self.entries.push(Entry {
            seq,
            at,
            actor: actor.to_string(),
            stream: stream.to_string(),
            dir,
            unit,
            raw,
        });
    }
}
