//! Captured traffic as flows: what `fedcheck import` reads a pcap/pcapng file into.
//!
//! A capture is a list of transport flows (a TCP connection, or the UDP datagrams between
//! one pair of addresses), each with its payload reassembled in the order the sender wrote
//! it and the time each chunk was seen. This module is sans-IO: readers take the file's
//! bytes and return a [`Capture`]; nothing here opens a socket or a file. The importer
//! (`crate::import`) turns flows into a draft scenario; it never sees link, IP or TCP
//! headers.
//!
//! [`read`] takes pcap or pcapng bytes; [`write_pcapng`] synthesises a capture from flows
//! (for `fedcheck run --pcap` and tests) that [`read`] reads back into the same flows.

use std::net::SocketAddr;
use std::time::Duration;

mod classify;
mod file;
mod flows;
mod net;
mod wire;
mod write;

#[cfg(test)]
mod tests;

pub use classify::{classify, starttls_from};
pub use write::{LinkLayer, WriteOptions, write_pcapng};

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
    /// An XML stream (`<?xml`, `<stream:stream` or `<stream`, or, for a flow the capture
    /// joined mid-stream, a top-level stanza or dialback element): S2S or XEP-0114
    /// component.
    Xmpp,
    /// SIP messages (a request line or `SIP/2.0` status line), after any keep-alive CRLFs.
    Sip,
    /// A TLS record layer from the first byte (direct TLS, or the tail of a STARTTLS
    /// stream is instead reported by [`Flow::tls_from`]): encrypted, not importable.
    Tls,
    /// Anything else.
    Unknown,
}

/// A run of payload bytes one side sent, as reassembled (TCP) or one datagram (UDP).
///
/// TCP chunking rule, meant to approximate the sender's writes: consecutive in-order bytes
/// from one side join into one chunk until a segment carrying PSH (which stacks set on the
/// last segment of a write, RFC 9293 §3.9.1.2), a change of direction, or a gap in the
/// capture. A chunk's time is that of the packet that made its first bytes deliverable in
/// order: for data that waited for an earlier hole to fill, the filling packet.
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
    /// follows is encrypted and not importable. Set only for [`Payload::Xmpp`] flows, to
    /// the first chunk starting with a TLS record after the chunk carrying
    /// `<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>`; `None` for a flow that is
    /// TLS from its first byte (that is [`Payload::Tls`]).
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

/// What is wrong with a capture file (or with flows given to the writer), and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CaptureError {
    /// The file ends inside its first header (later cuts are a note, see [`read`]).
    #[error(
        "the file ends at byte {available}, inside the {what} at byte offset {offset} ({needed} bytes needed)"
    )]
    Truncated {
        what: &'static str,
        offset: usize,
        needed: usize,
        available: usize,
    },
    /// Neither a pcap magic number nor a pcapng section header (or its byte-order magic).
    #[error("not a pcap or pcapng file: magic {found:02x?} at byte offset {offset}")]
    BadMagic { offset: usize, found: [u8; 4] },
    #[error("unsupported {format} version {major}.{minor} at byte offset {offset}")]
    UnsupportedVersion {
        format: &'static str,
        major: u16,
        minor: u16,
        offset: usize,
    },
    /// A record or block whose fields contradict each other.
    #[error("malformed {what} at byte offset {offset}: {reason}")]
    Malformed {
        what: &'static str,
        offset: usize,
        reason: String,
    },
    /// A packet on an interface whose link layer this reader does not know.
    #[error(
        "unknown link type {link} on interface {interface} (first packet at byte offset {offset})"
    )]
    UnknownLinkType {
        link: u32,
        interface: u32,
        offset: usize,
    },
    /// A packet block naming an interface its section has not described.
    #[error(
        "packet block at byte offset {offset} names interface {interface}, which its section has not described"
    )]
    UnknownInterface { interface: u32, offset: usize },
    /// The writer cannot put this flow into the chosen link layer or packet sizes.
    #[error("cannot write flow {flow} ({initiator} → {responder}): {reason}")]
    Unwritable {
        flow: usize,
        initiator: SocketAddr,
        responder: SocketAddr,
        reason: String,
    },
}

/// Reads a pcap (either byte order, microsecond or nanosecond timestamps) or pcapng file
/// (any number of sections and interfaces, either byte order) into flows.
///
/// Never panics. Errors: a file that is neither format, a cut inside its first header, a
/// structurally broken record or block, or a packet on an interface of an unknown link
/// type. A file cut short after its first header yields the packets before the cut and a
/// note. Packets that are not TCP or UDP over IPv4/IPv6, IP fragments, malformed headers
/// and packets cut by the snap length are skipped or kept partially, each kind counted in
/// a note. Times are relative to the first packet in file order.
pub fn read(bytes: &[u8]) -> Result<Capture, CaptureError> {
    let container = file::parse(bytes)?;
    let first = container.packets.first().map_or(0, |p| p.ts_nanos);
    let mut asm = flows::Assembler::default();
    let (mut other, mut fragments, mut malformed, mut cut) = (0u64, 0u64, 0u64, 0u64);
    for (order, p) in container.packets.iter().enumerate() {
        let link = net::link_type(p.link).ok_or(CaptureError::UnknownLinkType {
            link: p.link,
            interface: p.interface,
            offset: p.offset,
        })?;
        let snapped = usize::try_from(p.orig_len).is_ok_and(|n| n > p.data.len());
        let at =
            Duration::from_nanos(u64::try_from((p.ts_nanos - first).max(0)).unwrap_or(u64::MAX));
        match net::decode(link, p.data) {
            Ok(seg) => {
                if seg.cut {
                    cut += 1;
                }
                asm.packet(order as u64, at, &seg);
            }
            Err(net::Skip::Malformed) if snapped => cut += 1,
            Err(net::Skip::Malformed) => malformed += 1,
            Err(net::Skip::Fragment) => fragments += 1,
            Err(net::Skip::OtherProtocol) => other += 1,
        }
    }
    let mut capture = asm.finish();
    let mut notes = container.notes;
    notes.append(&mut capture.notes);
    let counted: [(u64, &str); 4] = [
        (
            cut,
            "packets were cut by the snap length; their missing bytes show as gaps, or the packet was skipped",
        ),
        (
            fragments,
            "IP fragments skipped (fragments are not reassembled)",
        ),
        (
            malformed,
            "packets with malformed IP, TCP or UDP headers skipped",
        ),
        (
            other,
            "packets of other protocols skipped (not TCP or UDP over IPv4 or IPv6)",
        ),
    ];
    for (n, what) in counted {
        if n > 0 {
            notes.push(format!("{n} {what}"));
        }
    }
    capture.notes = notes;
    Ok(capture)
}
