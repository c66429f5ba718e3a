//! Proxies on real loopback sockets: two instances federating by dialback, and bad peers.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::xmpp::component::ComponentClient;
use crate::xmpp::element::Element;
use crate::xmpp::ns;
use crate::xmpp::s2s::{Input, Output};

const WAIT: Duration = Duration::from_secs(5);

fn cfg(domain: &str, secret: &str) -> ProxyConfig {
    let mut c = ProxyConfig::new(domain, secret);
    c.timeouts.connect = Duration::from_secs(2);
    c.timeouts.dialback = Duration::from_secs(3);
    c.timeouts.establish = Duration::from_secs(3);
    c
}

/// a.test (with component gw.a.test) and b.test, routed to each other.
async fn federation() -> (RunningProxy, RunningProxy) {
    let mut a = cfg("a.test", "secret-a");
    a.component_listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    a.components.push(ComponentConfig {
        domain: "gw.a.test".into(),
        secret: "gw".into(),
    });
    let mut b = cfg("b.test", "secret-b");
    b.limits.max_stanza_bytes = 20_000;
    let (a, b) = (
        start(a).await.expect("start a"),
        start(b).await.expect("start b"),
    );
    a.add_route("b.test", b.s2s_addr);
    b.add_route("a.test", a.s2s_addr);
    b.add_route("gw.a.test", a.s2s_addr);
    (a, b)
}

/// A component client on a real socket, driven by its sans-IO session.
pub(super) struct TestComponent {
    sock: TcpStream,
    s: ComponentClient,
    inbox: VecDeque<Element>,
    buf: Vec<u8>,
}

impl TestComponent {
    pub(super) async fn connect(addr: SocketAddr, domain: &str, secret: &str) -> Self {
        let sock = TcpStream::connect(addr).await.expect("connect component");
        let s = ComponentClient::new(Instant::now(), domain, secret, Default::default(), WAIT);
        let mut c = TestComponent {
            sock,
            s,
            inbox: VecDeque::new(),
            buf: vec![0; 8192],
        };
        let deadline = Instant::now() + WAIT;
        while !c.s.is_ready() && Instant::now() < deadline && !c.s.is_closed() {
            c.pump().await;
        }
        assert!(c.s.is_ready(), "component handshake");
        c
    }

    async fn flush(&mut self) {
        let mut w = Vec::new();
        while let Some(o) = self.s.poll_output() {
            match o {
                Output::Transmit(b) => w.extend_from_slice(&b),
                Output::Stanza(e) => self.inbox.push_back(e),
                _ => {}
            }
        }
        if !w.is_empty() {
            self.sock.write_all(&w).await.expect("write");
        }
    }

    async fn pump(&mut self) {
        self.flush().await;
        match tokio::time::timeout(Duration::from_millis(100), self.sock.read(&mut self.buf)).await
        {
            Ok(Ok(0)) | Ok(Err(_)) => {
                let _ = self.s.handle_input(Instant::now(), Input::Eof);
            }
            Ok(Ok(n)) => {
                let data = self.buf[..n].to_vec();
                let _ = self.s.handle_input(Instant::now(), Input::Data(&data));
            }
            Err(_) => {}
        }
        self.flush().await;
    }

    pub(super) async fn send(&mut self, el: Element) {
        self.s.send_stanza(el);
        self.flush().await;
    }

    pub(super) async fn recv(&mut self) -> Option<Element> {
        let deadline = Instant::now() + WAIT;
        while self.inbox.is_empty() && Instant::now() < deadline && !self.s.is_closed() {
            self.pump().await;
        }
        self.inbox.pop_front()
    }
}

fn iq_get(from: &str, to: &str, id: &str, payload: Element) -> Element {
    Element::new(ns::SERVER, "iq")
        .with_attr("type", "get")
        .with_attr("from", from)
        .with_attr("to", to)
        .with_attr("id", id)
        .with_child(payload)
}

fn error_condition(e: &Element) -> Option<String> {
    e.elements()
        .find(|c| c.name == "error")
        .and_then(|er| er.elements().next())
        .map(|c| c.name.clone())
}

#[tokio::test]
async fn two_proxies_federate_by_dialback_and_ping_round_trips() {
    let (a, b) = federation().await;
    let mut gw =
        TestComponent::connect(a.component_addr.expect("component port"), "gw.a.test", "gw").await;
    gw.send(iq_get(
        "sip@gw.a.test",
        "b.test",
        "p1",
        Element::new(ns::PING, "ping"),
    ))
    .await;
    let r = gw.recv().await.expect("ping answer");
    assert_eq!(
        (r.name.as_str(), r.attr("type"), r.attr("id")),
        ("iq", Some("result"), Some("p1"))
    );
    assert_eq!(r.attr("from"), Some("b.test"));

    // disco#info on the domain, over the now established streams.
    gw.send(iq_get(
        "sip@gw.a.test",
        "b.test",
        "d1",
        Element::new(ns::DISCO_INFO, "query"),
    ))
    .await;
    let r = gw.recv().await.expect("disco answer");
    let q = r.child(ns::DISCO_INFO, "query").expect("query");
    assert!(
        q.elements()
            .any(|c| c.name == "identity" && c.attr("category") == Some("server"))
    );
    assert!(q.elements().any(|c| c.attr("var") == Some(ns::PING)));

    // No users at b.test: a message is bounced with service-unavailable.
    let m = Element::new(ns::SERVER, "message")
        .with_attr("from", "sip@gw.a.test")
        .with_attr("to", "nobody@b.test")
        .with_attr("id", "m1")
        .with_child(Element::new(ns::SERVER, "body").with_text("hi"));
    gw.send(m).await;
    let r = gw.recv().await.expect("bounce");
    assert_eq!(r.attr("type"), Some("error"));
    assert_eq!(error_condition(&r).as_deref(), Some("service-unavailable"));
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn unroutable_and_unreachable_domains_bounce() {
    let (a, b) = federation().await;
    // A port with nothing listening.
    let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let dead = closed.local_addr().expect("addr");
    drop(closed);
    a.add_route("dead.test", dead);
    let mut gw =
        TestComponent::connect(a.component_addr.expect("component port"), "gw.a.test", "gw").await;
    gw.send(iq_get(
        "sip@gw.a.test",
        "nowhere.test",
        "n1",
        Element::new(ns::PING, "ping"),
    ))
    .await;
    let r = gw.recv().await.expect("bounce");
    assert_eq!(
        error_condition(&r).as_deref(),
        Some("remote-server-not-found"),
        "ERR-11"
    );
    gw.send(iq_get(
        "sip@gw.a.test",
        "dead.test",
        "n2",
        Element::new(ns::PING, "ping"),
    ))
    .await;
    let r = gw.recv().await.expect("bounce");
    assert_eq!(
        error_condition(&r).as_deref(),
        Some("remote-server-timeout"),
        "ERR-11"
    );
    a.shutdown().await;
    b.shutdown().await;
}

/// Send `data` on a fresh S2S connection and collect everything until the proxy closes.
async fn bad_peer(addr: SocketAddr, data: Vec<u8>) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let _ = s.write_all(&data).await;
    let mut got = Vec::new();
    let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut got)).await;
    String::from_utf8_lossy(&got).into_owned()
}

const HDR: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:server' \
    xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' \
    from='evil.test' to='b.test' version='1.0'>";

#[tokio::test]
async fn bad_peers_cost_only_their_own_stream() {
    let (a, b) = federation().await;
    let mut gw =
        TestComponent::connect(a.component_addr.expect("component port"), "gw.a.test", "gw").await;

    let garbage = bad_peer(b.s2s_addr, format!("{HDR}<a></b>").into_bytes());
    let laughs = bad_peer(
        b.s2s_addr,
        b"<?xml version='1.0'?><!DOCTYPE lolz [<!ENTITY lol 'lol'><!ENTITY lol2 '&lol;&lol;&lol;&lol;'>]>\
          <stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' to='b.test'>&lol2;"
            .to_vec(),
    );
    let big = format!(
        "{HDR}<message from='u@evil.test' to='v@b.test'><body>{}</body></message>",
        "x".repeat(50_000)
    );
    let oversized = bad_peer(b.s2s_addr, big.into_bytes());
    // Only a header, then silence: closed by the establishment timeout.
    let stalled = bad_peer(b.s2s_addr, HDR.as_bytes().to_vec());

    // Meanwhile, the good stream works.
    gw.send(iq_get(
        "sip@gw.a.test",
        "b.test",
        "p1",
        Element::new(ns::PING, "ping"),
    ))
    .await;
    let r = gw
        .recv()
        .await
        .expect("ping answer while bad peers are around");
    assert_eq!(r.attr("type"), Some("result"));

    let (garbage, laughs, oversized) = tokio::join!(garbage, laughs, oversized);
    for (name, got, cond) in [
        ("garbage", &garbage, &["not-well-formed"][..]),
        (
            "billion laughs",
            &laughs,
            &["restricted-xml", "not-well-formed", "invalid-xml"][..],
        ),
        (
            "oversized",
            &oversized,
            &["policy-violation", "resource-constraint"][..],
        ),
    ] {
        assert!(got.contains("<stream:error>"), "{name}: {got}");
        assert!(
            cond.iter().any(|c| got.contains(&format!("<{c} "))),
            "{name}: {got}"
        );
        assert!(got.ends_with("</stream:stream>"), "{name}: {got}");
    }
    let stalled = tokio::time::timeout(WAIT, stalled)
        .await
        .expect("stalled stream closed in time");
    assert!(stalled.contains("connection-timeout"), "{stalled}");

    // And still working afterwards.
    gw.send(iq_get(
        "sip@gw.a.test",
        "b.test",
        "p2",
        Element::new(ns::PING, "ping"),
    ))
    .await;
    assert_eq!(
        gw.recv()
            .await
            .and_then(|r| r.attr("id").map(str::to_string))
            .as_deref(),
        Some("p2")
    );
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn unauthenticated_stanza_gets_not_authorized_on_the_wire() {
    let (a, b) = federation().await;
    let got = bad_peer(
        b.s2s_addr,
        format!("{HDR}<message from='u@evil.test' to='v@b.test'/>").into_bytes(),
    )
    .await;
    assert!(
        got.contains("from='b.test'") && got.contains("<not-authorized "),
        "{got}"
    );
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn component_with_wrong_secret_is_refused() {
    let (a, b) = federation().await;
    let mut s = TcpStream::connect(a.component_addr.expect("port"))
        .await
        .expect("connect");
    s.write_all(
        b"<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' to='gw.a.test'>\
          <handshake>0000</handshake>",
    )
    .await
    .expect("write");
    let mut got = Vec::new();
    let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut got)).await;
    let got = String::from_utf8_lossy(&got);
    assert!(got.contains("<not-authorized "), "{got}");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_open_streams_with_system_shutdown_and_joins() {
    let p = start(cfg("b.test", "s")).await.expect("start");
    let mut sock = TcpStream::connect(p.s2s_addr).await.expect("connect");
    sock.write_all(HDR.as_bytes()).await.expect("write");
    let mut first = vec![0u8; 4096];
    let n = tokio::time::timeout(WAIT, sock.read(&mut first))
        .await
        .expect("header in time")
        .expect("read");
    assert!(String::from_utf8_lossy(&first[..n]).contains("<stream:stream"));
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        let _ = tokio::time::timeout(WAIT, sock.read_to_end(&mut got)).await;
        String::from_utf8_lossy(&got).into_owned()
    });
    tokio::time::timeout(WAIT, p.shutdown())
        .await
        .expect("shutdown joins its tasks");
    let got = reader.await.expect("reader");
    assert!(
        got.contains("<system-shutdown ") && got.ends_with("</stream:stream>"),
        "{got}"
    );
}

#[tokio::test]
async fn listen_errors_are_reported() {
    let taken = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let mut c = cfg("b.test", "s");
    c.listen = taken.local_addr().expect("addr");
    assert!(matches!(start(c).await, Err(ProxyError::Bind { .. })));
    let mut c = cfg("b.test", "s");
    c.domains.clear();
    assert!(matches!(
        start(c).await,
        Err(ProxyError::Config(Rule::NoDomains))
    ));
}

/// Read from `sock` until `needle` shows up (or the wait ends); everything read so far.
async fn read_until(sock: &mut TcpStream, needle: &str) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + WAIT;
    while !String::from_utf8_lossy(&got).contains(needle) {
        match tokio::time::timeout_at(deadline, sock.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test]
async fn unreachable_authoritative_server_is_a_dialback_error_not_a_stream_error() {
    let (a, b) = federation().await;
    let mut sock = TcpStream::connect(b.s2s_addr).await.expect("connect");
    sock.write_all(
        format!("{HDR}<db:result from='evil.test' to='b.test'>k</db:result>").as_bytes(),
    )
    .await
    .expect("write");
    let got = read_until(&mut sock, "</db:result>").await;
    assert!(
        got.contains("type='error'") && got.contains("<remote-server-not-found "),
        "{got}"
    );
    assert!(
        !got.contains("</stream:stream>"),
        "XEP-0220 §2.5: the stream stays open: {got}"
    );
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn unlinked_component_gets_service_unavailable() {
    let mut ca = cfg("a.test", "secret-a");
    ca.component_listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    ca.components.push(ComponentConfig {
        domain: "gw.a.test".into(),
        secret: "gw".into(),
    });
    ca.components.push(ComponentConfig {
        domain: "gw2.a.test".into(),
        secret: "gw2".into(),
    });
    let a = start(ca).await.expect("start");
    let mut gw =
        TestComponent::connect(a.component_addr.expect("component port"), "gw.a.test", "gw").await;
    gw.send(iq_get(
        "sip@gw.a.test",
        "x@gw2.a.test",
        "c1",
        Element::new(ns::PING, "ping"),
    ))
    .await;
    let r = gw.recv().await.expect("bounce");
    assert_eq!(error_condition(&r).as_deref(), Some("service-unavailable"));
    // A second link for the same component domain is refused with conflict.
    let s = TcpStream::connect(a.component_addr.expect("port"))
        .await
        .expect("connect");
    let dup = ComponentClient::new(Instant::now(), "gw.a.test", "gw", Default::default(), WAIT);
    let mut dup = TestComponent {
        sock: s,
        s: dup,
        inbox: VecDeque::new(),
        buf: vec![0; 8192],
    };
    let deadline = Instant::now() + WAIT;
    while !dup.s.is_closed() && Instant::now() < deadline {
        dup.pump().await;
    }
    assert!(dup.s.is_closed(), "duplicate component link closed");
    // The first link still works.
    gw.send(iq_get(
        "sip@gw.a.test",
        "a.test",
        "c2",
        Element::new(ns::PING, "ping"),
    ))
    .await;
    assert_eq!(
        gw.recv()
            .await
            .and_then(|r| r.attr("type").map(str::to_string))
            .as_deref(),
        Some("result")
    );
    a.shutdown().await;
}

#[tokio::test]
async fn remote_that_never_answers_times_out_with_remote_server_timeout() {
    let silent = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let silent_addr = silent.local_addr().expect("addr");
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let mut ca = cfg("a.test", "secret-a");
    ca.component_listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    ca.components.push(ComponentConfig {
        domain: "gw.a.test".into(),
        secret: "gw".into(),
    });
    ca.timeouts.establish = Duration::from_millis(500);
    let a = start(ca).await.expect("start");
    a.add_route("silent.test", silent_addr);
    let mut gw =
        TestComponent::connect(a.component_addr.expect("component port"), "gw.a.test", "gw").await;
    gw.send(iq_get(
        "sip@gw.a.test",
        "silent.test",
        "t1",
        Element::new(ns::PING, "ping"),
    ))
    .await;
    let r = gw.recv().await.expect("bounce");
    assert_eq!(
        error_condition(&r).as_deref(),
        Some("remote-server-timeout")
    );
    a.shutdown().await;
    hold.abort();
}
