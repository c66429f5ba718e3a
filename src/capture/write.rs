//! Synthesising a pcapng file from flows, so a run can be captured without privileges and
//! tests can build captures. The output reads back with [`super::read`] into the same
//! flows (see [`write_pcapng`] for the conditions).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::net::{LINKTYPE_ETHERNET, LINKTYPE_IPV4, TcpFlags};
use super::wire::{Endian, Put};
use super::{CaptureError, Flow, FlowEnd, Side, Transport};

/// The link layer of the written file's one interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkLayer {
    /// Ethernet II frames with fixed locally administered MAC addresses; IPv4 and IPv6.
    Ethernet,
    /// LINKTYPE_IPV4 (228): bare IPv4 packets; IPv6 flows cannot be written.
    RawIpv4,
}

/// How [`write_pcapng`] lays out packets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteOptions {
    pub link: LinkLayer,
    /// Largest TCP payload per segment (clamped to 1..=65495, what fits an IP packet).
    pub mss: usize,
    /// Wall-clock time of the capture's zero, in nanoseconds since the Unix epoch: the
    /// writer reads no clock.
    pub start_unix_nanos: u64,
    /// Initial sequence number of the first flow's initiator; the responder's is 4096
    /// below it, and each further flow's pair is 2^24 further on (all wrapping).
    pub isn: u32,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            link: LinkLayer::Ethernet,
            mss: 1460,
            start_unix_nanos: 0,
            isn: 1_000_000,
        }
    }
}

/// pcapng block types and options written (draft-ietf-opsawg-pcapng §4).
const SHB: u32 = 0x0a0d_0d0a;
const IDB: u32 = 1;
const EPB: u32 = 6;
const BOM: u32 = 0x1a2b_3c4d;
const OPT_IF_TSRESOL: u16 = 9;

/// Builds pcapng blocks (one section) in either byte order.
pub(crate) struct PcapngWriter {
    buf: Vec<u8>,
    endian: Endian,
}

impl PcapngWriter {
    pub fn new(endian: Endian) -> Self {
        let mut w = PcapngWriter {
            buf: Vec::new(),
            endian,
        };
        w.section();
        w
    }

    /// A section header block (§4.1): version 1.0, section length unknown.
    pub fn section(&mut self) {
        let mut body = Vec::new();
        let mut p = Put {
            buf: &mut body,
            endian: self.endian,
        };
        p.u32(BOM);
        p.u16(1);
        p.u16(0);
        p.i64(-1);
        self.block(SHB, &body);
    }

    /// An interface description block (§4.2), with `if_tsresol` when given.
    pub fn interface(&mut self, link: u16, tsresol: Option<u8>) {
        let mut body = Vec::new();
        let mut p = Put {
            buf: &mut body,
            endian: self.endian,
        };
        p.u16(link);
        p.u16(0);
        p.u32(0);
        if let Some(r) = tsresol {
            p.u16(OPT_IF_TSRESOL);
            p.u16(1);
            p.buf.extend_from_slice(&[r, 0, 0, 0]);
            p.u32(0);
        }
        self.block(IDB, &body);
    }

    /// An enhanced packet block (§4.3).
    pub fn packet(&mut self, interface: u32, units: u64, data: &[u8], orig_len: u32) {
        let mut body = Vec::new();
        let mut p = Put {
            buf: &mut body,
            endian: self.endian,
        };
        p.u32(interface);
        p.u32((units >> 32) as u32);
        p.u32(units as u32);
        p.u32(data.len() as u32);
        p.u32(orig_len);
        body.extend_from_slice(data);
        self.block(EPB, &body);
    }

    /// Any block; the body is padded to 32 bits.
    pub fn block(&mut self, kind: u32, body: &[u8]) {
        let padded = body.len().div_ceil(4) * 4;
        let len = (padded + 12) as u32;
        let mut p = Put {
            buf: &mut self.buf,
            endian: self.endian,
        };
        p.u32(kind);
        p.u32(len);
        p.buf.extend_from_slice(body);
        p.buf.resize(p.buf.len() + padded - body.len(), 0);
        p.u32(len);
    }

    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// RFC 1071 Internet checksum over the given parts.
fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    let mut odd: Option<u8> = None;
    for part in parts {
        for &b in part.iter() {
            match odd.take() {
                Some(hi) => sum += u32::from(u16::from_be_bytes([hi, b])),
                None => odd = Some(b),
            }
        }
    }
    if let Some(hi) = odd {
        sum += u32::from(u16::from_be_bytes([hi, 0]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;

/// An IP packet around a transport header and payload, checksums filled in (RFC 791,
/// RFC 8200; TCP and UDP pseudo-headers per RFC 9293 §3.1 and RFC 8200 §8.1).
pub(crate) fn ip_packet(src: IpAddr, dst: IpAddr, proto: u8, mut l4: Vec<u8>, id: u16) -> Vec<u8> {
    let l4_len = l4.len() as u32;
    let sum_at = if proto == PROTO_TCP { 16 } else { 6 };
    let pseudo: Vec<u8> = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut v = s.octets().to_vec();
            v.extend_from_slice(&d.octets());
            v.extend_from_slice(&[0, proto]);
            v.extend_from_slice(&(l4_len as u16).to_be_bytes());
            v
        }
        _ => {
            let mut v = to_v6(src).to_vec();
            v.extend_from_slice(&to_v6(dst));
            v.extend_from_slice(&l4_len.to_be_bytes());
            v.extend_from_slice(&[0, 0, 0, proto]);
            v
        }
    };
    let mut sum = checksum(&[&pseudo, &l4]);
    if proto == PROTO_UDP && sum == 0 {
        sum = 0xffff;
    }
    if let Some(s) = l4.get_mut(sum_at..sum_at + 2) {
        s.copy_from_slice(&sum.to_be_bytes());
    }
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut h = vec![0x45, 0];
            h.extend_from_slice(&((20 + l4_len) as u16).to_be_bytes());
            h.extend_from_slice(&id.to_be_bytes());
            h.extend_from_slice(&[0x40, 0, 64, proto, 0, 0]);
            h.extend_from_slice(&s.octets());
            h.extend_from_slice(&d.octets());
            let c = checksum(&[&h]);
            if let Some(s) = h.get_mut(10..12) {
                s.copy_from_slice(&c.to_be_bytes());
            }
            h.extend_from_slice(&l4);
            h
        }
        _ => {
            let mut h = vec![0x60, 0, 0, 0];
            h.extend_from_slice(&(l4_len as u16).to_be_bytes());
            h.extend_from_slice(&[proto, 64]);
            h.extend_from_slice(&to_v6(src));
            h.extend_from_slice(&to_v6(dst));
            h.extend_from_slice(&l4);
            h
        }
    }
}

fn to_v6(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// A TCP header (no options) with payload; the checksum is filled in by [`ip_packet`].
pub(crate) fn tcp_segment(
    src: SocketAddr,
    dst: SocketAddr,
    seq: u32,
    ack: u32,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut t = Vec::with_capacity(20 + payload.len());
    t.extend_from_slice(&src.port().to_be_bytes());
    t.extend_from_slice(&dst.port().to_be_bytes());
    t.extend_from_slice(&seq.to_be_bytes());
    t.extend_from_slice(&ack.to_be_bytes());
    t.extend_from_slice(&[5 << 4, flags, 0xff, 0xff, 0, 0, 0, 0]);
    t.extend_from_slice(payload);
    t
}

pub(crate) fn udp_datagram(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let mut u = Vec::with_capacity(8 + payload.len());
    u.extend_from_slice(&src.port().to_be_bytes());
    u.extend_from_slice(&dst.port().to_be_bytes());
    u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    u
}

/// An Ethernet II frame: locally administered MACs, EtherType from the IP version.
pub(crate) fn ethernet_frame(ip: &[u8], from_initiator: bool) -> Vec<u8> {
    let (a, b) = ([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
    let (src, dst) = if from_initiator { (a, b) } else { (b, a) };
    let mut f = dst.to_vec();
    f.extend_from_slice(&src);
    let v6 = ip.first().is_some_and(|b| b >> 4 == 6);
    f.extend_from_slice(if v6 { &[0x86, 0xdd] } else { &[0x08, 0x00] });
    f.extend_from_slice(ip);
    f
}

/// Largest UDP payload an IP packet carries (RFC 768 length; IPv4 header included).
const MAX_UDP_V4: usize = 65_507;
const MAX_UDP_V6: usize = 65_527;
const MAX_MSS: usize = 65_495;

struct Out {
    at: Duration,
    from_initiator: bool,
    ip: Vec<u8>,
}

struct FlowWriter<'a> {
    flow: &'a Flow,
    out: &'a mut Vec<Out>,
    id: &'a mut u16,
    now: Duration,
}

impl FlowWriter<'_> {
    fn addrs(&self, side: Side) -> (SocketAddr, SocketAddr) {
        match side {
            Side::Initiator => (self.flow.initiator, self.flow.responder),
            Side::Responder => (self.flow.responder, self.flow.initiator),
        }
    }

    fn advance(&mut self, at: Duration) {
        self.now = self.now.max(at);
    }

    fn emit(&mut self, side: Side, proto: u8, l4: Vec<u8>) {
        let (src, dst) = self.addrs(side);
        *self.id = self.id.wrapping_add(1);
        let ip = ip_packet(src.ip(), dst.ip(), proto, l4, *self.id);
        self.out.push(Out {
            at: self.now,
            from_initiator: side == Side::Initiator,
            ip,
        });
    }

    fn tcp(&mut self, side: Side, seq: u32, ack: u32, flags: u8, payload: &[u8]) {
        let (src, dst) = self.addrs(side);
        let seg = tcp_segment(src, dst, seq, ack, flags, payload);
        self.emit(side, PROTO_TCP, seg);
    }
}

/// Writes `flows` as a pcapng file: one section, one interface of `options.link`, with
/// nanosecond timestamps (`if_tsresol` 9), packets in time order.
///
/// A TCP flow becomes SYN, SYN-ACK and ACK at `opened_at`; each chunk becomes segments of
/// at most `options.mss` bytes at the chunk's time, PSH on the last (so the reader keeps the
/// chunk boundaries); the end becomes FIN/FIN/ACK or an RST at its time; the closer's FIN goes after its own
/// last chunk and before the other side's later ones (a half-close). Times never go
/// back within a flow (an earlier time is taken as the latest so far). A UDP chunk is one
/// datagram; `opened_at`, `end` and `payload`/`tls_from` are not written (the reader derives
/// them).
///
/// Reading the output gives back the same flows when: the earliest packet is at zero
/// (times are relative to the first packet), flows are in order of `opened_at`, times are
/// non-decreasing and not before `opened_at`, no TCP chunk is empty, a UDP flow's first
/// chunk is from its initiator and at `opened_at`, UDP flows have no end, and `payload` and
/// `tls_from` are what [`super::classify`] and [`super::starttls_from`] say.
///
/// Errors: a flow mixing IPv4 and IPv6 addresses, IPv6 on [`LinkLayer::RawIpv4`], or a
/// datagram too large for one IP packet.
pub fn write_pcapng(flows: &[Flow], options: &WriteOptions) -> Result<Vec<u8>, CaptureError> {
    let mss = options.mss.clamp(1, MAX_MSS);
    let mut out: Vec<Out> = Vec::new();
    let mut id: u16 = 0;
    for (n, flow) in flows.iter().enumerate() {
        let unwritable = |reason: &str| CaptureError::Unwritable {
            flow: n,
            initiator: flow.initiator,
            responder: flow.responder,
            reason: reason.to_string(),
        };
        let v6 = match (flow.initiator, flow.responder) {
            (SocketAddr::V4(_), SocketAddr::V4(_)) => false,
            (SocketAddr::V6(_), SocketAddr::V6(_)) => true,
            _ => return Err(unwritable("one address is IPv4, the other IPv6")),
        };
        if v6 && options.link == LinkLayer::RawIpv4 {
            return Err(unwritable("the raw IPv4 link layer cannot carry IPv6"));
        }
        let mut w = FlowWriter {
            flow,
            out: &mut out,
            id: &mut id,
            now: flow.opened_at,
        };
        match flow.transport {
            Transport::Udp => {
                let max = if v6 { MAX_UDP_V6 } else { MAX_UDP_V4 };
                for c in &flow.chunks {
                    if c.bytes.len() > max {
                        return Err(unwritable(&format!(
                            "a {}-byte datagram does not fit one IP packet",
                            c.bytes.len()
                        )));
                    }
                    w.advance(c.at);
                    let (src, dst) = w.addrs(c.from);
                    w.emit(c.from, PROTO_UDP, udp_datagram(src, dst, &c.bytes));
                }
            }
            Transport::Tcp => {
                let isn_i = options.isn.wrapping_add((n as u32).wrapping_mul(1 << 24));
                let isn_r = isn_i.wrapping_sub(4096);
                let (mut next_i, mut next_r) = (isn_i.wrapping_add(1), isn_r.wrapping_add(1));
                let (ack, syn, psh, rst) =
                    (TcpFlags::ACK, TcpFlags::SYN, TcpFlags::PSH, TcpFlags::RST);
                w.tcp(Side::Initiator, isn_i, 0, syn, &[]);
                w.tcp(Side::Responder, isn_r, next_i, syn | ack, &[]);
                w.tcp(Side::Initiator, next_i, next_r, ack, &[]);
                // A half-close (RFC 9293 §3.6): the closing side's FIN goes at its time,
                // after that side's last chunk, so data the other side sends after it (a
                // `</stream:stream>` answering the close) stays after it on the wire.
                let fin_at = match flow.end {
                    FlowEnd::Closed { by, at } => {
                        let after_own = flow
                            .chunks
                            .iter()
                            .rposition(|c| c.from == by)
                            .map_or(0, |i| i + 1);
                        let before = flow.chunks[after_own..]
                            .iter()
                            .position(|c| c.at > at)
                            .map_or(flow.chunks.len(), |i| after_own + i);
                        Some((before, by, at))
                    }
                    FlowEnd::Open | FlowEnd::Reset { .. } => None,
                };
                let fin = TcpFlags::FIN;
                let send_fin =
                    |w: &mut FlowWriter<'_>, next_i: &mut u32, next_r: &mut u32, by: Side, at| {
                        w.advance(at);
                        let (own, other) = match by {
                            Side::Initiator => (next_i, *next_r),
                            Side::Responder => (next_r, *next_i),
                        };
                        w.tcp(by, *own, other, fin | ack, &[]);
                        *own = own.wrapping_add(1);
                    };
                for (k, c) in flow.chunks.iter().enumerate() {
                    if let Some((before, by, at)) = fin_at
                        && before == k
                    {
                        send_fin(&mut w, &mut next_i, &mut next_r, by, at);
                    }
                    w.advance(c.at);
                    let pieces: Vec<&[u8]> = c.bytes.chunks(mss).collect();
                    let last = pieces.len().saturating_sub(1);
                    for (k, piece) in pieces.into_iter().enumerate() {
                        let flags = if k == last { ack | psh } else { ack };
                        let (seq, other) = match c.from {
                            Side::Initiator => (&mut next_i, next_r),
                            Side::Responder => (&mut next_r, next_i),
                        };
                        let s = *seq;
                        *seq = s.wrapping_add(piece.len() as u32);
                        w.tcp(c.from, s, other, flags, piece);
                    }
                }
                match flow.end {
                    FlowEnd::Open => {}
                    FlowEnd::Closed { by, at } => {
                        if let Some((before, ..)) = fin_at
                            && before == flow.chunks.len()
                        {
                            send_fin(&mut w, &mut next_i, &mut next_r, by, at);
                        }
                        // The other side's FIN, then the closer's last ACK.
                        let (by_next, other_next) = match by {
                            Side::Initiator => (next_i, next_r),
                            Side::Responder => (next_r, next_i),
                        };
                        w.tcp(by.other(), other_next, by_next, fin | ack, &[]);
                        w.tcp(by, by_next, other_next.wrapping_add(1), ack, &[]);
                    }
                    FlowEnd::Reset { by, at } => {
                        let (by_next, other_next) = match by {
                            Side::Initiator => (next_i, next_r),
                            Side::Responder => (next_r, next_i),
                        };
                        w.advance(at);
                        w.tcp(by, by_next, other_next, rst | ack, &[]);
                    }
                }
            }
        }
    }
    // Stable: packets of one flow at one time keep their order.
    out.sort_by_key(|o| o.at);
    let link = match options.link {
        LinkLayer::Ethernet => LINKTYPE_ETHERNET,
        LinkLayer::RawIpv4 => LINKTYPE_IPV4,
    };
    let mut pw = PcapngWriter::new(Endian::Little);
    pw.interface(link as u16, Some(9));
    for o in out {
        let frame = match options.link {
            LinkLayer::Ethernet => ethernet_frame(&o.ip, o.from_initiator),
            LinkLayer::RawIpv4 => o.ip,
        };
        let nanos = u64::try_from(o.at.as_nanos()).unwrap_or(u64::MAX);
        let units = options.start_unix_nanos.saturating_add(nanos);
        pw.packet(0, units, &frame, frame.len() as u32);
    }
    Ok(pw.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_verify_to_zero() {
        // RFC 1071 §3: summing data with its checksum gives all ones (checksum 0).
        let src: SocketAddr = "192.0.2.1:5269".parse().unwrap();
        let dst: SocketAddr = "192.0.2.2:40000".parse().unwrap();
        let ip = ip_packet(
            src.ip(),
            dst.ip(),
            PROTO_TCP,
            tcp_segment(src, dst, 1, 2, 0x18, b"abc"),
            7,
        );
        assert_eq!(checksum(&[&ip[..20]]), 0);
        let pseudo = [192, 0, 2, 1, 192, 0, 2, 2, 0, 6, 0, 23];
        assert_eq!(checksum(&[&pseudo, &ip[20..]]), 0);
    }
}
