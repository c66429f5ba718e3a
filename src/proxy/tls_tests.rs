//! The proxy over real loopback TLS with certificates generated for the run: STARTTLS and
//! SASL EXTERNAL both ways, the dialback-over-TLS fallback, refusals by policy, and bad
//! TLS peers that cost only their own stream.
//!
//! The simulated remote server `a.test` is our own sans-IO sessions driven here over a
//! socket, with tokio-rustls doing the handshakes they ask for.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::tls::pki::{Leaf, TestCa};
use crate::tls::{PeerRole, TlsMaterial, TlsSessionInfo, TlsSettings};
use crate::xmpp::element::Element;
use crate::xmpp::ns;
use crate::xmpp::s2s::{
    Error as S2sError, InboundSession, Input, LocalConfig, Negotiation, OutboundSession, Output,
    PartnerPolicy, Policies, TlsAbility,
};

const WAIT: Duration = Duration::from_secs(5);
const A_SECRET: &str = "secret of a.test";

fn ca() -> &'static TestCa {
    static CA: OnceLock<TestCa> = OnceLock::new();
    CA.get_or_init(|| TestCa::new("proxy TLS tests CA").expect("CA"))
}

fn policy(tls: Negotiation, sasl: Negotiation, dialback: bool) -> PartnerPolicy {
    PartnerPolicy {
        tls,
        sasl,
        dialback,
        keepalive: false,
    }
}

/// Proxy `b.test` with a valid certificate, `partner` as default policy, routing
/// `a.test` to `a_addr`.
async fn proxy_b(partner: PartnerPolicy, a_addr: Option<SocketAddr>) -> RunningProxy {
    let mut c = ProxyConfig::new("b.test", "secret-b");
    c.timeouts.connect = Duration::from_secs(2);
    c.timeouts.dialback = Duration::from_secs(3);
    c.timeouts.establish = Duration::from_secs(3);
    c.timeouts.tls_handshake = Duration::from_millis(700);
    c.tls_material = Some(TlsMaterial::from_leaf(
        &ca().valid("b.test").expect("leaf"),
        ca().cert_pem(),
    ));
    c.default_partner = PartnerConfig::from_policy(partner);
    let p = start(c).await.expect("start b");
    if let Some(a) = a_addr {
        p.add_route("a.test", a);
    }
    p
}

/// The simulated `a.test`'s settings: its certificate is `leaf`.
fn a_settings(leaf: &Leaf) -> TlsSettings {
    TlsSettings::new(&TlsMaterial::from_leaf(leaf, ca().cert_pem())).expect("settings")
}

fn a_local(p: PartnerPolicy) -> Arc<LocalConfig> {
    Arc::new(LocalConfig {
        policies: Policies::uniform(p),
        tls: TlsAbility {
            server: true,
            client_cert: true,
        },
        ..LocalConfig::new(&["a.test"], A_SECRET)
    })
}

/// What the sessions of the simulated server need from the driver below.
trait Sess {
    fn input(&mut self, now: Instant, i: Input<'_>) -> Result<(), S2sError>;
    fn output(&mut self) -> Option<Output>;
}
impl Sess for OutboundSession {
    fn input(&mut self, now: Instant, i: Input<'_>) -> Result<(), S2sError> {
        self.handle_input(now, i)
    }
    fn output(&mut self) -> Option<Output> {
        self.poll_output()
    }
}
impl Sess for InboundSession {
    fn input(&mut self, now: Instant, i: Input<'_>) -> Result<(), S2sError> {
        self.handle_input(now, i)
    }
    fn output(&mut self) -> Option<Output> {
        self.poll_output()
    }
}

enum Side {
    /// We accepted the connection: TLS server.
    Server,
    /// We opened it to the named domain: TLS client.
    Client(String),
}

enum Wire {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::TlsStream<TcpStream>>),
    Gone,
}

/// Everything one simulated stream saw.
#[derive(Default)]
struct Seen {
    sent: String,
    received: String,
    outputs: Vec<Output>,
    tls: Option<TlsSessionInfo>,
    verdict_authenticates_b: bool,
    ended: bool,
}

/// Drive `s` over `tcp` until `done` holds for an output, the stream ends, or time runs out.
async fn drive<S: Sess>(
    s: &mut S,
    tcp: TcpStream,
    side: Side,
    settings: &TlsSettings,
    done: impl Fn(&Output) -> bool,
) -> Seen {
    let mut seen = Seen::default();
    let mut wire = Wire::Plain(tcp);
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let mut out = Vec::new();
        let mut upgrade = false;
        let mut finished = false;
        while let Some(o) = s.output() {
            match o {
                Output::Transmit(b) => out.extend_from_slice(&b),
                Output::UpgradeTls => {
                    upgrade = true;
                    break;
                }
                o => {
                    finished |= done(&o);
                    seen.ended |= matches!(o, Output::Close(_));
                    seen.outputs.push(o);
                }
            }
        }
        seen.sent.push_str(&String::from_utf8_lossy(&out));
        if !out.is_empty() {
            let ok = match &mut wire {
                Wire::Plain(t) => t.write_all(&out).await.is_ok(),
                Wire::Tls(t) => t.write_all(&out).await.is_ok() && t.flush().await.is_ok(),
                Wire::Gone => false,
            };
            if !ok {
                seen.ended = true;
            }
        }
        if finished || seen.ended {
            return seen;
        }
        if upgrade {
            let Wire::Plain(tcp) = std::mem::replace(&mut wire, Wire::Gone) else {
                return seen;
            };
            let (tls, info, verdict) = match &side {
                Side::Server => match settings.acceptor().accept(tcp).await {
                    Ok(t) => {
                        let info = TlsSessionInfo::from_server(t.get_ref().1);
                        let v = settings.verify(
                            Some(&info.peer_chain),
                            SystemTime::now(),
                            PeerRole::Initiating,
                        );
                        (tokio_rustls::TlsStream::Server(t), info, v)
                    }
                    Err(_) => {
                        let _ = s.input(Instant::now(), Input::TlsFailed);
                        seen.ended = true;
                        return seen;
                    }
                },
                Side::Client(name) => {
                    let sn = rustls_pki_types::ServerName::try_from(name.clone()).expect("name");
                    match settings.connector().connect(sn, tcp).await {
                        Ok(t) => {
                            let info = TlsSessionInfo::from_client(t.get_ref().1);
                            let v = settings.verify(
                                Some(&info.peer_chain),
                                SystemTime::now(),
                                PeerRole::Receiving,
                            );
                            (tokio_rustls::TlsStream::Client(t), info, v)
                        }
                        Err(_) => {
                            let _ = s.input(Instant::now(), Input::TlsFailed);
                            seen.ended = true;
                            return seen;
                        }
                    }
                }
            };
            seen.verdict_authenticates_b =
                verdict.as_ref().is_some_and(|v| v.authenticates("b.test"));
            seen.tls = Some(info);
            wire = Wire::Tls(Box::new(tls));
            let _ = s.input(Instant::now(), Input::TlsEstablished { peer: verdict });
            continue;
        }
        let read = match &mut wire {
            Wire::Plain(t) => tokio::time::timeout_at(deadline, t.read(&mut buf)).await,
            Wire::Tls(t) => tokio::time::timeout_at(deadline, t.read(&mut buf)).await,
            Wire::Gone => return seen,
        };
        match read {
            Ok(Ok(n)) if n > 0 => {
                let data = buf.get(..n).unwrap_or(&[]);
                seen.received.push_str(&String::from_utf8_lossy(data));
                let _ = s.input(Instant::now(), Input::Data(data));
            }
            Ok(_) => {
                let _ = s.input(Instant::now(), Input::Eof);
            }
            Err(_) => return seen,
        }
    }
}

fn ping(from: &str, to: &str, id: &str) -> Element {
    Element::new(ns::SERVER, "iq")
        .with_attr("type", "get")
        .with_attr("from", from)
        .with_attr("to", to)
        .with_attr("id", id)
        .with_child(Element::new(ns::PING, "ping"))
}

/// `a.test` opens a stream to the proxy, sends a ping from `a.test` once its pair is
/// authorized; meanwhile it accepts the proxy's stream back and waits for the answer.
async fn ping_from_a(
    leaf: &Leaf,
    a_policy: PartnerPolicy,
    b_policy: PartnerPolicy,
) -> (Seen, Option<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let a_addr = listener.local_addr().expect("addr");
    let b = proxy_b(b_policy, Some(a_addr)).await;
    let settings = a_settings(leaf);
    let local = a_local(a_policy);

    // The proxy's stream back to a.test (answers, and db:verify for dialback).
    let (srv_settings, srv_local) = (settings.clone(), local.clone());
    let back = tokio::spawn(async move {
        let Ok(Ok((tcp, _))) = tokio::time::timeout(WAIT, listener.accept()).await else {
            return None;
        };
        let mut s = InboundSession::new(Instant::now(), srv_local, "a-stream-1".into());
        let seen = drive(
            &mut s,
            tcp,
            Side::Server,
            &srv_settings,
            |o| matches!(o, Output::Stanza(e) if e.attr("id") == Some("p1")),
        )
        .await;
        Some(seen)
    });

    let tcp = TcpStream::connect(b.s2s_addr).await.expect("connect");
    let mut out = OutboundSession::new(Instant::now(), local, "a.test", "b.test");
    out.send_stanza(Instant::now(), "a.test", ping("a.test", "b.test", "p1"));
    let seen = drive(
        &mut out,
        tcp,
        Side::Client("b.test".into()),
        &settings,
        |o| matches!(o, Output::PairAuthorized { .. }),
    )
    .await;
    let back = if seen
        .outputs
        .iter()
        .any(|o| matches!(o, Output::PairAuthorized { .. }))
    {
        tokio::time::timeout(WAIT, back)
            .await
            .ok()
            .and_then(|r| r.ok())
            .flatten()
    } else {
        back.abort();
        None
    };
    b.shutdown().await;
    (seen, back)
}

#[tokio::test]
async fn starttls_and_sasl_external_both_ways() {
    // TLS-01/02/04, SASL-02/07/10, STR-05, CERT-06: both TLS and SASL required, no
    // dialback (MS-09 first row).
    use Negotiation::Required as R;
    let strict = policy(R, R, false);
    let (a, back) = ping_from_a(&ca().valid("a.test").expect("leaf"), strict, strict).await;
    assert!(
        a.sent
            .contains("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"),
        "{}",
        a.sent
    );
    assert!(
        a.sent.contains("mechanism='EXTERNAL'>YS50ZXN0</auth>"),
        "{}",
        a.sent
    );
    assert!(!a.sent.contains("db:result"));
    assert!(
        a.received
            .contains("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>")
    );
    assert!(
        a.received
            .contains("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>")
    );
    let tls = a.tls.as_ref().expect("TLS happened");
    assert_eq!(tls.alpn.as_deref(), Some("xmpp-server"));
    assert!(matches!(
        tls.version.as_deref(),
        Some("TLSv1_3" | "TLSv1_2")
    ));
    // The proxy's certificate names its XMPP domain (CERT-06).
    assert!(a.verdict_authenticates_b);

    // The answer came back over the proxy's own STARTTLS + EXTERNAL stream.
    let back = back.expect("the proxy connected back");
    let answer = back
        .outputs
        .iter()
        .find_map(|o| match o {
            Output::Stanza(e) => Some(e.clone()),
            _ => None,
        })
        .expect("ping answer");
    assert_eq!(answer.attr("type"), Some("result"));
    assert!(
        back.received
            .contains("mechanism='EXTERNAL'>Yi50ZXN0</auth>"),
        "{}",
        back.received
    );
    let sni = back.tls.as_ref().and_then(|t| t.sni.clone());
    assert_eq!(
        sni.as_deref(),
        Some("a.test"),
        "the proxy sends SNI when initiating"
    );
}

#[tokio::test]
async fn wrong_name_certificate_falls_back_to_dialback_over_tls() {
    // D-17, SASL-02: no EXTERNAL for a certificate without a.test; dialback over TLS.
    use Negotiation::{Optional as O, Required as R};
    let p = policy(R, O, true);
    let (a, back) = ping_from_a(&ca().wrong_name("a.test").expect("leaf"), p, p).await;
    assert!(a.tls.is_some());
    assert!(!a.received.contains("EXTERNAL"), "{}", a.received);
    assert!(
        a.sent.contains("<db:result") && !a.sent.contains("<auth"),
        "{}",
        a.sent
    );
    assert!(
        a.outputs
            .iter()
            .any(|o| matches!(o, Output::PairAuthorized { .. })),
        "{}",
        a.received
    );
    let back = back.expect("connected back");
    assert!(
        back.received.contains("<db:verify"),
        "verified by dialback: {}",
        back.received
    );
}

#[tokio::test]
async fn wrong_name_certificate_refused_when_sasl_is_required() {
    // SASL-09, MS-07: SASL required, dialback off, certificate unusable: policy-violation.
    use Negotiation::Required as R;
    let (a, back) = ping_from_a(
        &ca().wrong_name("a.test").expect("leaf"),
        policy(R, R, false),
        policy(R, R, false),
    )
    .await;
    assert!(back.is_none());
    assert!(a.tls.is_some());
    assert!(a.received.contains("<policy-violation "), "{}", a.received);
    assert!(a.ended);
}

#[tokio::test]
async fn untrusted_certificate_gets_dialback_over_tls_when_allowed() {
    // TLS-09: encrypted even with an untrusted certificate; dialback authenticates.
    use Negotiation::Optional as O;
    let p = policy(O, O, true);
    let leaf = crate::tls::pki::untrusted("a.test").expect("leaf");
    let (a, _) = ping_from_a(&leaf, p, p).await;
    assert!(a.tls.is_some() && a.sent.contains("<db:result"));
    assert!(
        a.outputs
            .iter()
            .any(|o| matches!(o, Output::PairAuthorized { .. }))
    );
}

const HDR: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:server' \
    xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' \
    from='a.test' to='b.test' version='1.0'>";

/// Read until `needle` or EOF/timeout; what was read, and whether the peer closed.
async fn read_until(sock: &mut TcpStream, needle: &str, wait: Duration) -> (String, bool) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        if !needle.is_empty() && String::from_utf8_lossy(&got).contains(needle) {
            return (String::from_utf8_lossy(&got).into_owned(), false);
        }
        match tokio::time::timeout_at(deadline, sock.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
            Ok(_) => return (String::from_utf8_lossy(&got).into_owned(), true),
            Err(_) => return (String::from_utf8_lossy(&got).into_owned(), false),
        }
    }
}

#[tokio::test]
async fn tls_required_and_peer_without_tls_gets_policy_violation() {
    // MS-06, DB-14: features are a required STARTTLS alone; plain dialback is answered
    // with a policy-violation dialback error.
    use Negotiation::{Optional as O, Required as R};
    let b = proxy_b(policy(R, O, true), None).await;
    let mut s = TcpStream::connect(b.s2s_addr).await.expect("connect");
    s.write_all(HDR.as_bytes()).await.expect("write");
    let (got, _) = read_until(&mut s, "</stream:features>", WAIT).await;
    assert!(
        got.contains("<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls></stream:features>"),
        "{got}"
    );
    s.write_all(b"<db:result from='a.test' to='b.test'>0123</db:result>")
        .await
        .expect("write");
    let (got, _) = read_until(&mut s, "</db:result>", WAIT).await;
    assert!(
        got.contains("type='error'") && got.contains("<policy-violation "),
        "{got}"
    );
    b.shutdown().await;
}

#[tokio::test]
async fn bad_tls_peers_cost_only_their_own_stream() {
    use Negotiation::{Optional as O, Required as R};
    let p = policy(R, O, true);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let a_addr = listener.local_addr().expect("addr");
    drop(listener);
    let b = proxy_b(p, Some(a_addr)).await;

    // Garbage instead of a ClientHello: closed with no XML after <proceed/> (TLS-03).
    let garbage = async {
        let mut s = TcpStream::connect(b.s2s_addr).await.expect("connect");
        s.write_all(HDR.as_bytes()).await.expect("write");
        read_until(&mut s, "</stream:features>", WAIT).await;
        s.write_all(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
            .await
            .expect("w");
        let (got, _) = read_until(&mut s, "<proceed", WAIT).await;
        assert!(got.contains("<proceed"), "{got}");
        let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: b.test\r\n\r\n").await;
        read_until(&mut s, "", WAIT).await
    };
    // A stalled handshake: <proceed/>, then nothing; closed by the handshake timeout.
    let stalled = async {
        let started = Instant::now();
        let mut s = TcpStream::connect(b.s2s_addr).await.expect("connect");
        s.write_all(HDR.as_bytes()).await.expect("write");
        read_until(&mut s, "</stream:features>", WAIT).await;
        s.write_all(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
            .await
            .expect("w");
        read_until(&mut s, "<proceed", WAIT).await;
        let (rest, closed) = read_until(&mut s, "", WAIT).await;
        (rest, closed, started.elapsed())
    };
    // Meanwhile a good peer federates over STARTTLS + SASL EXTERNAL.
    let good = async {
        let settings = a_settings(&ca().valid("a.test").expect("leaf"));
        let tcp = TcpStream::connect(b.s2s_addr).await.expect("connect");
        let mut out = OutboundSession::new(Instant::now(), a_local(p), "a.test", "b.test");
        out.send_stanza(Instant::now(), "a.test", ping("a.test", "b.test", "p1"));
        drive(
            &mut out,
            tcp,
            Side::Client("b.test".into()),
            &settings,
            |o| matches!(o, Output::PairAuthorized { .. }),
        )
        .await
    };
    let ((garbage, g_closed), (stalled, s_closed, took), good) =
        tokio::join!(garbage, stalled, good);
    // A TLS alert may come back, never XML.
    assert!(
        g_closed && !garbage.contains('<'),
        "garbage: closed without XML, got {garbage:?}"
    );
    assert!(
        s_closed && stalled.is_empty(),
        "stalled: closed without XML, got {stalled:?}"
    );
    assert!(
        took < Duration::from_secs(3),
        "handshake timeout applied: {took:?}"
    );
    assert!(
        good.outputs
            .iter()
            .any(|o| matches!(o, Output::PairAuthorized { .. }))
    );
    assert!(good.sent.contains("mechanism='EXTERNAL'"));

    // And afterwards a good peer still gets in.
    let settings = a_settings(&ca().valid("a.test").expect("leaf"));
    let tcp = TcpStream::connect(b.s2s_addr).await.expect("connect");
    let mut out = OutboundSession::new(Instant::now(), a_local(p), "a.test", "b.test");
    out.send_stanza(Instant::now(), "a.test", ping("a.test", "b.test", "p2"));
    let again = drive(
        &mut out,
        tcp,
        Side::Client("b.test".into()),
        &settings,
        |o| matches!(o, Output::PairAuthorized { .. }),
    )
    .await;
    assert!(
        again
            .outputs
            .iter()
            .any(|o| matches!(o, Output::PairAuthorized { .. }))
    );
    b.shutdown().await;
}

#[tokio::test]
async fn per_partner_stream_limit() {
    // MS-10 PartnerConnectionLimit: the next stream naming the same partner is refused.
    use Negotiation::NotSupported as NS;
    let mut c = ProxyConfig::new("b.test", "secret-b");
    c.limits.max_streams_per_partner = 2;
    c.default_partner = PartnerConfig::from_policy(policy(NS, NS, true));
    let b = start(c).await.expect("start");
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(b.s2s_addr).await.expect("connect");
        s.write_all(HDR.as_bytes()).await.expect("write");
        let (got, _) = read_until(&mut s, "</stream:features>", WAIT).await;
        assert!(got.contains("<stream:features>"), "{got}");
        held.push(s);
    }
    let mut third = TcpStream::connect(b.s2s_addr).await.expect("connect");
    third.write_all(HDR.as_bytes()).await.expect("write");
    let (got, _) = read_until(&mut third, "</stream:stream>", WAIT).await;
    assert!(got.contains("<policy-violation "), "{got}");
    // Another partner is not affected.
    let mut other = TcpStream::connect(b.s2s_addr).await.expect("connect");
    other
        .write_all(HDR.replace("from='a.test'", "from='c.test'").as_bytes())
        .await
        .expect("write");
    let (got, _) = read_until(&mut other, "</stream:features>", WAIT).await;
    assert!(!got.contains("policy-violation"), "{got}");
    drop(held);
    b.shutdown().await;
}

#[tokio::test]
async fn component_domain_gets_its_own_sasl_stream_to_a_sasl_only_partner() {
    // SASL authenticates the stream's `from` only (RFC 6120 §6.3.8); with dialback ruled
    // out by policy (MS-09: TLS Req / SASL Req) the gateway's domain gets its own stream,
    // and the proxy's certificate must name it too (CERT-06).
    use Negotiation::Required as R;
    let strict = policy(R, R, false);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let a_addr = listener.local_addr().expect("addr");
    let mut c = ProxyConfig::new("b.test", "secret-b");
    c.component_listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    c.components.push(ComponentConfig {
        domain: "gw.b.test".into(),
        secret: "gw".into(),
    });
    let leaf = ca()
        .issue(&crate::tls::LeafSpec {
            dns_names: vec!["b.test".into(), "gw.b.test".into()],
            ..crate::tls::LeafSpec::for_domain("b.test")
        })
        .expect("leaf");
    c.tls_material = Some(TlsMaterial::from_leaf(&leaf, ca().cert_pem()));
    c.default_partner = PartnerConfig::from_policy(strict);
    let b = start(c).await.expect("start");
    b.add_route("a.test", a_addr);
    let mut gw = super::tests::TestComponent::connect(
        b.component_addr.expect("component port"),
        "gw.b.test",
        "gw",
    )
    .await;
    let settings = a_settings(&ca().valid("a.test").expect("leaf"));
    let back = tokio::spawn(async move {
        let (tcp, _) = tokio::time::timeout(WAIT, listener.accept())
            .await
            .ok()?
            .ok()?;
        let mut s = InboundSession::new(Instant::now(), a_local(strict), "a-1".into());
        let seen = drive(&mut s, tcp, Side::Server, &settings, |o| {
            matches!(o, Output::Stanza(_))
        })
        .await;
        Some((seen, s.sasl_authenticated().map(str::to_string)))
    });
    gw.send(
        Element::new(ns::SERVER, "message")
            .with_attr("from", "carol@gw.b.test")
            .with_attr("to", "alice@a.test")
            .with_child(Element::new(ns::SERVER, "body").with_text("hi")),
    )
    .await;
    let (seen, authenticated) = tokio::time::timeout(WAIT, back)
        .await
        .expect("in time")
        .expect("task")
        .expect("connected");
    assert_eq!(
        authenticated.as_deref(),
        Some("gw.b.test"),
        "{}",
        seen.received
    );
    assert!(seen.received.contains("from='gw.b.test'"));
    assert!(
        seen.outputs
            .iter()
            .any(|o| matches!(o, Output::Stanza(e) if e.attr("to") == Some("alice@a.test")))
    );
    b.shutdown().await;
}

#[tokio::test]
async fn total_inbound_connection_limit() {
    // MS-10 ConnectionLimit: past the limit a connection is closed before any XML.
    let mut c = ProxyConfig::new("b.test", "secret-b");
    c.limits.max_inbound_streams = 1;
    let b = start(c).await.expect("start");
    let mut first = TcpStream::connect(b.s2s_addr).await.expect("connect");
    first.write_all(HDR.as_bytes()).await.expect("write");
    let (got, _) = read_until(&mut first, "</stream:features>", WAIT).await;
    assert!(got.contains("<stream:features>"), "{got}");
    let mut second = TcpStream::connect(b.s2s_addr).await.expect("connect");
    let _ = second.write_all(HDR.as_bytes()).await;
    let (got, closed) = read_until(&mut second, "", WAIT).await;
    assert!(closed && got.is_empty(), "{got}");
    drop(first);
    // The slot is given back when the first stream ends.
    let deadline = Instant::now() + WAIT;
    loop {
        let mut third = TcpStream::connect(b.s2s_addr).await.expect("connect");
        let _ = third.write_all(HDR.as_bytes()).await;
        let (got, _) =
            read_until(&mut third, "</stream:features>", Duration::from_millis(500)).await;
        if got.contains("<stream:features>") {
            break;
        }
        assert!(Instant::now() < deadline, "slot never freed");
    }
    b.shutdown().await;
}

/// Two bundled proxies: `a.test` (with the gateway component `gw.a.test`) and `b.test`,
/// both with `partner` as default policy; `a_leaf` is a's certificate.
async fn tls_federation(
    partner: PartnerPolicy,
    a_leaf: Leaf,
) -> (RunningProxy, RunningProxy, super::tests::TestComponent) {
    let mut a = ProxyConfig::new("a.test", "secret-a");
    a.component_listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    a.components.push(ComponentConfig {
        domain: "gw.a.test".into(),
        secret: "gw".into(),
    });
    a.tls_material = Some(TlsMaterial::from_leaf(&a_leaf, ca().cert_pem()));
    a.default_partner = PartnerConfig::from_policy(partner);
    a.timeouts.dialback = Duration::from_secs(3);
    let mut b = ProxyConfig::new("b.test", "secret-b");
    b.tls_material = Some(TlsMaterial::from_leaf(
        &ca().valid("b.test").expect("leaf"),
        ca().cert_pem(),
    ));
    b.default_partner = PartnerConfig::from_policy(partner);
    b.timeouts.dialback = Duration::from_secs(3);
    let (a, b) = (start(a).await.expect("a"), start(b).await.expect("b"));
    a.add_route("b.test", b.s2s_addr);
    b.add_route("a.test", a.s2s_addr);
    b.add_route("gw.a.test", a.s2s_addr);
    let gw = super::tests::TestComponent::connect(
        a.component_addr.expect("component port"),
        "gw.a.test",
        "gw",
    )
    .await;
    (a, b, gw)
}

#[tokio::test]
async fn proxies_federate_over_starttls_and_sasl_external() {
    // MS-09 first row between two bundled proxies: a's certificate names both of its
    // domains, the gateway's stanzas get their own SASL stream.
    use Negotiation::Required as R;
    let leaf = ca()
        .issue(&crate::tls::LeafSpec {
            dns_names: vec!["a.test".into(), "gw.a.test".into()],
            ..crate::tls::LeafSpec::for_domain("a.test")
        })
        .expect("leaf");
    let (a, b, mut gw) = tls_federation(policy(R, R, false), leaf).await;
    gw.send(ping("sip@gw.a.test", "b.test", "p1")).await;
    let r = gw.recv().await.expect("answer");
    assert_eq!((r.attr("type"), r.attr("id")), (Some("result"), Some("p1")));
    a.shutdown().await;
    b.shutdown().await;
}

#[rstest::rstest]
#[case::dialback_allowed(Negotiation::Optional, true, "result")]
#[case::sasl_required(Negotiation::Required, false, "error")]
#[tokio::test]
async fn proxies_with_a_wrong_name_certificate(
    #[case] sasl: Negotiation,
    #[case] dialback: bool,
    #[case] answer: &str,
) {
    // D-17: dialback over TLS when allowed; refused (an error comes back to the sender)
    // when SASL is required and dialback is off.
    let p = policy(Negotiation::Required, sasl, dialback);
    let (a, b, mut gw) = tls_federation(p, ca().wrong_name("a.test").expect("leaf")).await;
    gw.send(ping("sip@gw.a.test", "b.test", "p1")).await;
    let r = gw.recv().await.expect("answer");
    assert_eq!(r.attr("type"), Some(answer), "{r:?}");
    a.shutdown().await;
    b.shutdown().await;
}
