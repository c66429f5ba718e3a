//! The gateway on real loopback sockets: proxy A (with the gateway as its component
//! `sip.a.test`) federates by dialback with proxy B, whose component
//! `xmpp.remote.test` plays the remote XMPP users; a tiny SIP UA on UDP (and TCP)
//! plays alice.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use super::*;
use crate::proxy::{self, ComponentConfig, ProxyConfig, RunningProxy};
use crate::sip::builder::{Local, RequestBuilder, ResponseBuilder, SeededRandom};
use crate::sip::headers::NameAddr;
use crate::sip::{
    Item, Limits, Message, Method, Request, Response, StreamDecoder, Uri, parse_datagram,
};
use crate::translate::xml::parse_document;
use crate::xmpp::component::ComponentClient;
use crate::xmpp::element::Element;
use crate::xmpp::s2s::{Input, Output as XOutput};

const WAIT: Duration = Duration::from_secs(8);

fn proxy_cfg(domain: &str, component: &str, secret: &str) -> ProxyConfig {
    let mut c = ProxyConfig::new(domain, secret);
    c.component_listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    c.components.push(ComponentConfig {
        domain: component.into(),
        secret: "comp".into(),
    });
    c.timeouts.connect = Duration::from_secs(2);
    c.timeouts.dialback = Duration::from_secs(3);
    c.timeouts.establish = Duration::from_secs(3);
    c
}

/// Everything of one loopback set-up.
struct Lab {
    a: RunningProxy,
    b: RunningProxy,
    gw: RunningGateway,
    ua: Ua,
    remote: Remote,
}

impl Lab {
    async fn start(window: Duration) -> Lab {
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .try_init();
        let a = proxy::start(proxy_cfg("a.test", "sip.a.test", "secret-a"))
            .await
            .expect("proxy a");
        let b = proxy::start(proxy_cfg("remote.test", "xmpp.remote.test", "secret-b"))
            .await
            .expect("proxy b");
        a.add_route("xmpp.remote.test", b.s2s_addr);
        a.add_route("remote.test", b.s2s_addr);
        b.add_route("sip.a.test", a.s2s_addr);
        b.add_route("a.test", a.s2s_addr);
        let ua = Ua::bind().await;
        let mut cfg = GatewayConfig::new(
            "sip.a.test",
            "comp",
            a.component_addr.expect("component port"),
        );
        cfg.timers.t1 = Duration::from_millis(100);
        cfg.timers.message_error_window = window;
        cfg.timers.reconnect_min = Duration::from_millis(50);
        cfg.timers.reconnect_max = Duration::from_millis(400);
        let gw = start(cfg).await.expect("gateway");
        // The UA's port is known only now: a run-time route, as the harness adds them.
        gw.add_sip_route(
            "sip.a.test",
            SipTarget {
                transport: Transport::Udp,
                addr: ua.addr,
            },
        );
        assert!(gw.wait_linked(WAIT).await, "component link up");
        let remote = Remote::connect(
            b.component_addr.expect("component port"),
            "xmpp.remote.test",
            "comp",
        )
        .await;
        Lab {
            a,
            b,
            gw,
            ua,
            remote,
        }
    }

    async fn stop(self) {
        self.gw.shutdown().await;
        self.a.shutdown().await;
        self.b.shutdown().await;
    }
}

/// alice's UA on a UDP socket.
struct Ua {
    sock: UdpSocket,
    addr: SocketAddr,
    rng: SeededRandom,
    seq: u32,
}

impl Ua {
    async fn bind() -> Ua {
        let sock = UdpSocket::bind("127.0.0.1:0").await.expect("ua socket");
        let addr = sock.local_addr().expect("addr");
        Ua {
            sock,
            addr,
            rng: SeededRandom(5),
            seq: 0,
        }
    }

    fn local(&self, transport: &str, sent_by: SocketAddr) -> Local {
        Local {
            aor: NameAddr::parse("From", "<sip:alice@sip.a.test>").expect("aor"),
            transport: transport.into(),
            sent_by: sent_by.to_string(),
            contact: Uri::parse(&format!("sip:alice@{sent_by}")),
        }
    }

    fn request(
        &mut self,
        method: Method,
        uri: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
        local: &Local,
    ) -> Request {
        self.seq += 1;
        let mut b = RequestBuilder::new(method, Uri::parse(uri).expect("uri")).cseq(self.seq);
        for (n, v) in headers {
            b = b.header(*n, *v);
        }
        if let Some(body) = body {
            b = b.body("text/plain;charset=UTF-8", body.as_bytes().to_vec());
        }
        b.build(local, &mut self.rng)
    }

    async fn send(&mut self, to: SocketAddr, r: &Request) {
        self.sock.send_to(&r.to_bytes(), to).await.expect("send");
    }

    async fn send_response(&mut self, to: SocketAddr, r: &Response) {
        self.sock.send_to(&r.to_bytes(), to).await.expect("send");
    }

    async fn recv(&mut self) -> (Message, SocketAddr) {
        let mut buf = vec![0u8; 65_535];
        let (n, from) = tokio::time::timeout(WAIT, self.sock.recv_from(&mut buf))
            .await
            .expect("SIP within the wait")
            .expect("recv");
        match parse_datagram(&buf[..n], &Limits::default()) {
            Ok(Item::Message(m)) => (m, from),
            other => panic!("unparsable SIP from the gateway: {other:?}"),
        }
    }

    async fn recv_response(&mut self) -> Response {
        loop {
            match self.recv().await {
                (Message::Response(r), _) if !r.is_provisional() => return r,
                (Message::Response(_), _) => {}
                (Message::Request(r), _) => panic!("unexpected {}", r.method),
            }
        }
    }

    async fn recv_request(&mut self) -> (Request, SocketAddr) {
        match self.recv().await {
            (Message::Request(r), from) => (r, from),
            (Message::Response(r), _) => panic!("unexpected response {}", r.status),
        }
    }

    async fn answer(&mut self, req: &Request, to: SocketAddr, code: u16, headers: &[(&str, &str)]) {
        let mut b = ResponseBuilder::new(req, code);
        for (n, v) in headers {
            b = b.header(*n, *v);
        }
        let r = b.build(&mut self.rng);
        self.send_response(to, &r).await;
    }
}

/// The remote XMPP users, as a component of proxy B.
struct Remote {
    sock: TcpStream,
    s: ComponentClient,
    inbox: VecDeque<Element>,
    buf: Vec<u8>,
}

impl Remote {
    async fn connect(addr: SocketAddr, domain: &str, secret: &str) -> Remote {
        let sock = TcpStream::connect(addr).await.expect("connect component");
        let s = ComponentClient::new(Instant::now(), domain, secret, Default::default(), WAIT);
        let mut c = Remote {
            sock,
            s,
            inbox: VecDeque::new(),
            buf: vec![0; 8192],
        };
        let deadline = Instant::now() + WAIT;
        while !c.s.is_ready() && Instant::now() < deadline && !c.s.is_closed() {
            c.pump().await;
        }
        assert!(c.s.is_ready(), "remote component handshake");
        c
    }

    async fn flush(&mut self) {
        let mut w = Vec::new();
        while let Some(o) = self.s.poll_output() {
            match o {
                XOutput::Transmit(b) => w.extend_from_slice(&b),
                XOutput::Stanza(e) => self.inbox.push_back(e),
                _ => {}
            }
        }
        if !w.is_empty() {
            self.sock.write_all(&w).await.expect("write");
        }
    }

    async fn pump(&mut self) {
        self.flush().await;
        match tokio::time::timeout(Duration::from_millis(50), self.sock.read(&mut self.buf)).await {
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

    async fn send(&mut self, xml: &str) {
        self.s.send_stanza(parse_document(xml).expect("stanza"));
        self.flush().await;
    }

    async fn recv(&mut self) -> Element {
        let deadline = Instant::now() + WAIT;
        while self.inbox.is_empty() && Instant::now() < deadline && !self.s.is_closed() {
            self.pump().await;
        }
        self.inbox.pop_front().expect("a stanza at the remote side")
    }
}

fn body(e: &Element) -> Option<String> {
    e.elements().find(|c| c.name == "body").map(Element::text)
}

fn condition(e: &Element) -> Option<String> {
    e.elements()
        .find(|c| c.name == "error")
        .and_then(|er| er.elements().find(|c| c.name != "text"))
        .map(|c| c.name.clone())
}

#[tokio::test]
async fn sip_message_reaches_the_remote_xmpp_user_and_200_comes_back() {
    // IM-05, IM-08, ARCH-01: through the component link, the proxy and S2S dialback.
    let mut lab = Lab::start(Duration::from_millis(50)).await;
    let gw = lab.gw.sip_udp_addr;
    let local = lab.ua.local("UDP", lab.ua.addr);
    let r = lab.ua.request(
        Method::Message,
        "sip:juliet@xmpp.remote.test",
        &[],
        Some("Hello Juliet \u{1f600}"),
        &local,
    );
    lab.ua.send(gw, &r).await;
    let m = lab.remote.recv().await;
    assert_eq!(m.name, "message");
    assert_eq!(m.attr("from"), Some("alice@sip.a.test"));
    assert_eq!(m.attr("to"), Some("juliet@xmpp.remote.test"));
    assert_eq!(body(&m).as_deref(), Some("Hello Juliet \u{1f600}"));
    let resp = lab.ua.recv_response().await;
    assert_eq!(resp.status, 200);
    lab.stop().await;
}

#[tokio::test]
async fn xmpp_message_reaches_the_sip_ua_and_a_sip_error_comes_back_as_xmpp_error() {
    // IM-01, IM-02, ERR-05, ERR-09.
    let mut lab = Lab::start(Duration::from_millis(50)).await;
    lab.remote
        .send(
            "<message xmlns='jabber:component:accept' from='juliet@xmpp.remote.test/balcony' \
               to='alice@sip.a.test' id='m1'><body>Hi Alice</body></message>",
        )
        .await;
    let (req, from) = lab.ua.recv_request().await;
    assert_eq!(req.method, Method::Message);
    assert_eq!(req.uri.as_str(), "sip:alice@sip.a.test");
    assert_eq!(
        req.headers.from().expect("from").uri.as_str(),
        "sip:juliet@xmpp.remote.test;gr=balcony"
    );
    assert_eq!(req.body, b"Hi Alice");
    lab.ua.answer(&req, from, 200, &[]).await;

    lab.remote
        .send(
            "<message xmlns='jabber:component:accept' from='juliet@xmpp.remote.test/balcony' \
               to='alice@sip.a.test' id='m2'><body>again</body></message>",
        )
        .await;
    let (req, from) = lab.ua.recv_request().await;
    lab.ua.answer(&req, from, 404, &[]).await;
    let e = lab.remote.recv().await;
    assert_eq!(e.attr("type"), Some("error"));
    assert_eq!(e.attr("id"), Some("m2"));
    assert_eq!(e.attr("from"), Some("alice@sip.a.test"));
    assert_eq!(e.attr("to"), Some("juliet@xmpp.remote.test/balcony"));
    assert_eq!(condition(&e).as_deref(), Some("item-not-found"));
    lab.stop().await;
}

#[tokio::test]
async fn xmpp_error_to_a_translated_message_becomes_the_sip_final_response() {
    // ERR-01: the remote user's server refuses the message.
    let mut lab = Lab::start(Duration::from_secs(3)).await;
    let gw = lab.gw.sip_udp_addr;
    let local = lab.ua.local("UDP", lab.ua.addr);
    let r = lab.ua.request(
        Method::Message,
        "sip:juliet@xmpp.remote.test",
        &[],
        Some("x"),
        &local,
    );
    lab.ua.send(gw, &r).await;
    let m = lab.remote.recv().await;
    let id = m.attr("id").expect("id").to_owned();
    lab.remote
        .send(&format!(
            "<message xmlns='jabber:component:accept' type='error' from='juliet@xmpp.remote.test' \
             to='alice@sip.a.test' id='{id}'><error type='auth'><not-authorized \
             xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>"
        ))
        .await;
    let resp = lab.ua.recv_response().await;
    // Not Table 2's 401: a 401 must carry a challenge (RFC 3261 §21.4.2) the gateway
    // cannot give; see translate::error.
    assert_eq!(resp.status, 403);
    lab.stop().await;
}

#[tokio::test]
async fn sip_subscribe_becomes_subscribe_and_subscribed_becomes_notify_active() {
    // PSUB-09, PSUB-10.
    let mut lab = Lab::start(Duration::from_millis(50)).await;
    let gw = lab.gw.sip_udp_addr;
    let local = lab.ua.local("UDP", lab.ua.addr);
    let r = lab.ua.request(
        Method::Subscribe,
        "sip:juliet@xmpp.remote.test",
        &[
            ("Event", "presence"),
            ("Accept", "application/pidf+xml"),
            ("Expires", "600"),
        ],
        None,
        &local,
    );
    lab.ua.send(gw, &r).await;
    // 200 (RFC 6665 §8.3.1: not 202) and NOTIFY pending, in either order.
    let mut got_200 = false;
    let mut got_pending = false;
    while !(got_200 && got_pending) {
        match lab.ua.recv().await {
            (Message::Response(resp), _) => {
                assert_eq!(resp.status, 200);
                got_200 = true;
            }
            (Message::Request(n), from) => {
                assert_eq!(n.method, Method::Notify);
                assert!(
                    n.headers
                        .get("Subscription-State")
                        .is_some_and(|s| s.starts_with("pending"))
                );
                lab.ua.answer(&n, from, 200, &[]).await;
                got_pending = true;
            }
        }
    }
    let s = lab.remote.recv().await;
    assert_eq!(s.name, "presence");
    assert_eq!(s.attr("type"), Some("subscribe"));
    assert_eq!(s.attr("from"), Some("alice@sip.a.test"));
    assert_eq!(s.attr("to"), Some("juliet@xmpp.remote.test"));
    lab.remote
        .send(
            "<presence xmlns='jabber:component:accept' type='subscribed' \
               from='juliet@xmpp.remote.test' to='alice@sip.a.test'/>",
        )
        .await;
    let (n, from) = lab.ua.recv_request().await;
    assert_eq!(n.method, Method::Notify);
    assert!(
        n.headers
            .get("Subscription-State")
            .is_some_and(|s| s.starts_with("active")),
        "{:?}",
        n.headers.get("Subscription-State")
    );
    lab.ua.answer(&n, from, 200, &[]).await;
    lab.stop().await;
}

#[tokio::test]
async fn sip_over_tcp_gets_its_answer_on_the_same_connection() {
    let mut lab = Lab::start(Duration::from_millis(50)).await;
    let mut sock = TcpStream::connect(lab.gw.sip_tcp_addr).await.expect("tcp");
    let me = sock.local_addr().expect("addr");
    let local = lab.ua.local("TCP", me);
    let r = lab.ua.request(
        Method::Message,
        "sip:juliet@xmpp.remote.test",
        &[],
        Some("over tcp"),
        &local,
    );
    // Split the write to exercise stream framing.
    let bytes = r.to_bytes();
    let (x, y) = bytes.split_at(bytes.len() / 2);
    sock.write_all(x).await.expect("write");
    tokio::time::sleep(Duration::from_millis(20)).await;
    sock.write_all(y).await.expect("write");
    let m = lab.remote.recv().await;
    assert_eq!(body(&m).as_deref(), Some("over tcp"));
    let mut dec = StreamDecoder::new(Limits::default());
    let mut buf = vec![0u8; 8192];
    let resp = loop {
        if let Ok(Some(Item::Message(Message::Response(r)))) = dec.next() {
            break r;
        }
        let n = tokio::time::timeout(WAIT, sock.read(&mut buf))
            .await
            .expect("response in time")
            .expect("read");
        assert!(n > 0, "connection closed before the response");
        dec.feed(&buf[..n]);
    };
    assert_eq!(resp.status, 200);
    lab.stop().await;
}

#[tokio::test]
async fn messages_sent_while_the_proxy_is_away_are_held_then_delivered() {
    // The gateway starts before its proxy exists: the MESSAGE waits (no 200 yet), the
    // link comes up with back-off, then the stanza goes out and the 200 follows.
    let ua = Ua::bind().await;
    let probe = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("port");
    let port = probe.local_addr().expect("addr");
    drop(probe);
    let mut cfg = GatewayConfig::new("sip.a.test", "comp", port);
    cfg.timers.t1 = Duration::from_millis(200);
    cfg.timers.link_down_hold = Duration::from_secs(6);
    cfg.timers.message_error_window = Duration::from_millis(20);
    cfg.timers.reconnect_min = Duration::from_millis(50);
    cfg.timers.reconnect_max = Duration::from_millis(200);
    let gw = start(cfg).await.expect("gateway");
    let mut ua = ua;
    let local = ua.local("UDP", ua.addr);
    let r = ua.request(
        Method::Message,
        "sip:juliet@xmpp.remote.test",
        &[],
        Some("held"),
        &local,
    );
    ua.send(gw.sip_udp_addr, &r).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut pc = proxy_cfg("a.test", "sip.a.test", "secret-a");
    pc.component_listen = Some(port);
    let b = proxy::start(proxy_cfg("remote.test", "xmpp.remote.test", "secret-b"))
        .await
        .expect("proxy b");
    let a = proxy::start(pc)
        .await
        .expect("proxy a on the reserved port");
    a.add_route("xmpp.remote.test", b.s2s_addr);
    b.add_route("sip.a.test", a.s2s_addr);
    let mut remote =
        Remote::connect(b.component_addr.expect("port"), "xmpp.remote.test", "comp").await;
    let m = remote.recv().await;
    assert_eq!(body(&m).as_deref(), Some("held"));
    let resp = ua.recv_response().await;
    assert_eq!(resp.status, 200);
    gw.shutdown().await;
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn the_gateway_reconnects_after_the_proxy_restarts() {
    let lab = Lab::start(Duration::from_millis(20)).await;
    let comp = lab.a.component_addr.expect("port");
    let Lab {
        a,
        b,
        gw,
        mut ua,
        mut remote,
    } = lab;
    a.shutdown().await;
    // The link goes down; a MESSAGE sent now is held, not refused.
    let deadline = Instant::now() + WAIT;
    while gw.is_linked() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!gw.is_linked(), "link noticed down");
    let local = ua.local("UDP", ua.addr);
    let r = ua.request(
        Method::Message,
        "sip:juliet@xmpp.remote.test",
        &[],
        Some("after restart"),
        &local,
    );
    ua.send(gw.sip_udp_addr, &r).await;
    let mut pc = proxy_cfg("a.test", "sip.a.test", "secret-a");
    pc.component_listen = Some(comp);
    let a = proxy::start(pc).await.expect("proxy a again");
    a.add_route("xmpp.remote.test", b.s2s_addr);
    b.add_route("sip.a.test", a.s2s_addr);
    assert!(gw.wait_linked(WAIT).await, "relinked");
    let m = remote.recv().await;
    assert_eq!(body(&m).as_deref(), Some("after restart"));
    assert_eq!(ua.recv_response().await.status, 200);
    drop((ua, remote));
    gw.shutdown().await;
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn tcp_request_cut_off_by_a_half_close_is_answered() {
    let lab = Lab::start(Duration::from_millis(20)).await;
    let mut s = TcpStream::connect(lab.gw.sip_tcp_addr).await.expect("tcp");
    s.write_all(
        b"MESSAGE sip:x@y SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5099;branch=z9hG4bKcut\r\n\
          Call-ID: cut\r\nCSeq: 1 MESSAGE\r\nContent-Length: 50\r\n\r\nonly part",
    )
    .await
    .expect("write");
    s.shutdown().await.expect("half-close");
    let mut got = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut got))
        .await
        .expect("closed in time")
        .expect("read");
    let status = match crate::sip::parse_datagram(&got, &crate::sip::Limits::default()) {
        Ok(crate::sip::Item::Message(Message::Response(r))) => r.status,
        other => panic!("expected a response, got {other:?}"),
    };
    assert_eq!(status, 400, "RFC 3261 §18.3: a cut-off request gets 400");
    lab.stop().await;
}

#[tokio::test]
async fn tcp_garbage_closes_that_connection_only() {
    let mut lab = Lab::start(Duration::from_millis(20)).await;
    let mut bad = TcpStream::connect(lab.gw.sip_tcp_addr).await.expect("tcp");
    bad.write_all(
        b"MESSAGE sip:x@y SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5099;branch=z9hG4bKtcpbad\r\n\
          From: <sip:alice@sip.test>;tag=t\r\nTo: <sip:x@y>\r\nCall-ID: tcpbad\r\n\
          CSeq: 3 MESSAGE\r\nContent-Length: ten\r\n\r\n",
    )
    .await
    .expect("write");
    // RFC 3261 §18.3: 400 for the bad request, then the stream closes (its framing is
    // lost); read to EOF.
    let mut got = Vec::new();
    tokio::time::timeout(WAIT, bad.read_to_end(&mut got))
        .await
        .expect("closed in time")
        .expect("read");
    match crate::sip::parse_datagram(&got, &crate::sip::Limits::default()) {
        Ok(crate::sip::Item::Message(Message::Response(r))) => {
            assert_eq!(r.status, 400);
            assert_eq!(r.headers.get("Call-ID"), Some("tcpbad"));
        }
        other => panic!("expected a 400, got {other:?}"),
    }
    // The gateway still serves everyone else.
    let gw = lab.gw.sip_udp_addr;
    let local = lab.ua.local("UDP", lab.ua.addr);
    let r = lab.ua.request(
        Method::Message,
        "sip:juliet@xmpp.remote.test",
        &[],
        Some("still here"),
        &local,
    );
    lab.ua.send(gw, &r).await;
    assert_eq!(
        body(&lab.remote.recv().await).as_deref(),
        Some("still here")
    );
    assert_eq!(lab.ua.recv_response().await.status, 200);
    lab.stop().await;
}

#[tokio::test]
async fn xmpp_subscribe_becomes_sip_subscribe_and_notify_active_becomes_subscribed() {
    // PSUB-01, PSUB-03, PNOT-02, PNOT-03 over real sockets.
    let mut lab = Lab::start(Duration::from_millis(20)).await;
    lab.remote
        .send(
            "<presence xmlns='jabber:component:accept' type='subscribe' \
               from='juliet@xmpp.remote.test' to='alice@sip.a.test'/>",
        )
        .await;
    let (sub, from) = lab.ua.recv_request().await;
    assert_eq!(sub.method, Method::Subscribe);
    assert_eq!(sub.headers.get("Event"), Some("presence"));
    let contact = sub
        .headers
        .contacts()
        .ok()
        .and_then(|c| c.into_iter().next())
        .expect("gateway Contact");
    let resp = ResponseBuilder::new(&sub, 200)
        .to_tag("ua1")
        .header("Expires", "600")
        .header("Contact", format!("<sip:alice@{}>", lab.ua.addr))
        .build(&mut lab.ua.rng);
    lab.ua.send_response(from, &resp).await;
    let pidf = "<?xml version='1.0'?><presence xmlns='urn:ietf:params:xml:ns:pidf' \
                entity='pres:alice@sip.a.test'><tuple id='ID-desk'><status><basic>open</basic>\
                <show xmlns='jabber:client'>away</show></status></tuple></presence>";
    let local = lab.ua.local("UDP", lab.ua.addr);
    let from_hdr = "<sip:alice@sip.a.test>;tag=ua1".to_owned();
    let to_hdr = sub.headers.get("From").expect("from").to_owned();
    let cid = sub.headers.call_id().expect("cid").to_owned();
    let mut n = lab.ua.request(
        Method::Notify,
        contact.uri.as_str(),
        &[
            ("From", from_hdr.as_str()),
            ("To", to_hdr.as_str()),
            ("Call-ID", cid.as_str()),
            ("Event", "presence"),
            ("Subscription-State", "active;expires=600"),
        ],
        None,
        &local,
    );
    n.headers.set("Content-Type", "application/pidf+xml");
    n.body = pidf.as_bytes().to_vec();
    n.headers.set("Content-Length", n.body.len().to_string());
    lab.ua.send(lab.gw.sip_udp_addr, &n).await;
    assert_eq!(lab.ua.recv_response().await.status, 200);
    let s = lab.remote.recv().await;
    assert_eq!(s.attr("type"), Some("subscribed"));
    assert_eq!(s.attr("from"), Some("alice@sip.a.test"));
    let p = lab.remote.recv().await;
    assert_eq!(p.attr("type"), None);
    assert_eq!(p.attr("from"), Some("alice@sip.a.test/desk"));
    assert_eq!(
        p.elements()
            .find(|c| c.name == "show")
            .map(Element::text)
            .as_deref(),
        Some("away")
    );
    lab.stop().await;
}
