//! A run's raw transcript as captured flows ([`crate::capture::Capture`]): what a packet
//! capture on loopback would have held, for `fedcheck run --pcap` (written out by the
//! capture module's pcapng writer) and for the capture round-trip test.
//!
//! Each XMPP stream is one TCP flow between the addresses its `connected` entry names
//! (`local -> peer`: the actor's end, then the SUT's); the actor opened it (`to_sut`) or the
//! SUT did (`from_sut`). Each SIP actor's messages are one flow between the actor's socket
//! and the SUT's, taken from the Via sent-by of the requests each side sent (RFC 3261
//! §18.2.1) when there is one. Bytes after a TLS handshake are the plaintext the harness
//! saw; `tls_from` marks where a real capture would show only TLS records.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::capture::{Capture, Chunk, Flow, FlowEnd, Payload, Side, Transport};
use crate::harness::sinks::JsonOutcome;

/// Used when a SIP message names no address for a side (a response only, say).
const FALLBACK_SUT_SIP: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 5060);
const FALLBACK_ACTOR_SIP: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 5062);

fn parse_connected(detail: &str) -> Option<(SocketAddr, SocketAddr)> {
    let (a, b) = detail.split_once(" -> ")?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
}

/// The sent-by of the top Via of a SIP message (`Via: SIP/2.0/UDP 127.0.0.1:5070;…`).
fn via_sent_by(text: &str) -> Option<SocketAddr> {
    for line in text.lines() {
        let Some((n, v)) = line.split_once(':') else {
            continue;
        };
        let n = n.trim().to_ascii_lowercase();
        if n != "via" && n != "v" {
            continue;
        }
        let sent_by = v.split_whitespace().nth(1)?;
        let sent_by = sent_by.split([';', ',']).next()?;
        return sent_by.parse().ok();
    }
    None
}

struct Building {
    flow: Flow,
    /// The side the actor is on.
    actor_side: Side,
}

/// The flows of one outcome's transcript, in the order each first appears. `sut_ip`: the
/// address the SUT's end of every flow is written with (None: as recorded). On loopback
/// every end is 127.0.0.1, so another loopback address (127.0.0.2) is what tells the SUT
/// apart for `fedcheck import --sut`; the ports stay.
pub fn capture_from_outcome(o: &JsonOutcome, sut_ip: Option<std::net::IpAddr>) -> Capture {
    let mut order: Vec<(String, String)> = Vec::new();
    let mut flows: HashMap<(String, String), Building> = HashMap::new();
    let mut notes = Vec::new();
    // SIP addresses first: a side's address is known from its first request.
    let mut sip_addrs: HashMap<String, (Option<SocketAddr>, Option<SocketAddr>)> = HashMap::new();
    for e in o.transcript.iter().filter(|e| e.kind == "sip") {
        let text = e.raw.clone().unwrap_or_default();
        if text.starts_with("SIP/2.0") {
            continue;
        }
        let slot = sip_addrs.entry(e.actor.clone()).or_default();
        let addr = via_sent_by(&text);
        if e.dir == "to_sut" {
            slot.0 = slot.0.or(addr);
        } else {
            slot.1 = slot.1.or(addr);
        }
    }
    for e in &o.transcript {
        let key = (e.actor.clone(), e.stream.clone());
        let at = Duration::from_micros(e.at_us);
        let from_actor = e.dir == "to_sut";
        match e.kind.as_str() {
            "note" => continue,
            "connected" => {
                let Some((local, peer)) = e.detail.as_deref().and_then(parse_connected) else {
                    notes.push(format!(
                        "{}/{}: connection without addresses",
                        e.actor, e.stream
                    ));
                    continue;
                };
                let (initiator, responder, actor_side) = if from_actor {
                    (local, peer, Side::Initiator)
                } else {
                    (peer, local, Side::Responder)
                };
                if !flows.contains_key(&key) {
                    order.push(key.clone());
                }
                flows.insert(
                    key,
                    Building {
                        flow: Flow {
                            transport: Transport::Tcp,
                            initiator,
                            responder,
                            payload: Payload::Xmpp,
                            opened_at: at,
                            chunks: Vec::new(),
                            end: FlowEnd::Open,
                            tls_from: None,
                        },
                        actor_side,
                    },
                );
                continue;
            }
            _ => {}
        }
        if e.kind == "sip" && !flows.contains_key(&key) {
            let (actor_addr, sut_addr) = sip_addrs.get(&e.actor).copied().unwrap_or_default();
            let actor_addr = actor_addr.unwrap_or(FALLBACK_ACTOR_SIP);
            let sut_addr = sut_addr.unwrap_or(FALLBACK_SUT_SIP);
            let transport = if e.stream == "tcp" {
                Transport::Tcp
            } else {
                Transport::Udp
            };
            let (initiator, responder, actor_side) = if from_actor {
                (actor_addr, sut_addr, Side::Initiator)
            } else {
                (sut_addr, actor_addr, Side::Responder)
            };
            order.push(key.clone());
            flows.insert(
                key.clone(),
                Building {
                    flow: Flow {
                        transport,
                        initiator,
                        responder,
                        payload: Payload::Sip,
                        opened_at: at,
                        chunks: Vec::new(),
                        end: FlowEnd::Open,
                        tls_from: None,
                    },
                    actor_side,
                },
            );
        }
        let Some(b) = flows.get_mut(&key) else {
            continue;
        };
        let side = if from_actor {
            b.actor_side
        } else {
            b.actor_side.other()
        };
        let raw = match (&e.raw, &e.raw_hex) {
            (Some(r), _) => r.clone().into_bytes(),
            (None, Some(h)) => hex::decode(h).unwrap_or_default(),
            (None, None) => Vec::new(),
        };
        match e.kind.as_str() {
            "tls" if b.flow.tls_from.is_none() => {
                b.flow.tls_from = Some(b.flow.chunks.len());
            }
            "tls" => {}
            "eof" if b.flow.end == FlowEnd::Open => {
                b.flow.end = FlowEnd::Closed { by: side, at };
            }
            "reset" if b.flow.end == FlowEnd::Open => {
                b.flow.end = FlowEnd::Reset { by: side, at };
            }
            // A UDP retransmission is a datagram on the wire like any other.
            _ if !raw.is_empty() => b.flow.chunks.push(Chunk {
                at,
                from: side,
                bytes: raw,
            }),
            _ => {}
        }
    }
    let mut out: Vec<Flow> = order
        .into_iter()
        .filter_map(|k| flows.remove(&k))
        .map(|mut b| {
            if let Some(ip) = sut_ip {
                let sut_end = if b.actor_side == Side::Initiator {
                    &mut b.flow.responder
                } else {
                    &mut b.flow.initiator
                };
                sut_end.set_ip(ip);
            }
            b.flow
        })
        .collect();
    // A capture's chunks are in time order; the transcript's are in step order.
    for f in &mut out {
        let tls_at = f.tls_from.and_then(|i| f.chunks.get(i)).map(|c| c.at);
        f.chunks.sort_by_key(|c| c.at);
        if let Some(at) = tls_at {
            f.tls_from = f.chunks.iter().position(|c| c.at >= at);
        }
    }
    Capture { flows: out, notes }
}

/// Every outcome of a report as one capture, for `fedcheck run --pcap`: the outcomes one
/// after another (each shifted by the elapsed time of those before it, as if run one at a
/// time), each flow's notes naming its outcome.
pub fn capture_from_report(report: &crate::harness::sinks::JsonReport) -> Capture {
    let mut all = Capture::default();
    let mut offset = Duration::ZERO;
    for o in &report.outcomes {
        let mut c = capture_from_outcome(o, None);
        for f in &mut c.flows {
            f.opened_at += offset;
            for ch in &mut f.chunks {
                ch.at += offset;
            }
            f.end = match f.end {
                FlowEnd::Open => FlowEnd::Open,
                FlowEnd::Closed { by, at } => FlowEnd::Closed {
                    by,
                    at: at + offset,
                },
                FlowEnd::Reset { by, at } => FlowEnd::Reset {
                    by,
                    at: at + offset,
                },
            };
        }
        let name = match &o.cell {
            Some(cell) => format!("{} [{cell}]", o.scenario),
            None => o.scenario.clone(),
        };
        all.notes
            .extend(c.notes.into_iter().map(|n| format!("{name}: {n}")));
        all.flows.extend(c.flows);
        // At least a millisecond apart, so outcomes never interleave.
        offset += Duration::from_millis(o.elapsed_ms.max(1)) + Duration::from_millis(1);
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn via_addresses() {
        let m =
            "MESSAGE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:40001;branch=z9hG4bKx\r\n\r\n";
        assert_eq!(via_sent_by(m), "127.0.0.1:40001".parse().ok());
        assert_eq!(via_sent_by("SIP/2.0 200 OK\r\n\r\n"), None);
        assert_eq!(
            parse_connected("127.0.0.1:1 -> 127.0.0.1:2"),
            Some((
                "127.0.0.1:1".parse().unwrap_or(FALLBACK_SUT_SIP),
                "127.0.0.1:2".parse().unwrap_or(FALLBACK_SUT_SIP)
            ))
        );
    }
}
