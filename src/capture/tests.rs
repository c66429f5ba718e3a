//! End-to-end tests of [`super::read`] and [`super::write_pcapng`] on hand-built captures.

use std::net::SocketAddr;
use std::time::Duration;

use rstest::rstest;

use super::wire::{Endian, Put};
use super::write::{PcapngWriter, ethernet_frame, ip_packet, tcp_segment, udp_datagram};
use super::*;

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn a() -> SocketAddr {
    sa("192.0.2.1:40000")
}

fn b() -> SocketAddr {
    sa("192.0.2.2:5269")
}

fn tcp(src: SocketAddr, dst: SocketAddr, seq: u32, ack: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    ip_packet(
        src.ip(),
        dst.ip(),
        6,
        tcp_segment(src, dst, seq, ack, flags, payload),
        1,
    )
}

fn udp(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    ip_packet(src.ip(), dst.ip(), 17, udp_datagram(src, dst, payload), 1)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// IP packets with their time in nanoseconds since the epoch.
type Packets = Vec<(u64, Vec<u8>)>;

const T0: u64 = 1_700_000_000_000_000_000;

fn at(ms: u64) -> u64 {
    T0 + ms * 1_000_000
}

const OPEN: &[u8] = b"<?xml version='1.0'?><stream:stream xmlns='jabber:server'>";
const REPLY: &[u8] = b"<stream:stream xmlns='jabber:server' id='x'>";

/// A complete short S2S exchange from `a()` to `b()`.
fn conversation() -> Packets {
    conversation_between(a(), b())
}

fn conversation_between(a: SocketAddr, b: SocketAddr) -> Packets {
    vec![
        (at(0), tcp(a, b, 100, 0, SYN, b"")),
        (at(1), tcp(b, a, 500, 101, SYN | ACK, b"")),
        (at(2), tcp(a, b, 101, 501, ACK, b"")),
        (at(3), tcp(a, b, 101, 501, ACK | PSH, OPEN)),
        (
            at(4),
            tcp(b, a, 501, 101 + OPEN.len() as u32, ACK | PSH, REPLY),
        ),
        (
            at(5),
            tcp(
                a,
                b,
                101 + OPEN.len() as u32,
                501 + REPLY.len() as u32,
                FIN | ACK,
                b"",
            ),
        ),
        (
            at(6),
            tcp(
                b,
                a,
                501 + REPLY.len() as u32,
                102 + OPEN.len() as u32,
                FIN | ACK,
                b"",
            ),
        ),
        (
            at(7),
            tcp(
                a,
                b,
                102 + OPEN.len() as u32,
                502 + REPLY.len() as u32,
                ACK,
                b"",
            ),
        ),
    ]
}

fn conversation_flow() -> Flow {
    Flow {
        transport: Transport::Tcp,
        initiator: a(),
        responder: b(),
        payload: Payload::Xmpp,
        opened_at: Duration::ZERO,
        chunks: vec![
            Chunk {
                at: ms(3),
                from: Side::Initiator,
                bytes: OPEN.to_vec(),
            },
            Chunk {
                at: ms(4),
                from: Side::Responder,
                bytes: REPLY.to_vec(),
            },
        ],
        end: FlowEnd::Closed {
            by: Side::Initiator,
            at: ms(5),
        },
        tls_from: None,
    }
}

/// Link-layer framings of an IP packet, with their LINKTYPE.
#[derive(Debug, Clone, Copy)]
enum Framing {
    Ethernet,
    Vlan,
    QinQ,
    Sll,
    Sll2,
    NullLittle,
    NullBig,
    Loop,
    Raw,
    RawV4,
}

impl Framing {
    fn link(self) -> u16 {
        match self {
            Framing::Ethernet | Framing::Vlan | Framing::QinQ => 1,
            Framing::Sll => 113,
            Framing::Sll2 => 276,
            Framing::NullLittle | Framing::NullBig => 0,
            Framing::Loop => 108,
            Framing::Raw => 101,
            Framing::RawV4 => 228,
        }
    }

    fn frame(self, ip: &[u8]) -> Vec<u8> {
        let v6 = ip.first().is_some_and(|b| b >> 4 == 6);
        let ethertype: [u8; 2] = if v6 { [0x86, 0xdd] } else { [0x08, 0x00] };
        let mut f = Vec::new();
        match self {
            Framing::Ethernet => return ethernet_frame(ip, true),
            Framing::Vlan | Framing::QinQ => {
                f.extend_from_slice(&[2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1]);
                if matches!(self, Framing::QinQ) {
                    f.extend_from_slice(&[0x88, 0xa8, 0x00, 0x64]);
                }
                f.extend_from_slice(&[0x81, 0x00, 0x20, 0x0a]);
                f.extend_from_slice(&ethertype);
            }
            Framing::Sll => {
                // packet type (host), ARPHRD_LOOPBACK, address length, address, protocol.
                f.extend_from_slice(&[0, 0, 0x03, 0x04, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0]);
                f.extend_from_slice(&ethertype);
            }
            Framing::Sll2 => {
                f.extend_from_slice(&ethertype);
                f.extend_from_slice(&[0, 0, 0, 0, 0, 1, 0x03, 0x04, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0]);
            }
            Framing::NullLittle => f.extend_from_slice(&(if v6 { 30u32 } else { 2 }).to_le_bytes()),
            Framing::NullBig => f.extend_from_slice(&(if v6 { 24u32 } else { 2 }).to_be_bytes()),
            Framing::Loop => f.extend_from_slice(&(if v6 { 24u32 } else { 2 }).to_be_bytes()),
            Framing::Raw | Framing::RawV4 => {}
        }
        f.extend_from_slice(ip);
        f
    }
}

fn pcapng(endian: Endian, framing: Framing, packets: &Packets) -> Vec<u8> {
    let mut w = PcapngWriter::new(endian);
    w.interface(framing.link(), Some(9));
    for (t, ip) in packets {
        let f = framing.frame(ip);
        w.packet(0, *t, &f, f.len() as u32);
    }
    w.finish()
}

/// A classic pcap file (draft-ietf-opsawg-pcap §4, §5).
fn pcap(endian: Endian, nanos: bool, link: u32, frames: &[(u64, Vec<u8>)]) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut p = Put {
        buf: &mut buf,
        endian,
    };
    p.u32(if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 });
    p.u16(2);
    p.u16(4);
    p.u32(0);
    p.u32(0);
    p.u32(262_144);
    p.u32(link);
    for (t, f) in frames {
        let frac = t % 1_000_000_000;
        p.u32((t / 1_000_000_000) as u32);
        p.u32(if nanos {
            frac as u32
        } else {
            (frac / 1000) as u32
        });
        p.u32(f.len() as u32);
        p.u32(f.len() as u32);
        p.buf.extend_from_slice(f);
    }
    buf
}

fn framed(framing: Framing, packets: &Packets) -> Vec<(u64, Vec<u8>)> {
    packets
        .iter()
        .map(|(t, ip)| (*t, framing.frame(ip)))
        .collect()
}

#[rstest]
fn every_link_type(
    #[values(
        Framing::Ethernet,
        Framing::Vlan,
        Framing::QinQ,
        Framing::Sll,
        Framing::Sll2,
        Framing::NullLittle,
        Framing::NullBig,
        Framing::Loop,
        Framing::Raw,
        Framing::RawV4
    )]
    framing: Framing,
) {
    let c = read(&pcapng(Endian::Little, framing, &conversation())).unwrap();
    assert_eq!(c.flows, vec![conversation_flow()]);
    assert_eq!(c.notes, Vec::<String>::new());
}

#[rstest]
fn every_link_type_over_ipv6(
    #[values(
        Framing::Ethernet,
        Framing::Vlan,
        Framing::Sll,
        Framing::Sll2,
        Framing::NullLittle,
        Framing::NullBig,
        Framing::Loop,
        Framing::Raw
    )]
    framing: Framing,
) {
    let (a6, b6) = (sa("[2001:db8::1]:40000"), sa("[2001:db8::2]:5269"));
    let c = read(&pcapng(Endian::Big, framing, &conversation_between(a6, b6))).unwrap();
    let want = Flow {
        initiator: a6,
        responder: b6,
        ..conversation_flow()
    };
    assert_eq!(c.flows, vec![want]);
    assert!(c.notes.is_empty(), "{:?}", c.notes);
}

#[rstest]
fn pcap_and_pcapng_in_both_byte_orders(
    #[values(Endian::Little, Endian::Big)] endian: Endian,
    #[values(false, true)] nanos: bool,
) {
    let frames = framed(Framing::Ethernet, &conversation());
    let from_pcap = read(&pcap(endian, nanos, 1, &frames)).unwrap();
    let from_pcapng = read(&pcapng(endian, Framing::Ethernet, &conversation())).unwrap();
    assert_eq!(from_pcap.flows, vec![conversation_flow()]);
    assert_eq!(from_pcap, from_pcapng);
}

#[test]
fn timestamps_keep_their_resolution() {
    let mut packets = conversation();
    // 1.5 µs after the SYN: the µs pcap rounds it down, the ns formats keep it.
    packets[3].0 = T0 + 1_500;
    let frames = framed(Framing::Raw, &packets);
    let micro = read(&pcap(Endian::Little, false, 101, &frames)).unwrap();
    let nano = read(&pcap(Endian::Big, true, 101, &frames)).unwrap();
    assert_eq!(micro.flows[0].chunks[0].at, Duration::from_nanos(1_000));
    assert_eq!(nano.flows[0].chunks[0].at, Duration::from_nanos(1_500));
}

/// pcapng with two sections, interfaces of different link types and timestamp
/// resolutions, simple and obsolete packet blocks, and blocks the reader does not know.
#[test]
fn pcapng_sections_interfaces_and_block_kinds() {
    let packets = conversation();
    let mut w = PcapngWriter::new(Endian::Big);
    w.block(0x0000_0004, &[0; 8]); // name resolution block: skipped
    w.interface(1, None); // Ethernet, microseconds
    w.interface(101, Some(0x80 | 10)); // raw IP, 1/1024 s
    let (t0, p0) = &packets[0];
    let f0 = Framing::Ethernet.frame(p0);
    w.packet(0, (t0 - T0) / 1000, &f0, f0.len() as u32);
    // Obsolete packet block (pcapng Appendix A) on interface 1: 1024 units = 1 s.
    let mut body = Vec::new();
    let mut p = Put {
        buf: &mut body,
        endian: Endian::Big,
    };
    p.u16(1);
    p.u16(0);
    p.u32(0);
    p.u32(1024);
    p.u32(packets[1].1.len() as u32);
    p.u32(packets[1].1.len() as u32);
    body.extend_from_slice(&packets[1].1);
    w.block(2, &body);
    w.block(0x0bad_1dea, &[1, 2, 3]); // custom/unknown: skipped
    // A new little-endian section: interfaces start again.
    let mut rest = PcapngWriter::new(Endian::Little);
    rest.interface(228, Some(9));
    // Simple packet block (§4.4): interface 0, no timestamp (the previous packet's).
    let mut spb = Vec::new();
    spb.extend_from_slice(&(packets[2].1.len() as u32).to_le_bytes());
    spb.extend_from_slice(&packets[2].1);
    rest.block(3, &spb);
    for (t, ip) in &packets[3..] {
        rest.packet(0, t - T0 + 1_000_000_000, ip, ip.len() as u32);
    }
    let mut file = w.finish();
    file.extend_from_slice(&rest.finish());
    let c = read(&file).unwrap();
    let mut want = conversation_flow();
    for ch in &mut want.chunks {
        ch.at += Duration::from_secs(1);
    }
    want.end = FlowEnd::Closed {
        by: Side::Initiator,
        at: ms(1005),
    };
    assert_eq!(c.flows, vec![want]);
    assert!(c.notes.is_empty(), "{:?}", c.notes);
}

#[test]
fn ipv6_with_extension_headers() {
    let (a6, b6) = (sa("[2001:db8::1]:40000"), sa("[2001:db8::2]:5060"));
    let msg = b"MESSAGE sip:bob@example.net SIP/2.0\r\nContent-Length: 0\r\n\r\n";
    // Hop-by-hop (8 bytes) → destination options (16 bytes) → atomic fragment → UDP.
    let dgram = udp_datagram(a6, b6, msg);
    let plain = ip_packet(a6.ip(), b6.ip(), 17, dgram, 1);
    let mut ext = Vec::new();
    ext.extend_from_slice(&[60, 0, 1, 4, 0, 0, 0, 0]); // next: dest opts, PadN
    ext.extend_from_slice(&[44, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // next: fragment
    ext.extend_from_slice(&[17, 0, 0, 0, 0, 0, 0, 9]); // offset 0, M=0: atomic
    let mut with_ext = plain[..40].to_vec();
    with_ext[6] = 0; // next header: hop-by-hop
    let plen = (plain.len() - 40 + ext.len()) as u16;
    with_ext[4..6].copy_from_slice(&plen.to_be_bytes());
    with_ext.extend_from_slice(&ext);
    with_ext.extend_from_slice(&plain[40..]);
    // A real (non-first) fragment is skipped.
    let mut frag = with_ext.clone();
    frag[40 + 8 + 16 + 3] = 0x08; // fragment offset 1
    // IPv4 with options (IHL 6) and a TCP SYN; and an IPv4 fragment (MF set).
    let syn = tcp(a(), b(), 7, 0, SYN, b"");
    let mut v4opt = vec![0x46];
    v4opt.extend_from_slice(&syn[1..20]);
    v4opt[3] += 4;
    v4opt.extend_from_slice(&[1, 1, 1, 0]); // NOP NOP NOP EOL
    v4opt.extend_from_slice(&syn[20..]);
    let mut v4frag = udp(a(), b(), b"x");
    v4frag[6] = 0x20; // MF
    let arp = {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0x08, 0x06]);
        f.extend_from_slice(&[0; 28]);
        f
    };
    let mut w = PcapngWriter::new(Endian::Little);
    w.interface(1, Some(9));
    for (i, f) in [
        Framing::Ethernet.frame(&with_ext),
        Framing::Ethernet.frame(&frag),
        Framing::Ethernet.frame(&v4opt),
        Framing::Ethernet.frame(&v4frag),
        arp,
    ]
    .iter()
    .enumerate()
    {
        w.packet(0, i as u64, f, f.len() as u32);
    }
    let c = read(&w.finish()).unwrap();
    assert_eq!(c.flows.len(), 2);
    assert_eq!(c.flows[0].transport, Transport::Udp);
    assert_eq!((c.flows[0].initiator, c.flows[0].responder), (a6, b6));
    assert_eq!(c.flows[0].payload, Payload::Sip);
    assert_eq!(c.flows[0].chunks[0].bytes, msg.to_vec());
    assert_eq!(
        (c.flows[1].initiator, c.flows[1].transport),
        (a(), Transport::Tcp)
    );
    assert_eq!(
        c.notes,
        vec![
            "2 IP fragments skipped (fragments are not reassembled)".to_string(),
            "1 packets of other protocols skipped (not TCP or UDP over IPv4 or IPv6)".to_string(),
        ]
    );
}

fn read_packets(packets: &Packets) -> Capture {
    read(&pcapng(Endian::Little, Framing::Raw, packets)).unwrap()
}

fn handshake(a: SocketAddr, b: SocketAddr, isn_a: u32, isn_b: u32) -> Packets {
    vec![
        (at(0), tcp(a, b, isn_a, 0, SYN, b"")),
        (
            at(0),
            tcp(b, a, isn_b, isn_a.wrapping_add(1), SYN | ACK, b""),
        ),
        (
            at(0),
            tcp(a, b, isn_a.wrapping_add(1), isn_b.wrapping_add(1), ACK, b""),
        ),
    ]
}

fn bytes_from(f: &Flow, side: Side) -> Vec<u8> {
    f.chunks
        .iter()
        .filter(|c| c.from == side)
        .flat_map(|c| c.bytes.clone())
        .collect()
}

#[test]
fn out_of_order_retransmitted_and_overlapping_segments() {
    let (a, b) = (a(), b());
    let mut p = handshake(a, b, 1000, 9000);
    let s = 1001;
    // "abcdefghij" sent as: [4..8) early, [0..4) late, [2..6) overlapping, [0..4) again,
    // [8..10) with PSH.
    p.push((at(1), tcp(a, b, s + 4, 9001, ACK, b"efgh")));
    p.push((at(2), tcp(a, b, s, 9001, ACK, b"abcd")));
    p.push((at(3), tcp(a, b, s + 2, 9001, ACK, b"cdef")));
    p.push((at(4), tcp(a, b, s, 9001, ACK, b"abcd")));
    p.push((at(5), tcp(a, b, s + 8, 9001, ACK | PSH, b"ij")));
    // The responder's segment arriving twice, the second copy longer.
    p.push((at(6), tcp(b, a, 9001, s + 10, ACK, b"XY")));
    p.push((at(7), tcp(b, a, 9001, s + 10, ACK | PSH, b"XYZ")));
    let c = read_packets(&p);
    let f = &c.flows[0];
    assert_eq!(
        f.chunks,
        vec![
            Chunk {
                at: ms(2),
                from: Side::Initiator,
                bytes: b"abcdefghij".to_vec()
            },
            Chunk {
                at: ms(6),
                from: Side::Responder,
                bytes: b"XYZ".to_vec()
            },
        ]
    );
    assert_eq!(f.end, FlowEnd::Open);
    assert_eq!(
        c.notes,
        vec![format!(
            "tcp {a} → {b}: 10 retransmitted or overlapping bytes in 3 segments dropped"
        )]
    );
}

#[test]
fn sequence_numbers_wrap_around() {
    let (a, b) = (a(), b());
    let isn = u32::MAX - 3;
    let mut p = handshake(a, b, isn, u32::MAX);
    let s = isn.wrapping_add(1);
    // Out of order across the wrap: the segment after 2^32 first.
    p.push((at(1), tcp(a, b, s.wrapping_add(5), 0, ACK | PSH, b"fghij")));
    p.push((at(2), tcp(a, b, s, 0, ACK, b"abcde")));
    p.push((at(3), tcp(b, a, 0, 0, ACK | PSH, b"reply")));
    let c = read_packets(&p);
    assert_eq!(
        bytes_from(&c.flows[0], Side::Initiator),
        b"abcdefghij".to_vec()
    );
    assert_eq!(bytes_from(&c.flows[0], Side::Responder), b"reply".to_vec());
    assert_eq!(c.flows[0].chunks.len(), 2);
    assert!(c.notes.is_empty(), "{:?}", c.notes);
}

#[test]
fn a_gap_is_noted_and_the_stream_continues() {
    let (a, b) = (a(), b());
    let mut p = handshake(a, b, 0, 0);
    p.push((at(1), tcp(a, b, 1, 1, ACK | PSH, b"first ")));
    // Bytes 6..16 never captured.
    p.push((at(2), tcp(a, b, 17, 1, ACK | PSH, b"after")));
    p.push((at(3), tcp(b, a, 1, 22, ACK | PSH, b"ok")));
    p.push((at(4), tcp(a, b, 22, 3, ACK | PSH, b" more")));
    let c = read_packets(&p);
    assert_eq!(
        c.flows[0].chunks,
        vec![
            Chunk {
                at: ms(1),
                from: Side::Initiator,
                bytes: b"first ".to_vec()
            },
            Chunk {
                at: ms(2),
                from: Side::Initiator,
                bytes: b"after".to_vec()
            },
            Chunk {
                at: ms(3),
                from: Side::Responder,
                bytes: b"ok".to_vec()
            },
            Chunk {
                at: ms(4),
                from: Side::Initiator,
                bytes: b" more".to_vec()
            },
        ]
    );
    assert_eq!(
        c.notes,
        vec![format!(
            "tcp {a} → {b}: bytes 6..16 from the initiator (10 bytes) are missing from the \
             capture; the chunks continue after the gap"
        )]
    );
}

#[test]
fn segments_without_push_join_until_one_with_push() {
    let (a, b) = (a(), b());
    let mut p = handshake(a, b, 0, 0);
    p.push((at(1), tcp(a, b, 1, 1, ACK, b"<mess")));
    p.push((at(2), tcp(a, b, 6, 1, ACK | PSH, b"age/>")));
    p.push((at(3), tcp(a, b, 11, 1, ACK | PSH, b"<iq/>")));
    p.push((at(4), tcp(a, b, 16, 1, ACK, b"<pres")));
    p.push((at(5), tcp(b, a, 1, 1, ACK, b"x")));
    p.push((at(6), tcp(a, b, 21, 1, ACK | PSH, b"ence/>")));
    let c = read_packets(&p);
    let got: Vec<(&[u8], Duration)> = c.flows[0]
        .chunks
        .iter()
        .map(|c| (c.bytes.as_slice(), c.at))
        .collect();
    let want: Vec<(&[u8], Duration)> = vec![
        (b"<message/>", ms(1)),
        (b"<iq/>", ms(3)),
        (b"<pres", ms(4)),
        (b"x", ms(5)),
        (b"ence/>", ms(6)),
    ];
    assert_eq!(got, want);
}

#[test]
fn reset_ends_the_flow_and_a_new_syn_starts_another() {
    let (a, b) = (a(), b());
    let mut p = handshake(a, b, 10, 20);
    p.push((at(1), tcp(a, b, 11, 21, ACK | PSH, b"hello")));
    p.push((at(2), tcp(b, a, 21, 16, RST | ACK, b"")));
    // The same addresses again: a second connection.
    p.push((at(3), tcp(a, b, 5000, 0, SYN, b"")));
    p.push((at(4), tcp(b, a, 7000, 5001, SYN | ACK, b"")));
    p.push((at(5), tcp(a, b, 5001, 7001, ACK | PSH, b"again")));
    p.push((at(6), tcp(a, b, 5006, 7001, FIN | ACK, b"")));
    p.push((at(7), tcp(b, a, 7001, 5007, RST, b"")));
    let c = read_packets(&p);
    assert_eq!(c.flows.len(), 2);
    assert_eq!(
        c.flows[0].end,
        FlowEnd::Reset {
            by: Side::Responder,
            at: ms(2)
        }
    );
    assert_eq!(c.flows[1].opened_at, ms(3));
    assert_eq!(bytes_from(&c.flows[1], Side::Initiator), b"again".to_vec());
    // A reset after a FIN: the close was not graceful.
    assert_eq!(
        c.flows[1].end,
        FlowEnd::Reset {
            by: Side::Responder,
            at: ms(7)
        }
    );
}

#[test]
fn a_retransmitted_syn_is_the_same_connection() {
    let (a, b) = (a(), b());
    let mut p = vec![(at(0), tcp(a, b, 10, 0, SYN, b""))];
    p.extend(handshake(a, b, 10, 20));
    p.push((at(1), tcp(a, b, 11, 21, ACK | PSH, b"hi")));
    let c = read_packets(&p);
    assert_eq!(c.flows.len(), 1);
    assert_eq!(bytes_from(&c.flows[0], Side::Initiator), b"hi".to_vec());
}

/// TCP Fast Open (RFC 7413 §3): data on the SYN starts at the SYN's sequence number + 1.
#[test]
fn data_on_the_syn() {
    let (a, b) = (a(), b());
    let p = vec![
        (at(0), tcp(a, b, 10, 0, SYN, b"<?xml")),
        (at(1), tcp(b, a, 20, 16, SYN | ACK, b"")),
        (at(2), tcp(a, b, 16, 21, ACK | PSH, b" version='1.0'?>")),
    ];
    let c = read_packets(&p);
    assert_eq!(
        bytes_from(&c.flows[0], Side::Initiator),
        b"<?xml version='1.0'?>".to_vec()
    );
    assert_eq!(c.flows[0].chunks.len(), 1);
    assert_eq!(c.flows[0].chunks[0].at, Duration::ZERO);
}

/// `if_tsoffset` (pcapng §4.2) moves an interface's times by whole seconds.
#[test]
fn interface_time_offset() {
    let mut w = PcapngWriter::new(Endian::Little);
    let mut body = Vec::new();
    body.extend_from_slice(&101u16.to_le_bytes());
    body.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    body.extend_from_slice(&14u16.to_le_bytes());
    body.extend_from_slice(&8u16.to_le_bytes());
    body.extend_from_slice(&5i64.to_le_bytes());
    body.extend_from_slice(&[0, 0, 0, 0]);
    w.block(1, &body); // raw IP, microseconds, 5 s offset
    w.interface(101, Some(9)); // raw IP, nanoseconds, no offset
    let syn = tcp(a(), b(), 1, 0, SYN, b"");
    let data = tcp(a(), b(), 2, 0, ACK | PSH, b"x");
    w.packet(1, 1_000_000_000, &syn, syn.len() as u32);
    w.packet(0, 0, &data, data.len() as u32);
    let c = read(&w.finish()).unwrap();
    assert_eq!(c.flows[0].chunks[0].at, Duration::from_secs(4));
}

#[rstest]
#[case::server_port_speaks_first("192.0.2.2:5269", "192.0.2.1:40000")]
#[case::client_speaks_first("192.0.2.1:40000", "192.0.2.2:5269")]
#[case::lower_port_listens("192.0.2.1:50000", "192.0.2.2:8000")]
fn mid_stream_start(#[case] first_src: &str, #[case] first_dst: &str) {
    let (s, d) = (sa(first_src), sa(first_dst));
    let p = vec![
        (at(0), tcp(s, d, 77_000, 88_000, ACK | PSH, b"<message/>")),
        (at(1), tcp(d, s, 88_000, 77_010, ACK | PSH, b"<iq/>")),
        (at(2), tcp(s, d, 77_010, 88_005, ACK | PSH, b"<presence/>")),
    ];
    let c = read_packets(&p);
    let f = &c.flows[0];
    let (client, server) = if s.port() == 5269 || (s.port() < d.port() && d.port() != 5269) {
        (d, s)
    } else {
        (s, d)
    };
    assert_eq!((f.initiator, f.responder), (client, server));
    assert_eq!(f.payload, Payload::Xmpp);
    assert_eq!(f.chunks.len(), 3);
    assert_eq!(f.chunks[0].bytes, b"<message/>".to_vec());
    assert_eq!(
        c.notes,
        vec![format!(
            "tcp {client} → {server}: the capture starts after the connection opened (no SYN); \
             which end initiated is guessed from the ports"
        )]
    );
}

#[test]
fn syn_ack_without_syn_knows_the_initiator() {
    let (a, b) = (a(), b());
    let p = vec![
        (at(0), tcp(b, a, 50, 11, SYN | ACK, b"")),
        (
            at(1),
            tcp(a, b, 11, 51, ACK | PSH, b"INVITE sip:x@y SIP/2.0\r\n"),
        ),
    ];
    let c = read_packets(&p);
    assert_eq!(
        (c.flows[0].initiator, c.flows[0].payload),
        (a, Payload::Sip)
    );
    assert!(c.notes.is_empty());
}

#[test]
fn udp_flows() {
    let (a, b, x) = (
        sa("192.0.2.1:5060"),
        sa("192.0.2.2:5060"),
        sa("192.0.2.3:5060"),
    );
    let p = vec![
        (at(0), udp(b, a, b"\r\n\r\n")),
        (at(1), udp(a, b, b"SIP/2.0 200 OK\r\n\r\n")),
        (at(2), udp(x, a, b"OPTIONS sip:a SIP/2.0\r\n\r\n")),
        (at(3), udp(b, a, b"")),
    ];
    let c = read_packets(&p);
    assert_eq!(c.flows.len(), 2);
    let f = &c.flows[0];
    assert_eq!(
        (f.transport, f.initiator, f.responder, f.payload),
        (Transport::Udp, b, a, Payload::Sip)
    );
    let sides: Vec<(Side, usize)> = f.chunks.iter().map(|c| (c.from, c.bytes.len())).collect();
    assert_eq!(
        sides,
        vec![
            (Side::Initiator, 4),
            (Side::Responder, 18),
            (Side::Initiator, 0)
        ]
    );
    assert_eq!(f.end, FlowEnd::Open);
    assert_eq!((c.flows[1].initiator, c.flows[1].opened_at), (x, ms(2)));
}

#[test]
fn starttls_sets_tls_from() {
    let (a, b) = (a(), b());
    let mut p = handshake(a, b, 0, 0);
    let msgs: [(bool, &[u8]); 5] = [
        (true, b"<?xml version='1.0'?><stream:stream xmlns='jabber:server'>"),
        (false, b"<stream:stream><stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/></stream:features>"),
        (true, b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"),
        (false, b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"),
        (true, b"\x16\x03\x01\x00\x04abcd"),
    ];
    let (mut sa_, mut sb) = (1u32, 1u32);
    for (i, (from_a, m)) in msgs.iter().enumerate() {
        let t = at(i as u64 + 1);
        if *from_a {
            p.push((t, tcp(a, b, sa_, sb, ACK | PSH, m)));
            sa_ += m.len() as u32;
        } else {
            p.push((t, tcp(b, a, sb, sa_, ACK | PSH, m)));
            sb += m.len() as u32;
        }
    }
    let c = read_packets(&p);
    assert_eq!(c.flows[0].payload, Payload::Xmpp);
    assert_eq!(c.flows[0].tls_from, Some(4));
}

#[test]
fn direct_tls_is_tls() {
    let (a, b) = (a(), b());
    let mut p = handshake(a, b, 0, 0);
    p.push((
        at(1),
        tcp(a, b, 1, 1, ACK | PSH, b"\x16\x03\x01\x00\x05hello"),
    ));
    let c = read_packets(&p);
    assert_eq!(
        (c.flows[0].payload, c.flows[0].tls_from),
        (Payload::Tls, None)
    );
}

#[test]
fn snap_length_cuts_are_noted() {
    let (a, b) = (a(), b());
    let mut packets = handshake(a, b, 0, 0);
    packets.push((at(1), tcp(a, b, 1, 1, ACK | PSH, b"0123456789")));
    packets.push((at(2), tcp(a, b, 11, 1, ACK | PSH, b"abc")));
    let mut w = PcapngWriter::new(Endian::Little);
    w.interface(101, Some(9));
    for (i, (t, ip)) in packets.iter().enumerate() {
        // The data packet keeps 4 of its 10 payload bytes; the SYN keeps only 10 bytes.
        let keep = match i {
            0 => 10,
            3 => ip.len() - 6,
            _ => ip.len(),
        };
        w.packet(0, *t, &ip[..keep], ip.len() as u32);
    }
    let c = read(&w.finish()).unwrap();
    let f = &c.flows[0];
    // The SYN was lost to the cut, so the flow looks mid-stream from the SYN-ACK… which
    // still names the initiator.
    assert_eq!(f.initiator, a);
    assert_eq!(bytes_from(f, Side::Initiator), b"0123abc".to_vec());
    assert!(
        c.notes
            .iter()
            .any(|n| n.contains("bytes 4..10 from the initiator")),
        "{:?}",
        c.notes
    );
    assert!(c.notes.contains(&"2 packets were cut by the snap length; their missing bytes show as gaps, or the packet was skipped".to_string()), "{:?}", c.notes);
}

#[test]
fn ethernet_padding_and_trailers_are_not_payload() {
    let (a, b) = (a(), b());
    let mut p = handshake(a, b, 0, 0);
    p.push((at(1), tcp(a, b, 1, 1, ACK | PSH, b"x")));
    let mut w = PcapngWriter::new(Endian::Little);
    w.interface(1, Some(9));
    for (t, ip) in &p {
        let mut f = ethernet_frame(ip, true);
        f.resize(f.len().max(60), 0);
        f.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]); // an FCS
        w.packet(0, *t, &f, f.len() as u32);
    }
    let c = read(&w.finish()).unwrap();
    assert_eq!(bytes_from(&c.flows[0], Side::Initiator), b"x".to_vec());
}

#[test]
fn unknown_link_type_is_an_error_naming_it() {
    let mut w = PcapngWriter::new(Endian::Little);
    w.interface(1, None);
    w.interface(147, None); // LINKTYPE_USER0
    w.packet(1, 0, b"whatever", 8);
    let err = read(&w.finish()).unwrap_err();
    assert!(
        matches!(
            err,
            CaptureError::UnknownLinkType {
                link: 147,
                interface: 1,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("unknown link type 147 on interface 1")
    );
    // An interface of an unknown type that carries no packets is fine.
    let mut w = PcapngWriter::new(Endian::Little);
    w.interface(147, None);
    assert_eq!(read(&w.finish()), Ok(Capture::default()));
    let pcap_file = pcap(Endian::Little, false, 0xffff, &[(0, vec![0; 4])]);
    assert!(matches!(
        read(&pcap_file),
        Err(CaptureError::UnknownLinkType {
            link: 0xffff,
            interface: 0,
            offset: 24
        })
    ));
}

#[test]
fn structural_errors_name_the_offset() {
    let good = pcapng(Endian::Little, Framing::Raw, &conversation());
    // Second block (the IDB) at offset 28: break its trailing length.
    let mut bad = good.clone();
    let idb_len = u32::from_le_bytes(bad[32..36].try_into().unwrap()) as usize;
    bad[28 + idb_len - 4] ^= 0xff;
    assert!(matches!(
        read(&bad),
        Err(CaptureError::Malformed { offset: 28, .. })
    ));
    let mut short = good.clone();
    short[32..36].copy_from_slice(&8u32.to_le_bytes());
    assert!(matches!(
        read(&short),
        Err(CaptureError::Malformed { offset: 28, .. })
    ));
    let mut bom = good.clone();
    bom[8] = 0;
    assert!(matches!(
        read(&bom),
        Err(CaptureError::BadMagic { offset: 8, .. })
    ));
    let mut iface = good.clone();
    let epb = 28 + idb_len;
    iface[epb + 8] = 3;
    assert_eq!(
        read(&iface),
        Err(CaptureError::UnknownInterface {
            interface: 3,
            offset: epb
        })
    );
    let mut version = good;
    version[12] = 2;
    assert!(matches!(
        read(&version),
        Err(CaptureError::UnsupportedVersion {
            format: "pcapng",
            major: 2,
            ..
        })
    ));
}

/// Cutting a capture at every byte offset: an error only inside the first header,
/// otherwise the packets before the cut, and a note unless the cut falls between records.
#[rstest]
fn truncated_at_every_offset(#[values(false, true)] ng: bool) {
    let full = if ng {
        pcapng(Endian::Big, Framing::Ethernet, &conversation())
    } else {
        pcap(
            Endian::Little,
            true,
            1,
            &framed(Framing::Ethernet, &conversation()),
        )
    };
    let header = if ng { 28 } else { 24 };
    let mut boundaries = vec![header];
    let mut off = header;
    while off < full.len() {
        let len = if ng {
            u32::from_be_bytes(full[off + 4..off + 8].try_into().unwrap()) as usize
        } else {
            16 + u32::from_le_bytes(full[off + 8..off + 12].try_into().unwrap()) as usize
        };
        off += len;
        boundaries.push(off);
    }
    let mut last_total = 0;
    for n in 0..=full.len() {
        match read(&full[..n]) {
            Err(CaptureError::Truncated {
                offset: 0,
                available,
                ..
            }) => {
                assert!(n < header, "cut at {n}");
                assert_eq!(available, n);
            }
            Ok(c) => {
                assert!(n >= header, "cut at {n}");
                let cut_note = c.notes.iter().any(|s| s.starts_with("capture cut short"));
                assert_eq!(
                    cut_note,
                    !boundaries.contains(&n),
                    "cut at {n}: {:?}",
                    c.notes
                );
                let total: usize = c
                    .flows
                    .iter()
                    .flat_map(|f| &f.chunks)
                    .map(|c| c.bytes.len())
                    .sum();
                assert!(total >= last_total, "cut at {n}");
                last_total = total;
            }
            Err(e) => panic!("cut at {n}: {e}"),
        }
    }
    assert_eq!(read(&full).unwrap().flows, vec![conversation_flow()]);
}

/// xorshift64*: deterministic pseudo-random numbers for the property tests.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        const TEXTS: &[&[u8]] = &[
            b"<?xml version='1.0'?><stream:stream>",
            b"MESSAGE sip:a@b SIP/2.0\r\n\r\n",
            b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
            b"\x16\x03\x01\x00\x10",
        ];
        let mut v: Vec<u8> = match self.below(3) {
            0 => TEXTS[self.below(TEXTS.len() as u64) as usize].to_vec(),
            _ => Vec::new(),
        };
        while v.len() < n {
            v.push(self.next() as u8);
        }
        v
    }
}

/// Never panics on damaged input: random byte flips, cuts and splices of a valid capture.
#[test]
fn damaged_captures_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let bases = [
        pcapng(Endian::Little, Framing::Sll2, &conversation()),
        pcapng(Endian::Big, Framing::Vlan, &conversation()),
        pcap(
            Endian::Big,
            false,
            0,
            &framed(Framing::NullBig, &conversation()),
        ),
    ];
    for _ in 0..3000 {
        let mut f = bases[rng.below(3) as usize].clone();
        for _ in 0..=rng.below(4) {
            let i = rng.below(f.len() as u64) as usize;
            f[i] = rng.next() as u8;
        }
        if rng.below(4) == 0 {
            f.truncate(rng.below(f.len() as u64) as usize);
        }
        let _ = read(&f);
    }
}

fn gen_flows(rng: &mut Rng, v4_only: bool) -> Vec<Flow> {
    let mut flows = Vec::new();
    let mut t = Duration::ZERO;
    for i in 0..1 + rng.below(4) {
        let v6 = !v4_only && rng.below(2) == 0;
        let (ia, ra) = if v6 {
            ("[2001:db8::1]", "[2001:db8::2]")
        } else {
            ("192.0.2.1", "192.0.2.2")
        };
        let initiator = sa(&format!("{ia}:{}", 40000 + i));
        let responder = sa(&format!(
            "{ra}:{}",
            [5269, 5060, 5347][rng.below(3) as usize]
        ));
        let transport = if rng.below(3) == 0 {
            Transport::Udp
        } else {
            Transport::Tcp
        };
        let opened_at = t;
        let mut chunks = Vec::new();
        let mut ct = t;
        let n = rng.below(7) + u64::from(transport == Transport::Udp);
        for k in 0..n {
            if !(transport == Transport::Udp && k == 0) {
                ct += Duration::from_micros(rng.below(3000));
            }
            let from = if k == 0 && transport == Transport::Udp || rng.below(2) == 0 {
                Side::Initiator
            } else {
                Side::Responder
            };
            let len = match transport {
                Transport::Tcp => 1 + rng.below(2500) as usize,
                Transport::Udp => rng.below(1500) as usize,
            };
            chunks.push(Chunk {
                at: ct,
                from,
                bytes: rng.bytes(len),
            });
        }
        let end_at = ct + Duration::from_micros(rng.below(1000));
        let by = if rng.below(2) == 0 {
            Side::Initiator
        } else {
            Side::Responder
        };
        let end = match (transport, rng.below(3)) {
            (Transport::Udp, _) | (_, 0) => FlowEnd::Open,
            (_, 1) => FlowEnd::Closed { by, at: end_at },
            _ => FlowEnd::Reset { by, at: end_at },
        };
        let payload = classify(&chunks);
        let tls_from = if payload == Payload::Xmpp {
            starttls_from(&chunks)
        } else {
            None
        };
        flows.push(Flow {
            transport,
            initiator,
            responder,
            payload,
            opened_at,
            chunks,
            end,
            tls_from,
        });
        t += Duration::from_micros(rng.below(2000));
    }
    flows
}

/// The reader reads back exactly what the writer wrote, over assorted flows, link layers,
/// segment sizes and sequence numbers (including ones that wrap during the flow).
#[test]
fn write_then_read_round_trips() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    for round in 0..300 {
        let link = if rng.below(2) == 0 {
            LinkLayer::Ethernet
        } else {
            LinkLayer::RawIpv4
        };
        let flows = gen_flows(&mut rng, link == LinkLayer::RawIpv4);
        let options = WriteOptions {
            link,
            mss: [1, 7, 100, 536, 1460, 65_535][rng.below(6) as usize],
            start_unix_nanos: rng.below(1 << 62),
            isn: if rng.below(2) == 0 {
                u32::MAX - rng.below(5000) as u32
            } else {
                rng.next() as u32
            },
        };
        let file = write_pcapng(&flows, &options).unwrap();
        let back = read(&file).unwrap();
        assert_eq!(back.flows, flows, "round {round} {options:?}");
        assert!(back.notes.is_empty(), "round {round}: {:?}", back.notes);
    }
}

/// Whatever order segments arrive in, with duplicates, each side's bytes come out whole.
#[test]
fn reordered_and_duplicated_segments_reassemble() {
    let mut rng = Rng(42);
    for round in 0..100 {
        let mut flows = gen_flows(&mut rng, true);
        flows.retain(|f| f.transport == Transport::Tcp);
        flows.truncate(1);
        let Some(flow) = flows.first() else { continue };
        let options = WriteOptions {
            link: LinkLayer::RawIpv4,
            mss: 1 + rng.below(700) as usize,
            ..WriteOptions::default()
        };
        let file = write_pcapng(&flows, &options).unwrap();
        let container = super::file::parse(&file).unwrap();
        let mut packets: Packets = container
            .packets
            .iter()
            .map(|p| (p.ts_nanos as u64, p.data.to_vec()))
            .collect();
        // Keep the handshake first; swap, repeat and move the rest around.
        for _ in 0..packets.len() {
            if packets.len() <= 4 {
                break;
            }
            let i = 3 + rng.below(packets.len() as u64 - 3) as usize;
            let j = 3 + rng.below(packets.len() as u64 - 3) as usize;
            match rng.below(3) {
                0 => packets.swap(i, j),
                1 => {
                    let p = packets[i].clone();
                    packets.insert(j, p);
                }
                _ => {}
            }
        }
        let c = read_packets(&packets);
        assert_eq!(c.flows.len(), 1, "round {round}");
        for side in [Side::Initiator, Side::Responder] {
            assert_eq!(
                bytes_from(&c.flows[0], side),
                bytes_from(flow, side),
                "round {round}"
            );
        }
        assert!(
            c.notes
                .iter()
                .all(|n| n.contains("retransmitted or overlapping")),
            "round {round}: {:?}",
            c.notes
        );
    }
}

#[test]
fn writer_errors() {
    let mut f = conversation_flow();
    f.responder = sa("[2001:db8::2]:5269");
    assert!(matches!(
        write_pcapng(&[f.clone()], &WriteOptions::default()),
        Err(CaptureError::Unwritable { flow: 0, .. })
    ));
    f.initiator = sa("[2001:db8::1]:4000");
    let raw = WriteOptions {
        link: LinkLayer::RawIpv4,
        ..WriteOptions::default()
    };
    assert!(matches!(
        write_pcapng(&[f.clone()], &raw),
        Err(CaptureError::Unwritable { .. })
    ));
    assert!(write_pcapng(&[f], &WriteOptions::default()).is_ok());
    let big = Flow {
        transport: Transport::Udp,
        chunks: vec![Chunk {
            at: Duration::ZERO,
            from: Side::Initiator,
            bytes: vec![0; 70_000],
        }],
        ..conversation_flow()
    };
    assert!(matches!(
        write_pcapng(&[big], &WriteOptions::default()),
        Err(CaptureError::Unwritable { .. })
    ));
}

/// Real loopback captures of `fedcheck run` (dumpcap on `lo`, one connection kept, the
/// section's host description options removed).
const COMPONENT_PCAPNG: &[u8] =
    include_bytes!("../../tests/data/capture/component-handshake-lo.pcapng");
const COMPONENT_PCAP: &[u8] =
    include_bytes!("../../tests/data/capture/component-handshake-lo.pcap");
const STARTTLS_PCAPNG: &[u8] = include_bytes!("../../tests/data/capture/s2s-starttls-lo.pcapng");

#[test]
fn real_component_handshake() {
    let c = read(COMPONENT_PCAPNG).unwrap();
    assert!(c.notes.is_empty(), "{:?}", c.notes);
    let [f] = c.flows.as_slice() else {
        panic!("{:?}", c.flows)
    };
    assert_eq!(
        (f.transport, f.payload, f.tls_from),
        (Transport::Tcp, Payload::Xmpp, None)
    );
    assert_eq!((f.initiator.port(), f.responder.port()), (51214, 39191));
    assert!(f.initiator.ip().is_loopback());
    let texts: Vec<(Side, String)> = f
        .chunks
        .iter()
        .map(|c| (c.from, String::from_utf8_lossy(&c.bytes).into_owned()))
        .collect();
    assert_eq!(texts.len(), 4);
    assert!(
        texts[0]
            .1
            .starts_with("<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept'")
    );
    assert_eq!(texts[0].0, Side::Initiator);
    assert_eq!(texts[1].0, Side::Responder);
    assert!(texts[2].1.starts_with("<handshake>") && texts[2].0 == Side::Initiator);
    assert_eq!(texts[3], (Side::Responder, "<handshake/>".to_string()));
    assert!(matches!(
        f.end,
        FlowEnd::Closed {
            by: Side::Initiator,
            ..
        }
    ));
    // The same packets as classic microsecond pcap: the same flow, times rounded to µs.
    let p = read(COMPONENT_PCAP).unwrap();
    let [g] = p.flows.as_slice() else {
        panic!("{:?}", p.flows)
    };
    let strip = |f: &Flow| {
        f.chunks
            .iter()
            .map(|c| (c.from, c.bytes.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(f), strip(g));
    for (a, b) in f.chunks.iter().zip(&g.chunks) {
        assert!(
            a.at.abs_diff(b.at) < Duration::from_micros(1),
            "{:?} {:?}",
            a.at,
            b.at
        );
    }
}

#[test]
fn real_starttls_stream() {
    let c = read(STARTTLS_PCAPNG).unwrap();
    assert!(c.notes.is_empty(), "{:?}", c.notes);
    let [f] = c.flows.as_slice() else {
        panic!("{:?}", c.flows)
    };
    assert_eq!(f.payload, Payload::Xmpp);
    let tls = f.tls_from.unwrap();
    assert!(
        String::from_utf8_lossy(&f.chunks[tls - 1].bytes)
            .contains("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
    );
    assert_eq!(f.chunks[tls].from, Side::Initiator);
    assert!(f.chunks[tls].bytes.starts_with(&[0x16, 0x03]));
    // The initiator sent FIN, the responder still wrote, the initiator reset.
    assert!(matches!(
        f.end,
        FlowEnd::Reset {
            by: Side::Initiator,
            ..
        }
    ));
    assert_eq!(bytes_from(f, Side::Initiator).len(), 2113);
    assert_eq!(bytes_from(f, Side::Responder).len(), 2541);
}
