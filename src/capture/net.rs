//! Link layer, IP and transport headers: from a captured frame to a TCP segment or a UDP
//! datagram with its addresses. Everything else is reported as a reason to skip the packet.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::wire::{Endian, be16, be32, bytes, u8_at, u32_at};

/// Link types this reader understands (LINKTYPE_* values, tcpdump.org link-layer header
/// types registry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Link {
    /// BSD loopback: a 4-byte address family in the capturing host's byte order.
    Null,
    Ethernet,
    /// Raw IP, version from the first nibble.
    Raw,
    /// OpenBSD loopback: the 4-byte family in network byte order.
    Loop,
    LinuxSll,
    Ipv4,
    Ipv6,
    LinuxSll2,
}

pub(crate) const LINK_TYPES: &[(u32, Link)] = &[
    (0, Link::Null),
    (1, Link::Ethernet),
    (101, Link::Raw),
    (108, Link::Loop),
    (113, Link::LinuxSll),
    (228, Link::Ipv4),
    (229, Link::Ipv6),
    (276, Link::LinuxSll2),
];

pub(crate) fn link_type(value: u32) -> Option<Link> {
    LINK_TYPES
        .iter()
        .find(|(v, _)| *v == value)
        .map(|(_, l)| *l)
}

pub(crate) const LINKTYPE_ETHERNET: u32 = 1;
pub(crate) const LINKTYPE_IPV4: u32 = 228;

/// EtherTypes (IEEE 802 numbers).
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
/// 802.1Q customer tag, 802.1ad service tag, and the pre-standard QinQ tag.
const ETHERTYPE_VLAN: &[u16] = &[0x8100, 0x88a8, 0x9100];

/// Address families a loopback header may carry for IPv4 / IPv6, across the BSDs, macOS
/// and Linux (the values of AF_INET6 differ per OS).
const AF_INET: &[u32] = &[2];
const AF_INET6: &[u32] = &[10, 24, 28, 30];

const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;

/// IPv6 extension headers (RFC 8200 §4) whose length is `(len + 1) * 8`: hop-by-hop,
/// routing, destination options, mobility (RFC 6275), HIP (RFC 7401), shim6 (RFC 5533).
const IPV6_EXT_8: &[u8] = &[0, 43, 60, 135, 139, 140];
const IPV6_FRAGMENT: u8 = 44;
/// Authentication header (RFC 4302 §2.2): length in 32-bit words, minus 2.
const IPV6_AH: u8 = 51;

/// Why a packet produced no segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Skip {
    /// Not IP, or IP carrying neither TCP nor UDP (ARP, ICMP, ESP, …).
    OtherProtocol,
    /// A fragment of a fragmented IP datagram: not reassembled.
    Fragment,
    /// Headers that do not parse (or were cut by the snap length before the payload).
    Malformed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TcpFlags(pub u8);

impl TcpFlags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;

    pub fn has(self, f: u8) -> bool {
        self.0 & f != 0
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Segment<'a> {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub tcp: Option<TcpInfo>,
    pub payload: &'a [u8],
    /// The snap length cut this packet's payload: `payload` is a prefix of what was sent.
    pub cut: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TcpInfo {
    pub seq: u32,
    pub ack: u32,
    pub flags: TcpFlags,
}

pub(crate) fn decode(link: Link, frame: &[u8]) -> Result<Segment<'_>, Skip> {
    let (version, ip) = match link {
        Link::Ethernet => ethernet(frame)?,
        Link::Null => {
            let family = u32_at(frame, 0, Endian::Little).ok_or(Skip::Malformed)?;
            let swapped = family.swap_bytes();
            family_of(family)
                .or_else(|_| family_of(swapped))
                .map(|v| (v, rest(frame, 4)))?
        }
        Link::Loop => {
            family_of(be32(frame, 0).ok_or(Skip::Malformed)?).map(|v| (v, rest(frame, 4)))?
        }
        Link::LinuxSll => {
            ethertype(be16(frame, 14).ok_or(Skip::Malformed)?).map(|v| (v, rest(frame, 16)))?
        }
        Link::LinuxSll2 => {
            ethertype(be16(frame, 0).ok_or(Skip::Malformed)?).map(|v| (v, rest(frame, 20)))?
        }
        Link::Raw => match u8_at(frame, 0).map(|b| b >> 4) {
            Some(4) => (4, frame),
            Some(6) => (6, frame),
            _ => return Err(Skip::OtherProtocol),
        },
        Link::Ipv4 => (4, frame),
        Link::Ipv6 => (6, frame),
    };
    match version {
        4 => ipv4(ip),
        _ => ipv6(ip),
    }
}

fn rest(b: &[u8], from: usize) -> &[u8] {
    b.get(from..).unwrap_or_default()
}

fn family_of(f: u32) -> Result<u8, Skip> {
    if AF_INET.contains(&f) {
        Ok(4)
    } else if AF_INET6.contains(&f) {
        Ok(6)
    } else {
        Err(Skip::OtherProtocol)
    }
}

fn ethertype(t: u16) -> Result<u8, Skip> {
    match t {
        ETHERTYPE_IPV4 => Ok(4),
        ETHERTYPE_IPV6 => Ok(6),
        _ => Err(Skip::OtherProtocol),
    }
}

/// IEEE 802.3 frame: two MACs, then EtherType, after any number of VLAN tags.
fn ethernet(frame: &[u8]) -> Result<(u8, &[u8]), Skip> {
    let mut off = 12;
    loop {
        let t = be16(frame, off).ok_or(Skip::Malformed)?;
        if ETHERTYPE_VLAN.contains(&t) {
            // Tag control information (2 bytes), then the inner EtherType.
            off += 4;
            continue;
        }
        return ethertype(t).map(|v| (v, rest(frame, off + 2)));
    }
}

/// The transport payload of an IP packet is bounded by the IP length, not the frame: a
/// frame may carry Ethernet padding or an FCS after it.
fn ipv4(p: &[u8]) -> Result<Segment<'_>, Skip> {
    let vihl = u8_at(p, 0).ok_or(Skip::Malformed)?;
    let ihl = usize::from(vihl & 0x0f) * 4;
    if vihl >> 4 != 4 || ihl < 20 || p.len() < ihl {
        return Err(Skip::Malformed);
    }
    let total = usize::from(be16(p, 2).ok_or(Skip::Malformed)?);
    // RFC 791 §3.1: MF flag and fragment offset.
    let frag = be16(p, 6).ok_or(Skip::Malformed)?;
    if frag & 0x3fff != 0 {
        return Err(Skip::Fragment);
    }
    let proto = u8_at(p, 9).ok_or(Skip::Malformed)?;
    let src = Ipv4Addr::from(bytes::<4>(p, 12).ok_or(Skip::Malformed)?);
    let dst = Ipv4Addr::from(bytes::<4>(p, 16).ok_or(Skip::Malformed)?);
    // A total length of 0 is what segmentation offload leaves in captures of outgoing
    // packets: the frame is then the whole packet.
    let (end, cut) = if total == 0 {
        (p.len(), false)
    } else if total < ihl {
        return Err(Skip::Malformed);
    } else {
        (total.min(p.len()), total > p.len())
    };
    let body = p.get(ihl..end).ok_or(Skip::Malformed)?;
    transport(IpAddr::V4(src), IpAddr::V4(dst), proto, body, cut)
}

fn ipv6(p: &[u8]) -> Result<Segment<'_>, Skip> {
    if u8_at(p, 0).map(|b| b >> 4) != Some(6) || p.len() < 40 {
        return Err(Skip::Malformed);
    }
    let payload_len = usize::from(be16(p, 4).ok_or(Skip::Malformed)?);
    let src = Ipv6Addr::from(bytes::<16>(p, 8).ok_or(Skip::Malformed)?);
    let dst = Ipv6Addr::from(bytes::<16>(p, 24).ok_or(Skip::Malformed)?);
    // Payload length 0 is a jumbogram (RFC 2675) or offload: take the frame.
    let (end, cut) = if payload_len == 0 {
        (p.len(), false)
    } else {
        ((40 + payload_len).min(p.len()), 40 + payload_len > p.len())
    };
    let mut next = u8_at(p, 6).ok_or(Skip::Malformed)?;
    let mut off = 40usize;
    // RFC 8200 §4.1: walk the chain of extension headers to the upper-layer header.
    loop {
        if IPV6_EXT_8.contains(&next) {
            let len = usize::from(u8_at(p, off + 1).ok_or(Skip::Malformed)?);
            next = u8_at(p, off).ok_or(Skip::Malformed)?;
            off += (len + 1) * 8;
        } else if next == IPV6_AH {
            let len = usize::from(u8_at(p, off + 1).ok_or(Skip::Malformed)?);
            next = u8_at(p, off).ok_or(Skip::Malformed)?;
            off += (len + 2) * 4;
        } else if next == IPV6_FRAGMENT {
            // RFC 8200 §4.5: offset and M flag; an atomic fragment (both zero) is whole.
            let fo = be16(p, off + 2).ok_or(Skip::Malformed)?;
            if fo & 0xfff9 != 0 {
                return Err(Skip::Fragment);
            }
            next = u8_at(p, off).ok_or(Skip::Malformed)?;
            off += 8;
        } else {
            break;
        }
        if off > end {
            return Err(Skip::Malformed);
        }
    }
    let body = p.get(off..end).ok_or(Skip::Malformed)?;
    transport(IpAddr::V6(src), IpAddr::V6(dst), next, body, cut)
}

fn transport(
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    body: &[u8],
    cut: bool,
) -> Result<Segment<'_>, Skip> {
    let sport = be16(body, 0).ok_or(Skip::Malformed)?;
    let dport = be16(body, 2).ok_or(Skip::Malformed)?;
    let (src, dst) = (SocketAddr::new(src, sport), SocketAddr::new(dst, dport));
    match proto {
        PROTO_TCP => {
            // RFC 9293 §3.1: data offset in 32-bit words.
            let seq = be32(body, 4).ok_or(Skip::Malformed)?;
            let ack = be32(body, 8).ok_or(Skip::Malformed)?;
            let doff = usize::from(u8_at(body, 12).ok_or(Skip::Malformed)? >> 4) * 4;
            let flags = TcpFlags(u8_at(body, 13).ok_or(Skip::Malformed)?);
            if doff < 20 {
                return Err(Skip::Malformed);
            }
            let payload = body.get(doff..).ok_or(Skip::Malformed)?;
            Ok(Segment {
                src,
                dst,
                tcp: Some(TcpInfo { seq, ack, flags }),
                payload,
                cut,
            })
        }
        PROTO_UDP => {
            // RFC 768: the length covers the 8-byte header.
            let len = usize::from(be16(body, 4).ok_or(Skip::Malformed)?);
            if len < 8 && len != 0 {
                return Err(Skip::Malformed);
            }
            let end = if len == 0 {
                body.len()
            } else {
                len.min(body.len())
            };
            let payload = body.get(8..end).ok_or(Skip::Malformed)?;
            Ok(Segment {
                src,
                dst,
                tcp: None,
                payload,
                cut: cut || len > body.len(),
            })
        }
        _ => Err(Skip::OtherProtocol),
    }
}
