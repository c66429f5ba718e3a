//! Captured traffic as flows: what `fedcheck import` reads a pcap/pcapng file into.
//!
//! A capture is a list of transport flows (a TCP connection, or the UDP datagrams between
//! one pair of addresses), each with its payload reassembled in the order the sender wrote
//! it and the time each chunk was seen. This module is sans-IO: readers take the file's
//! bytes and return a [`Capture`]; nothing here opens a socket or a file. The importer
//! (`crate::import`) turns flows into a draft scenario; it never sees link, IP or TCP
//! headers.

use std::net::SocketAddr;
use std::time::Duration;

/// The transport a flow used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Tcp,
    Udp,
}

/// Which end of a flow sent a chunk. For TCP the initiator sent the SYN; for UDP it sent
/// the first datagram seen between the two addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    Initiator,
    Responder,
}

impl Side {
    pub fn other(self) -> Side {
        match self {
            Side::Initiator => Side::Responder,
            Side::Responder => Side::Initiator,
        }
    }
}

/// What a flow carries, judged from its first bytes (not from port numbers: a gateway may
/// listen anywhere).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Payload {
    /// An XML stream (`<?xml` or `<stream:stream`): S2S or XEP-0114 component.
    Xmpp,
    /// SIP messages (a request line or `SIP/2.0` status line).
    Sip,
    /// A TLS record layer from the first byte (direct TLS, or the tail of a STARTTLS
    /// stream is instead reported by [`Flow::tls_from`]): encrypted, not importable.
    Tls,
    /// Anything else.
    Unknown,
}

/// A run of payload bytes one side sent, as reassembled (TCP) or one datagram (UDP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// Time since the first packet of the capture.
    pub at: Duration,
    pub from: Side,
    pub bytes: Vec<u8>,
}

/// How a TCP flow ended within the capture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowEnd {
    /// Still open when the capture ended (also every UDP flow).
    Open,
    /// FIN from this side first.
    Closed { by: Side, at: Duration },
    /// RST from this side.
    Reset { by: Side, at: Duration },
}

/// One transport flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flow {
    pub transport: Transport,
    pub initiator: SocketAddr,
    pub responder: SocketAddr,
    pub payload: Payload,
    /// When the flow was first seen (SYN or first datagram).
    pub opened_at: Duration,
    pub chunks: Vec<Chunk>,
    pub end: FlowEnd,
    /// Index into `chunks` from which the bytes are TLS records (after STARTTLS): what
    /// follows is encrypted and not importable.
    pub tls_from: Option<usize>,
}

/// A whole capture.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Capture {
    /// In the order their first packet appears.
    pub flows: Vec<Flow>,
    /// Things the reader saw and worked around, for the draft's header: retransmissions
    /// dropped, segments missing from the capture (a gap), packets of other protocols
    /// skipped — each naming the flow's addresses.
    pub notes: Vec<String>,
}
