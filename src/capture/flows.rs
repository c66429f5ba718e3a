//! From segments and datagrams to flows: UDP grouping and TCP reassembly.
//!
//! TCP (RFC 9293): each direction's bytes are placed by sequence number relative to the
//! first data byte (the SYN's sequence number plus one, RFC 9293 §3.4), unwrapped to 64 bits
//! around the next expected byte, so wrap-around at 2^32 is invisible. Segments ahead of the
//! next expected byte wait in a buffer until the hole before them fills; bytes already
//! placed (retransmissions, overlapping segments, keep-alive probes) are dropped and
//! counted in a note. A hole that never fills by the end of the capture is a gap: a note
//! names the flow, side and byte range, and the data after it follows as if contiguous.
//!
//! Chunking rule: one chunk per write where the capture shows it, i.e. consecutive in-order
//! bytes from one side are joined until a segment with PSH (which senders set on the last
//! segment of a write; RFC 9293 §3.9.1.2), a change of direction, or a gap. A UDP datagram
//! is always one chunk. A chunk's time is that of the packet that made its first bytes
//! deliverable in order (for data that waited for a hole to fill, the filling packet; for
//! data after a gap, its own packet).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

use super::classify::{classify, starttls_from};
use super::net::{Segment, TcpFlags, TcpInfo};
use super::{Capture, Chunk, Flow, FlowEnd, Payload, Side, Transport};

/// Ports servers of the protocols fedcheck imports listen on (SIP RFC 3261 §19.1.2;
/// XMPP RFC 6120 §14.7, XEP-0368, XEP-0114 common practice): for guessing which end
/// listened when the capture started after the SYN.
const SERVER_PORTS: &[u16] = &[5060, 5061, 5222, 5223, 5269, 5270, 5275, 5280, 5347, 443];

#[derive(Debug)]
struct Piece {
    order: u64,
    at: Duration,
    from: Side,
    bytes: Vec<u8>,
    /// The sender marked a write boundary after these bytes (PSH, or a datagram).
    boundary: bool,
    /// Bytes are missing before these.
    after_gap: bool,
}

#[derive(Debug)]
struct Pending {
    bytes: Vec<u8>,
    push: bool,
    order: u64,
    at: Duration,
}

#[derive(Debug, Default)]
struct Dup {
    bytes: u64,
    segments: u64,
}

impl Dup {
    fn add(&mut self, n: usize) {
        if n > 0 {
            self.bytes += n as u64;
            self.segments += 1;
        }
    }
}

/// One direction of a TCP connection.
#[derive(Debug, Default)]
struct Direction {
    /// Sequence number of stream offset 0.
    base: Option<u32>,
    /// Initial sequence number of the SYN this side sent, to tell a retransmitted SYN from a
    /// new connection on the same addresses.
    syn_isn: Option<u32>,
    /// Next stream offset expected (all before it delivered).
    next: i64,
    pending: BTreeMap<i64, Pending>,
    last: (u64, Duration),
    gaps: Vec<(i64, i64)>,
}

impl Direction {
    /// Stream offset of `seq`: the 64-bit value nearest the next expected byte.
    fn offset_of(&self, base: u32, seq: u32) -> i64 {
        let rel = seq.wrapping_sub(base);
        let near = self.next as u32;
        self.next + i64::from(rel.wrapping_sub(near) as i32)
    }

    fn deliver(&mut self, p: Piece, out: &mut Vec<Piece>) {
        let order = p.order.max(self.last.0);
        let at = p.at.max(self.last.1);
        self.last = (order, at);
        self.next += p.bytes.len() as i64;
        out.push(Piece { order, at, ..p });
    }

    #[allow(clippy::too_many_arguments)]
    fn insert(
        &mut self,
        off: i64,
        bytes: &[u8],
        push: bool,
        order: u64,
        at: Duration,
        from: Side,
        out: &mut Vec<Piece>,
        dup: &mut Dup,
    ) {
        let end = off + bytes.len() as i64;
        if end <= self.next {
            dup.add(bytes.len());
            return;
        }
        if off > self.next {
            match self.pending.get(&off) {
                Some(p) if p.bytes.len() >= bytes.len() => dup.add(bytes.len()),
                _ => {
                    let new = Pending {
                        bytes: bytes.to_vec(),
                        push,
                        order,
                        at,
                    };
                    if let Some(old) = self.pending.insert(off, new) {
                        dup.add(old.bytes.len());
                    }
                }
            }
            return;
        }
        let skip = usize::try_from(self.next - off).unwrap_or(0);
        dup.add(skip);
        let bytes = bytes.get(skip..).unwrap_or_default().to_vec();
        self.deliver(
            Piece {
                order,
                at,
                from,
                bytes,
                boundary: push,
                after_gap: false,
            },
            out,
        );
        self.drain(Some((order, at)), from, out, dup);
    }

    /// Delivers buffered segments that are now in order. With `filled_by`, at the time of
    /// the packet that filled the hole; without (end of capture), skipping gaps, each at its
    /// own time.
    fn drain(
        &mut self,
        filled_by: Option<(u64, Duration)>,
        from: Side,
        out: &mut Vec<Piece>,
        dup: &mut Dup,
    ) {
        while let Some(entry) = self.pending.first_entry() {
            let k = *entry.key();
            if k > self.next && filled_by.is_some() {
                break;
            }
            let p = entry.remove();
            let after_gap = k > self.next;
            if after_gap {
                self.gaps.push((self.next, k));
                self.next = k;
            }
            let end = k + p.bytes.len() as i64;
            if end <= self.next {
                dup.add(p.bytes.len());
                continue;
            }
            let skip = usize::try_from(self.next - k).unwrap_or(0);
            dup.add(skip);
            let (order, at) = filled_by.unwrap_or((p.order, p.at));
            let bytes = p.bytes.get(skip..).unwrap_or_default().to_vec();
            self.deliver(
                Piece {
                    order,
                    at,
                    from,
                    bytes,
                    boundary: p.push,
                    after_gap,
                },
                out,
            );
        }
    }
}

#[derive(Debug)]
struct FlowState {
    transport: Transport,
    initiator: SocketAddr,
    responder: SocketAddr,
    opened_at: Duration,
    end: FlowEnd,
    pieces: Vec<Piece>,
    init: Direction,
    resp: Direction,
    mid_stream: bool,
    dup: Dup,
}

impl FlowState {
    fn new(
        transport: Transport,
        initiator: SocketAddr,
        responder: SocketAddr,
        at: Duration,
    ) -> Self {
        FlowState {
            transport,
            initiator,
            responder,
            opened_at: at,
            end: FlowEnd::Open,
            pieces: Vec::new(),
            init: Direction::default(),
            resp: Direction::default(),
            mid_stream: false,
            dup: Dup::default(),
        }
    }

    fn side_of(&self, src: SocketAddr) -> Side {
        if src == self.initiator {
            Side::Initiator
        } else {
            Side::Responder
        }
    }

    fn dir(&mut self, side: Side) -> &mut Direction {
        match side {
            Side::Initiator => &mut self.init,
            Side::Responder => &mut self.resp,
        }
    }

    fn name(&self) -> String {
        let t = match self.transport {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        };
        format!("{t} {} → {}", self.initiator, self.responder)
    }

    /// A SYN (without ACK) from `src` with `isn` opens a new connection on these addresses
    /// unless it repeats this connection's SYN.
    fn is_new_connection(&self, src: SocketAddr, isn: u32) -> bool {
        self.end != FlowEnd::Open || src != self.initiator || self.init.syn_isn != Some(isn)
    }
}

type Key = (Transport, SocketAddr, SocketAddr);

fn key(t: Transport, a: SocketAddr, b: SocketAddr) -> Key {
    if a <= b { (t, a, b) } else { (t, b, a) }
}

/// Guesses which end listened, for a connection whose SYN was not captured: a well-known
/// server port, else the lower port (clients use high ephemeral ports), else the receiver
/// of the first packet seen.
fn guess_initiator(src: SocketAddr, dst: SocketAddr) -> (SocketAddr, SocketAddr) {
    let (s, d) = (
        SERVER_PORTS.contains(&src.port()),
        SERVER_PORTS.contains(&dst.port()),
    );
    let src_listens = match (s, d) {
        (true, false) => true,
        (false, true) => false,
        _ => src.port() < dst.port(),
    };
    if src_listens { (dst, src) } else { (src, dst) }
}

#[derive(Debug, Default)]
pub(crate) struct Assembler {
    flows: Vec<FlowState>,
    index: HashMap<Key, usize>,
}

impl Assembler {
    pub fn packet(&mut self, order: u64, at: Duration, seg: &Segment<'_>) {
        match seg.tcp {
            Some(t) => self.tcp(order, at, seg, t),
            None => self.udp(order, at, seg),
        }
    }

    fn add(&mut self, k: Key, f: FlowState) -> usize {
        let i = self.flows.len();
        self.flows.push(f);
        self.index.insert(k, i);
        i
    }

    fn udp(&mut self, order: u64, at: Duration, seg: &Segment<'_>) {
        let k = key(Transport::Udp, seg.src, seg.dst);
        let i = match self.index.get(&k) {
            Some(&i) => i,
            None => self.add(k, FlowState::new(Transport::Udp, seg.src, seg.dst, at)),
        };
        let Some(f) = self.flows.get_mut(i) else {
            return;
        };
        let from = f.side_of(seg.src);
        let bytes = seg.payload.to_vec();
        f.pieces.push(Piece {
            order,
            at,
            from,
            bytes,
            boundary: true,
            after_gap: false,
        });
    }

    fn tcp(&mut self, order: u64, at: Duration, seg: &Segment<'_>, t: TcpInfo) {
        let syn = t.flags.has(TcpFlags::SYN);
        let ack = t.flags.has(TcpFlags::ACK);
        let k = key(Transport::Tcp, seg.src, seg.dst);
        let existing = self.index.get(&k).copied().filter(|&i| {
            let renewed = syn
                && !ack
                && self
                    .flows
                    .get(i)
                    .is_some_and(|f| f.is_new_connection(seg.src, t.seq));
            !renewed
        });
        let i = match existing {
            Some(i) => i,
            None => {
                let (initiator, responder, mid) = match (syn, ack) {
                    (true, false) => (seg.src, seg.dst, false),
                    (true, true) => (seg.dst, seg.src, false),
                    _ => {
                        let (i, r) = guess_initiator(seg.src, seg.dst);
                        (i, r, true)
                    }
                };
                let mut f = FlowState::new(Transport::Tcp, initiator, responder, at);
                f.mid_stream = mid;
                self.add(k, f)
            }
        };
        let Some(f) = self.flows.get_mut(i) else {
            return;
        };
        let side = f.side_of(seg.src);
        // RFC 9293 §3.4: the SYN occupies one sequence number before the first data byte.
        let data_seq = if syn { t.seq.wrapping_add(1) } else { t.seq };
        if syn && ack && f.dir(side.other()).base.is_none() {
            f.dir(side.other()).base = Some(t.ack);
        }
        let mut pieces = std::mem::take(&mut f.pieces);
        let mut dup = std::mem::take(&mut f.dup);
        let d = f.dir(side);
        if syn {
            if !ack && d.syn_isn.is_none() {
                d.syn_isn = Some(t.seq);
            }
            d.base.get_or_insert(data_seq);
        }
        let base = *d.base.get_or_insert(data_seq);
        if !seg.payload.is_empty() {
            let off = d.offset_of(base, data_seq);
            let push = t.flags.has(TcpFlags::PSH);
            d.insert(
                off,
                seg.payload,
                push,
                order,
                at,
                side,
                &mut pieces,
                &mut dup,
            );
        }
        f.pieces = pieces;
        f.dup = dup;
        // RFC 9293 §3.6: the first FIN closes; a reset overrides a close (it was not
        // graceful after all).
        if t.flags.has(TcpFlags::RST) {
            if !matches!(f.end, FlowEnd::Reset { .. }) {
                f.end = FlowEnd::Reset { by: side, at };
            }
        } else if t.flags.has(TcpFlags::FIN) && f.end == FlowEnd::Open {
            f.end = FlowEnd::Closed { by: side, at };
        }
    }

    pub fn finish(self) -> Capture {
        let mut capture = Capture::default();
        for mut f in self.flows {
            let name = f.name();
            let mut pieces = std::mem::take(&mut f.pieces);
            let mut dup = std::mem::take(&mut f.dup);
            for side in [Side::Initiator, Side::Responder] {
                f.dir(side).drain(None, side, &mut pieces, &mut dup);
            }
            if f.mid_stream {
                capture.notes.push(format!(
                    "{name}: the capture starts after the connection opened (no SYN); which end \
                     initiated is guessed from the ports"
                ));
            }
            if dup.bytes > 0 {
                capture.notes.push(format!(
                    "{name}: {} retransmitted or overlapping bytes in {} segments dropped",
                    dup.bytes, dup.segments
                ));
            }
            for side in [Side::Initiator, Side::Responder] {
                let who = match side {
                    Side::Initiator => "initiator",
                    Side::Responder => "responder",
                };
                for (from, to) in &f.dir(side).gaps {
                    capture.notes.push(format!(
                        "{name}: bytes {from}..{to} from the {who} ({} bytes) are missing from the \
                         capture; the chunks continue after the gap",
                        to - from
                    ));
                }
            }
            // Stable: pieces of one packet, and of one side, keep their stream order.
            pieces.sort_by_key(|p| p.order);
            let mut chunks: Vec<Chunk> = Vec::new();
            let mut open = false;
            for p in pieces {
                match chunks.last_mut() {
                    Some(last) if open && last.from == p.from && !p.after_gap => {
                        last.bytes.extend_from_slice(&p.bytes);
                    }
                    _ => chunks.push(Chunk {
                        at: p.at,
                        from: p.from,
                        bytes: p.bytes,
                    }),
                }
                open = !p.boundary;
            }
            let payload = classify(&chunks);
            let tls_from = if payload == Payload::Xmpp {
                starttls_from(&chunks)
            } else {
                None
            };
            capture.flows.push(Flow {
                transport: f.transport,
                initiator: f.initiator,
                responder: f.responder,
                payload,
                opened_at: f.opened_at,
                chunks,
                end: f.end,
                tls_from,
            });
        }
        capture
    }
}
