//! A packet capture, read into flows ([`crate::capture`]), as a [`Trace`].
//!
//! The flows to or from the SUT's addresses are taken; each peer that is not the SUT
//! becomes an actor: an XMPP server named after its domain (a flow it opened is a stream
//! it connects, one the SUT opened a stream it accepts), a component by its
//! `jabber:component:accept` header, a SIP user agent by its SIP messages. Each flow's
//! bytes are split into the units the harness would have seen (the XMPP stream codec for
//! XML, RFC 3261 §18.3 framing for SIP) and all records are put in capture time order.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::draft::sanitize;
use super::report::{header_attr, infer_requires, sip_header_uri};
use super::{ActorDecl, ActorSpec, ImportError, Kind, Record, Trace};
use crate::capture::{Capture, Flow, FlowEnd, Payload, Side, Transport};
use crate::harness::transcript::Dir;
use crate::xmpp::codec::{Decoder, Event, Limits};

/// A `--sut` address: an IP, and the port when given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SutAddr {
    pub ip: IpAddr,
    pub port: Option<u16>,
}

impl SutAddr {
    fn matches(&self, a: &SocketAddr) -> bool {
        a.ip() == self.ip && self.port.is_none_or(|p| p == a.port())
    }
}

impl std::fmt::Display for SutAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.port {
            Some(p) => write!(f, "{}", SocketAddr::new(self.ip, p)),
            None => write!(f, "{}", self.ip),
        }
    }
}

fn flow_line(f: &Flow) -> String {
    let t = match f.transport {
        Transport::Tcp => "tcp",
        Transport::Udp => "udp",
    };
    format!("{t} {} -> {}", f.initiator, f.responder)
}

/// One XMPP or SIP unit of a flow, before it has an actor.
struct Unit {
    at: Duration,
    from: Side,
    kind: Kind,
    raw: Vec<u8>,
}

/// Split an XML stream's chunks from one side into units.
fn xml_units(flow: &Flow, side: Side, out: &mut Vec<Unit>) -> Option<String> {
    let mut d = Decoder::new(Limits::default());
    let limit = flow.tls_from.unwrap_or(flow.chunks.len());
    let mut problem = None;
    for c in flow.chunks.iter().take(limit).filter(|c| c.from == side) {
        d.feed(&c.bytes);
        loop {
            match d.next_event() {
                Ok(Some(ev)) => {
                    let kind = match &ev {
                        Event::Header(_) => Kind::Header,
                        Event::Element(_) => Kind::Element,
                        Event::Close => Kind::StreamClose,
                        Event::Whitespace(_) => Kind::Whitespace,
                    };
                    let raw = d.last_raw().to_vec();
                    // STARTTLS and SASL success restart the stream (RFC 6120 §4.3.3).
                    let restart = matches!(&ev, Event::Element(e)
                        if e.name == "proceed" || e.name == "success");
                    out.push(Unit {
                        at: c.at,
                        from: side,
                        kind,
                        raw,
                    });
                    if restart {
                        d.restart();
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    problem = Some(format!("{}: {e}", flow_line(flow)));
                    out.push(Unit {
                        at: c.at,
                        from: side,
                        kind: Kind::Undecodable,
                        raw: c.bytes.clone(),
                    });
                    break;
                }
            }
        }
        if problem.is_some() {
            break;
        }
    }
    problem
}

fn sip_units(flow: &Flow, out: &mut Vec<Unit>) {
    let limits = crate::sip::Limits::default();
    match flow.transport {
        Transport::Udp => {
            // RFC 3261 §17.1.2.2 / §17.2.2: a retransmission is the same datagram again
            // (same branch, same bytes); the transaction layer absorbs it.
            let mut seen: std::collections::HashSet<(Side, &[u8])> = Default::default();
            for c in &flow.chunks {
                let kind = match crate::sip::parse_datagram(&c.bytes, &limits) {
                    Ok(crate::sip::Item::Message(_)) if !seen.insert((c.from, &c.bytes)) => {
                        Kind::SipRetransmission
                    }
                    Ok(crate::sip::Item::Message(_)) => Kind::Sip,
                    Ok(crate::sip::Item::Keepalive(_)) => continue,
                    Err(_) => Kind::Undecodable,
                };
                out.push(Unit {
                    at: c.at,
                    from: c.from,
                    kind,
                    raw: c.bytes.clone(),
                });
            }
        }
        Transport::Tcp => {
            for side in [Side::Initiator, Side::Responder] {
                let mut d = crate::sip::StreamDecoder::new(limits);
                for c in flow.chunks.iter().filter(|c| c.from == side) {
                    d.feed(&c.bytes);
                    while let Ok(Some(item)) = d.next() {
                        if let crate::sip::Item::Message(m) = item {
                            out.push(Unit {
                                at: c.at,
                                from: side,
                                kind: Kind::Sip,
                                raw: m.to_bytes(),
                            });
                        }
                    }
                }
            }
        }
    }
}

/// The `from` of the stream header `side` sent first on an XML flow.
fn header_from(f: &Flow, side: Side) -> Option<String> {
    let first = f.chunks.iter().find(|c| c.from == side)?;
    header_attr(std::str::from_utf8(&first.bytes).ok()?, "from")
}

/// Take the SUT's flows out of a capture.
pub fn trace_from_capture(
    cap: &Capture,
    source: &str,
    sut: &[SutAddr],
) -> Result<Trace, ImportError> {
    if sut.is_empty() {
        return Err(ImportError::NoSut);
    }
    let sut_text = sut
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let given = |a: &SocketAddr| sut.iter().any(|s| s.matches(a));
    // Streams the SUT opened come from ephemeral ports nobody can name in `--sut`: an XML
    // stream from a SUT host whose header says `from` one of the domains the SUT answered
    // with (RFC 6120 §4.7.1) is the SUT's too.
    let sut_domains: Vec<String> = cap
        .flows
        .iter()
        .filter(|f| f.payload == Payload::Xmpp && given(&f.responder))
        .filter_map(|f| header_from(f, Side::Responder))
        .collect();
    let dialled: Vec<SocketAddr> = cap
        .flows
        .iter()
        .filter(|f| f.payload == Payload::Xmpp && !given(&f.initiator) && !given(&f.responder))
        .filter(|f| sut.iter().any(|s| s.ip == f.initiator.ip()))
        .filter(|f| header_from(f, Side::Initiator).is_some_and(|d| sut_domains.contains(&d)))
        .map(|f| f.initiator)
        .collect();
    let is_sut = |a: &SocketAddr| given(a) || dialled.contains(a);
    let mine: Vec<&Flow> = cap
        .flows
        .iter()
        .filter(|f| is_sut(&f.initiator) || is_sut(&f.responder))
        .collect();
    if mine.is_empty() {
        let flows = if cap.flows.is_empty() {
            "no flows at all".to_string()
        } else {
            let list: Vec<String> = cap.flows.iter().take(5).map(flow_line).collect();
            format!("{} flows: {}", cap.flows.len(), list.join(", "))
        };
        return Err(ImportError::NoSutFlow {
            sut: sut_text,
            flows,
        });
    }
    let mut notes: Vec<String> = cap.notes.clone();
    let mut taken = Vec::new();
    let mut actors: Vec<ActorDecl> = Vec::new();
    // Peer (address, domain or URI) → actor name.
    let mut actor_of: HashMap<String, String> = HashMap::new();
    let mut stream_counts: HashMap<(String, &'static str), usize> = HashMap::new();
    let mut records: Vec<(Duration, usize, Record)> = Vec::new();
    // Every `from` of the SUT's S2S headers.
    let mut sut_domain_counts: Vec<String> = Vec::new();
    let mut order = 0usize;
    for f in mine {
        let sut_is_initiator = is_sut(&f.initiator);
        let sut_side = if sut_is_initiator {
            Side::Initiator
        } else {
            Side::Responder
        };
        let peer = if sut_is_initiator {
            f.responder
        } else {
            f.initiator
        };
        let mut units = Vec::new();
        match f.payload {
            Payload::Xmpp => {
                for side in [Side::Initiator, Side::Responder] {
                    if let Some(p) = xml_units(f, side, &mut units) {
                        notes.push(format!(
                            "undecodable XML, the rest of that direction left out: {p}"
                        ));
                    }
                }
            }
            Payload::Sip => sip_units(f, &mut units),
            Payload::Tls | Payload::Unknown => {
                notes.push(format!(
                    "{} skipped: {}",
                    flow_line(f),
                    if f.payload == Payload::Tls {
                        "TLS from the first byte (encrypted)"
                    } else {
                        "neither XMPP nor SIP"
                    }
                ));
                continue;
            }
        }
        units.sort_by_key(|u| u.at);
        // Who the peer is, from what was said.
        let header_of = |side: Side, attr: &str| {
            units
                .iter()
                .filter(|u| u.kind == Kind::Header && u.from == side)
                .find_map(|u| header_attr(&String::from_utf8_lossy(&u.raw), attr))
        };
        let (spec, key) = if f.payload == Payload::Sip {
            let uri = units
                .iter()
                .filter(|u| u.kind == Kind::Sip)
                .find_map(|u| {
                    let t = String::from_utf8_lossy(&u.raw).into_owned();
                    let req = !t.starts_with("SIP/2.0");
                    let header = match (u.from == sut_side, req) {
                        (false, true) | (true, false) => "from",
                        _ => "to",
                    };
                    sip_header_uri(&t, header)
                })
                .unwrap_or_else(|| format!("sip:peer@{}", peer.ip()));
            let transport = match f.transport {
                Transport::Udp => "udp",
                Transport::Tcp => "tcp",
            };
            (
                ActorSpec::Sip {
                    uri: uri.clone(),
                    transport: transport.into(),
                },
                format!("sip {uri}"),
            )
        } else {
            let component = units.iter().any(|u| {
                u.kind == Kind::Header
                    && String::from_utf8_lossy(&u.raw).contains("jabber:component:accept")
            });
            let peer_side = sut_side.other();
            if !component && let Some(d) = header_of(sut_side, "from") {
                sut_domain_counts.push(d);
            }
            // XEP-0114 §3: a component names its own domain in `to`; a server names
            // itself in `from` (RFC 6120 §4.7.1).
            let domain = if component {
                header_of(peer_side, "to").or_else(|| header_of(sut_side, "from"))
            } else {
                header_of(peer_side, "from").or_else(|| header_of(sut_side, "to"))
            }
            .unwrap_or_else(|| format!("peer-{}.invalid", peer.port()));
            if component {
                (
                    ActorSpec::Component {
                        domain: domain.clone(),
                        secret: "secret".into(),
                    },
                    format!("component {domain}"),
                )
            } else {
                (
                    ActorSpec::Xmpp {
                        domain: domain.clone(),
                        secret: None,
                        cert: None,
                        partner: None,
                    },
                    format!("xmpp {domain}"),
                )
            }
        };
        let name = match actor_of.get(&key) {
            Some(n) => n.clone(),
            None => {
                let base = match &spec {
                    ActorSpec::Sip { uri, .. } => uri
                        .trim_start_matches("sips:")
                        .trim_start_matches("sip:")
                        .split('@')
                        .next()
                        .unwrap_or("ua")
                        .to_string(),
                    ActorSpec::Xmpp { domain, .. } | ActorSpec::Component { domain, .. } => {
                        domain.split('.').next().unwrap_or("peer").to_string()
                    }
                };
                let mut name = sanitize(&base);
                if ["sut", "any", "absent"].contains(&name.as_str()) {
                    name.push_str("_peer");
                }
                let mut n = 1;
                while actors.iter().any(|a| a.name == name) {
                    n += 1;
                    name = format!("{}{n}", sanitize(&base));
                }
                actor_of.insert(key, name.clone());
                actors.push(ActorDecl {
                    name: name.clone(),
                    spec: spec.clone(),
                    inferred: true,
                    comment: Some(match &spec {
                        ActorSpec::Component { .. } => {
                            "the handshake secret is not on the wire: set the SUT's".into()
                        }
                        _ => format!("the peer at {peer} in the capture"),
                    }),
                });
                name
            }
        };
        let stream = match &spec {
            ActorSpec::Sip { transport, .. } => transport.clone(),
            _ => {
                let base = if sut_is_initiator { "out" } else { "in" };
                let n = stream_counts.entry((name.clone(), base)).or_insert(0);
                *n += 1;
                let total: usize = stream_counts
                    .iter()
                    .filter(|((_, b), _)| *b == base)
                    .map(|(_, c)| *c)
                    .sum();
                if total == 1 {
                    base.to_string()
                } else {
                    format!("{base}{total}")
                }
            }
        };
        taken.push(format!(
            "{} as {name}/{stream} ({} units{})",
            flow_line(f),
            units.len(),
            if f.tls_from.is_some() {
                "; TLS after STARTTLS: the encrypted rest is not importable"
            } else {
                ""
            }
        ));
        let dir_of = |side: Side| {
            if side == sut_side {
                Dir::FromSut
            } else {
                Dir::ToSut
            }
        };
        let mut push = |at: Duration, dir: Dir, kind: Kind, raw: Vec<u8>, detail: String| {
            order += 1;
            records.push((
                at,
                order,
                Record {
                    at,
                    actor: name.clone(),
                    stream: stream.clone(),
                    dir,
                    kind,
                    raw,
                    detail,
                },
            ));
        };
        if f.payload == Payload::Xmpp {
            push(
                f.opened_at,
                dir_of(Side::Initiator),
                Kind::Connected,
                Vec::new(),
                format!("{} -> {}", f.initiator, f.responder),
            );
        }
        let mut last = f.opened_at;
        for u in units {
            last = last.max(u.at);
            push(u.at, dir_of(u.from), u.kind, u.raw, String::new());
        }
        if let Some(i) = f.tls_from {
            let at = f.chunks.get(i).map(|c| c.at).unwrap_or(last);
            push(
                at,
                dir_of(sut_side.other()),
                Kind::Tls,
                Vec::new(),
                "encrypted from here on".into(),
            );
        } else {
            match f.end {
                FlowEnd::Open => {}
                FlowEnd::Closed { by, at } => {
                    push(at, dir_of(by), Kind::Eof, Vec::new(), String::new())
                }
                FlowEnd::Reset { by, at } => {
                    push(at, dir_of(by), Kind::Reset, Vec::new(), String::new())
                }
            }
        }
    }
    if records.is_empty() {
        return Err(ImportError::NothingImportable(sut_text));
    }
    records.sort_by_key(|(at, n, _)| (*at, *n));
    let records: Vec<Record> = records.into_iter().map(|(_, _, r)| r).collect();
    let requires = infer_requires(&records, &actors);
    let mut sut_domains: Vec<String> = Vec::new();
    for d in &sut_domain_counts {
        if !sut_domains.contains(d) {
            sut_domains.push(d.clone());
        }
    }
    // `{sut}` stands for one domain, the target's; with several (a proxy's and its
    // gateway's) the capture does not say which that is, so all stay literal.
    if sut_domains.len() > 1 {
        notes.push(format!(
            "the SUT used several domains ({}): written as they are, not as {{sut}}",
            sut_domains.join(", ")
        ));
        sut_domains.clear();
    } else if sut_domains.is_empty() {
        notes.push("the SUT's domain is not in the capture: `{sut}` is not used".into());
    }
    Ok(Trace {
        source: source.to_string(),
        taken,
        notes,
        title: None,
        sut_domains,
        requires,
        actors,
        records,
        failure: None,
        from_report: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::Chunk;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn chunk(at: u64, from: Side, s: &str) -> Chunk {
        Chunk {
            at: ms(at),
            from,
            bytes: s.as_bytes().to_vec(),
        }
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// A remote server dials the SUT, dialback, a ping answered, then the SUT closes.
    fn capture() -> Capture {
        let (i, r) = (Side::Initiator, Side::Responder);
        Capture {
            flows: vec![Flow {
                transport: Transport::Tcp,
                initiator: addr("127.0.0.1:40000"),
                responder: addr("127.0.0.2:5269"),
                payload: Payload::Xmpp,
                opened_at: ms(0),
                chunks: vec![
                    chunk(
                        1,
                        i,
                        "<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' from='remote.example' to='gw.example' version='1.0'>",
                    ),
                    chunk(
                        3,
                        r,
                        "<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' from='gw.example' to='remote.example' id='a1b2c3d4e5f6' version='1.0'><stream:features/>",
                    ),
                    chunk(
                        5,
                        i,
                        "<db:result from='remote.example' to='gw.example'>0123456789abcdef</db:result>",
                    ),
                    chunk(
                        9,
                        r,
                        "<db:result from='gw.example' to='remote.example' type='valid'/>",
                    ),
                    chunk(
                        400,
                        i,
                        "<iq type='get' id='p1' from='remote.example' to='gw.example'><ping xmlns='urn:xmpp:ping'/></iq>",
                    ),
                    chunk(
                        402,
                        r,
                        "<iq type='result' id='p1' from='gw.example' to='remote.example'/><iq type='get' id='s77x9z' from='gw.example' to='remote.example'/>",
                    ),
                    chunk(
                        403,
                        i,
                        "<iq type='result' id='s77x9z' from='remote.example' to='gw.example'/>",
                    ),
                ],
                end: FlowEnd::Closed { by: r, at: ms(500) },
                tls_from: None,
            }],
            notes: vec!["1 retransmission dropped".into()],
        }
    }

    fn sut() -> Vec<SutAddr> {
        vec![SutAddr {
            ip: "127.0.0.2".parse().unwrap_or(IpAddr::from([127, 0, 0, 2])),
            port: Some(5269),
        }]
    }

    #[test]
    fn a_capture_becomes_a_draft_that_loads() {
        let t = trace_from_capture(&capture(), "cap.pcapng", &sut());
        let t = match t {
            Ok(t) => t,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(t.sut_domains, vec!["gw.example".to_string()]);
        assert_eq!(t.actors.first().map(|a| a.name.as_str()), Some("remote"));
        let text = crate::import::render(&crate::import::draft(&t));
        // Stream id captured, the key recomputed, the SUT's own stanza id captured and
        // echoed back, the SUT's domain as {sut}, a pause kept, the close expected.
        for want in [
            "# Draft scenario imported by `fedcheck import` from cap.pcapng.",
            "127.0.0.1:40000 -> 127.0.0.2:5269 as remote/in",
            "1 retransmission dropped",
            "covers = []",
            "[xmpp.remote]\ndomain = \"remote.example\"",
            "connect = \"in\"",
            "id='{id:in_id}'",
            "<db:result from='remote.example' to='{sut}'>{in.key}</db:result>",
            "id='p1'",
            "id='{id:id1}'",
            "<iq type='result' id='{id1}'",
            "expect_none = \"in\"\nwindow = \"390ms\"",
            "expect_eof = \"in\"",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
        let cat = crate::harness::catalogue::Catalogue::builtin();
        let cat = match cat {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        let loaded = crate::harness::load::load_str(&text, std::path::Path::new("d.toml"), &cat);
        assert!(loaded.is_ok(), "{:?}\n{text}", loaded.err());
    }

    #[test]
    fn no_flow_to_the_sut_is_an_error_naming_it() {
        let other = vec![SutAddr {
            ip: IpAddr::from([10, 0, 0, 9]),
            port: None,
        }];
        let e = trace_from_capture(&capture(), "cap.pcapng", &other);
        assert!(
            matches!(&e, Err(ImportError::NoSutFlow { sut, flows }) if sut == "10.0.0.9" && flows.contains("127.0.0.2:5269")),
            "{e:?}"
        );
        assert!(matches!(
            trace_from_capture(&capture(), "c", &[]),
            Err(ImportError::NoSut)
        ));
    }

    #[test]
    fn encrypted_flows_are_skipped_with_a_note() {
        let mut c = capture();
        if let Some(f) = c.flows.first_mut() {
            f.payload = Payload::Tls;
        }
        let e = trace_from_capture(&c, "c", &sut());
        assert!(matches!(e, Err(ImportError::NothingImportable(_))), "{e:?}");
    }
}
