//! Sessions back to back with virtual time and no sockets (quinn `tests/util.rs`, str0m
//! `tests/common.rs`): [`World`] runs two servers, each with an outbound and an inbound
//! session, wired to each other like the two TCP connections of real federation; [`Raw`]
//! drives one session with hand-written bytes for the negative cases.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::tls::pki::{Leaf, TestCa};
use crate::tls::{CertVerdict, PeerRole, identity};
use crate::xmpp::component::{
    ComponentClient, ComponentCredentials, ComponentSession, handshake_digest,
};
use crate::xmpp::conditions::StanzaCondition;
use crate::xmpp::dialback;
use crate::xmpp::element::Element;

/// What the test utilities need from every session type.
trait Session {
    fn input(&mut self, now: Instant, i: Input<'_>) -> Result<(), Error>;
    fn output(&mut self) -> Option<Output>;
    fn fire(&mut self, now: Instant) -> Result<(), Error>;
}

macro_rules! impl_session {
    ($($t:ty),*) => {$(
        impl Session for $t {
            fn input(&mut self, now: Instant, i: Input<'_>) -> Result<(), Error> { self.handle_input(now, i) }
            fn output(&mut self) -> Option<Output> { self.poll_output() }
            fn fire(&mut self, now: Instant) -> Result<(), Error> { self.handle_timeout(now) }
        }
    )*};
}
impl_session!(
    InboundSession,
    OutboundSession,
    ComponentSession,
    ComponentClient
);

fn cfg(domains: &[&str], secret: &str) -> Arc<LocalConfig> {
    Arc::new(local_cfg(domains, secret))
}

fn local_cfg(domains: &[&str], secret: &str) -> LocalConfig {
    LocalConfig {
        timeouts: Timeouts {
            establish: Duration::from_secs(10),
            dialback: Duration::from_secs(5),
            idle: Duration::from_secs(300),
            ..Timeouts::default()
        },
        ..LocalConfig::new(domains, secret)
    }
}

fn msg(from: &str, to: &str, body: &str) -> Element {
    Element::new(ns::SERVER, "message")
        .with_attr("from", from)
        .with_attr("to", to)
        .with_attr("type", "chat")
        .with_child(Element::new(ns::SERVER, "body").with_text(body))
}

fn body(e: &Element) -> String {
    e.child(ns::SERVER, "body")
        .map(|b| b.text())
        .unwrap_or_default()
}

/// One simulated server: its config, its two sessions and what reached its router.
struct Server {
    cfg: Arc<LocalConfig>,
    /// Used for the outbound session only (tests of a wrong key).
    out_cfg: Arc<LocalConfig>,
    out: Option<OutboundSession>,
    inb: Option<InboundSession>,
    delivered: Vec<Element>,
    bounced: Vec<Element>,
    closes: Vec<Option<StreamError>>,
    /// Bytes each session wrote, for order and content assertions.
    out_wire: String,
    inb_wire: String,
    /// The certificate this server presents in TLS handshakes (simulated: the peer's
    /// session gets the verdict a driver would compute on it).
    leaf: Option<Leaf>,
    /// A session of this server asked for `UpgradeTls` and waits for its peer.
    out_tls_wait: bool,
    inb_tls_wait: bool,
}

impl Server {
    fn new(cfg: Arc<LocalConfig>) -> Self {
        Server {
            out_cfg: cfg.clone(),
            cfg,
            out: None,
            inb: None,
            delivered: vec![],
            bounced: vec![],
            closes: vec![],
            out_wire: String::new(),
            inb_wire: String::new(),
            leaf: None,
            out_tls_wait: false,
            inb_tls_wait: false,
        }
    }
}

/// Two servers federating: `a.out → b.inb` and `b.out → a.inb` are the two connections.
struct World {
    now: Instant,
    a: Server,
    b: Server,
    ids: u32,
    /// Deliver every write one byte at a time (STYLE §2: every split must work).
    bytewise: bool,
}

/// Feed `bytes` to a session whole or byte by byte.
fn deliver<S: Session>(s: &mut S, now: Instant, bytes: &[u8], bytewise: bool) {
    if bytewise {
        for b in bytes.chunks(1) {
            let _ = s.input(now, Input::Data(b));
        }
    } else {
        let _ = s.input(now, Input::Data(bytes));
    }
}

impl World {
    fn new(a: Arc<LocalConfig>, b: Arc<LocalConfig>) -> Self {
        World {
            now: Instant::now(),
            a: Server::new(a),
            b: Server::new(b),
            ids: 0,
            bytewise: false,
        }
    }

    fn next_id(&mut self) -> String {
        self.ids += 1;
        format!("stream-{}", self.ids)
    }

    /// Server `x` (true = a) sends a stanza to the other; opens its connection on demand.
    fn send(&mut self, from_a: bool, from_domain: &str, stanza: Element) {
        self.ensure_out(from_a);
        let now = self.now;
        let s = if from_a { &mut self.a } else { &mut self.b };
        if let Some(o) = s.out.as_mut() {
            o.send_stanza(now, from_domain, stanza);
        }
        self.settle();
    }

    fn ensure_out(&mut self, from_a: bool) {
        let id = self.next_id();
        let now = self.now;
        let (me, peer) = if from_a {
            (&mut self.a, &mut self.b)
        } else {
            (&mut self.b, &mut self.a)
        };
        if me.out.as_ref().is_some_and(|o| !o.is_closed()) {
            return;
        }
        let local = me.cfg.primary().to_string();
        let remote = peer.cfg.primary().to_string();
        me.out = Some(OutboundSession::new(
            now,
            me.out_cfg.clone(),
            &local,
            &remote,
        ));
        peer.inb = Some(InboundSession::new(now, peer.cfg.clone(), id));
    }

    /// Move bytes and driver commands around until nothing moves.
    fn settle(&mut self) {
        for _ in 0..100 {
            let mut moved = false;
            for from_a in [true, false] {
                moved |= self.pump_out(from_a);
                moved |= self.pump_inb(from_a);
                moved |= self.pump_tls(from_a);
            }
            if !moved {
                return;
            }
        }
        panic!("the world did not settle");
    }

    fn pump_out(&mut self, from_a: bool) -> bool {
        let (now, bytewise) = (self.now, self.bytewise);
        let (me, peer) = if from_a {
            (&mut self.a, &mut self.b)
        } else {
            (&mut self.b, &mut self.a)
        };
        let Some(o) = me.out.as_mut() else {
            return false;
        };
        let mut moved = false;
        while let Some(out) = o.poll_output() {
            moved = true;
            match out {
                Output::Transmit(b) => {
                    me.out_wire.push_str(&String::from_utf8_lossy(&b));
                    if let Some(i) = peer.inb.as_mut() {
                        deliver(i, now, &b, bytewise);
                    }
                }
                Output::VerifyResult {
                    originating,
                    receiving,
                    result,
                    ..
                } => {
                    if let Some(i) = me.inb.as_mut() {
                        let _ = i.handle_input(
                            now,
                            Input::VerifyResult {
                                originating,
                                receiving,
                                result,
                            },
                        );
                    }
                }
                Output::Bounce(e) => me.bounced.push(e),
                Output::Close(e) => me.closes.push(e),
                Output::UpgradeTls => me.out_tls_wait = true,
                _ => {}
            }
        }
        moved
    }

    /// The simulated TLS handshake on `x.out → peer.inb`, once both sides asked for it: each
    /// session gets the verdict on the other's certificate, computed by the real checks.
    fn pump_tls(&mut self, from_a: bool) -> bool {
        let now = self.now;
        let (me, peer) = if from_a {
            (&mut self.a, &mut self.b)
        } else {
            (&mut self.b, &mut self.a)
        };
        if !(me.out_tls_wait && peer.inb_tls_wait) {
            return false;
        }
        me.out_tls_wait = false;
        peer.inb_tls_wait = false;
        let client = me.leaf.as_ref().map(|l| verdict(l, PeerRole::Initiating));
        let server = peer.leaf.as_ref().map(|l| verdict(l, PeerRole::Receiving));
        if let Some(i) = peer.inb.as_mut() {
            let _ = i.handle_input(now, Input::TlsEstablished { peer: client });
        }
        if let Some(o) = me.out.as_mut() {
            let _ = o.handle_input(now, Input::TlsEstablished { peer: server });
        }
        true
    }

    fn pump_inb(&mut self, to_a: bool) -> bool {
        let (now, bytewise) = (self.now, self.bytewise);
        let id = self.next_id();
        let (me, peer) = if to_a {
            (&mut self.a, &mut self.b)
        } else {
            (&mut self.b, &mut self.a)
        };
        let Some(i) = me.inb.as_mut() else {
            return false;
        };
        let mut moved = false;
        let mut verify = Vec::new();
        while let Some(out) = i.poll_output() {
            moved = true;
            match out {
                Output::Transmit(b) => {
                    me.inb_wire.push_str(&String::from_utf8_lossy(&b));
                    if let Some(o) = peer.out.as_mut() {
                        deliver(o, now, &b, bytewise);
                    }
                }
                Output::VerifyRequest(r) => verify.push(r),
                Output::Stanza(e) => me.delivered.push(e),
                Output::Close(e) => me.closes.push(e),
                Output::UpgradeTls => me.inb_tls_wait = true,
                _ => {}
            }
        }
        // The receiving server asks the authoritative one over its own outbound stream,
        // opening it if needed (piggybacking, XEP-0220 §2.1.2).
        for r in verify {
            if me.out.as_ref().is_none_or(|o| o.is_closed()) {
                let local = me.cfg.primary().to_string();
                me.out = Some(OutboundSession::new(
                    now,
                    me.out_cfg.clone(),
                    &local,
                    &r.originating,
                ));
                peer.inb = Some(InboundSession::new(now, peer.cfg.clone(), id.clone()));
            }
            if let Some(o) = me.out.as_mut() {
                o.request_verify(now, r);
            }
        }
        moved
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
        let now = self.now;
        for s in [&mut self.a, &mut self.b] {
            if let Some(o) = s.out.as_mut()
                && o.poll_timeout().is_some_and(|t| t <= now)
            {
                let _ = o.handle_timeout(now);
            }
            if let Some(i) = s.inb.as_mut()
                && i.poll_timeout().is_some_and(|t| t <= now)
            {
                let _ = i.handle_timeout(now);
            }
        }
        self.settle();
    }
}

#[test]
fn full_dialback_both_directions_with_piggybacked_verify() {
    let mut w = World::new(cfg(&["a.test"], "secret-a"), cfg(&["b.test"], "secret-b"));
    w.send(true, "a.test", msg("juliet@a.test/r", "romeo@b.test", "hi"));
    assert_eq!(
        w.b.delivered.len(),
        1,
        "b got the message; a wire: {}",
        w.a.out_wire
    );
    assert_eq!(body(&w.b.delivered[0]), "hi");
    // B verified A's key by a db:verify on B's own outbound stream, before B's own dialback.
    assert!(w.b.out_wire.contains("<db:verify"), "{}", w.b.out_wire);
    assert!(w.a.inb_wire.contains("type='valid'"), "{}", w.a.inb_wire);
    assert!(w.b.out.as_ref().is_some_and(|o| !o.is_authorized("b.test")));

    // The reply direction runs its own dialback on the stream that carried the verify.
    w.send(
        false,
        "b.test",
        msg("romeo@b.test", "juliet@a.test/r", "hello"),
    );
    assert_eq!(w.a.delivered.len(), 1);
    assert_eq!(body(&w.a.delivered[0]), "hello");
    let bw = &w.b.out_wire;
    let (v, r) = (
        bw.find("<db:verify").unwrap_or(usize::MAX),
        bw.find("<db:result").unwrap_or(0),
    );
    assert!(v < r, "verify piggybacked before our own db:result: {bw}");
    assert!(w.a.bounced.is_empty() && w.b.bounced.is_empty());
    // XEP-0185: B's key is bound to the id A's inbound session gave B's stream.
    let id =
        w.a.inb
            .as_ref()
            .map(|i| i.stream_id().to_string())
            .unwrap_or_default();
    let key_b = dialback::key("secret-b", "a.test", "b.test", &id);
    let want = format!("<db:result from='b.test' to='a.test'>{key_b}</db:result>");
    assert!(w.b.out_wire.contains(&want), "{want} in {}", w.b.out_wire);
}

#[test]
fn full_dialback_survives_byte_by_byte_delivery() {
    let mut w = World::new(cfg(&["a.test"], "secret-a"), cfg(&["b.test"], "secret-b"));
    w.bytewise = true;
    w.send(
        true,
        "a.test",
        msg("juliet@a.test", "romeo@b.test", "one <&> byte"),
    );
    w.send(
        false,
        "b.test",
        msg("romeo@b.test", "juliet@a.test", "back"),
    );
    assert_eq!(
        w.b.delivered.iter().map(body).collect::<Vec<_>>(),
        ["one <&> byte"]
    );
    assert_eq!(w.a.delivered.iter().map(body).collect::<Vec<_>>(), ["back"]);
}

#[test]
fn queued_stanzas_flush_in_order() {
    let mut w = World::new(cfg(&["a.test"], "s"), cfg(&["b.test"], "t"));
    w.ensure_out(true);
    let now = w.now;
    if let Some(o) = w.a.out.as_mut() {
        for i in 0..3 {
            o.send_stanza(now, "a.test", msg("u@a.test", "v@b.test", &i.to_string()));
        }
    }
    w.settle();
    let got: Vec<String> = w.b.delivered.iter().map(body).collect();
    assert_eq!(got, ["0", "1", "2"]);
    // DB-02: one db:result for the pair, not one per stanza.
    assert_eq!(w.a.out_wire.matches("<db:result").count(), 1);
}

#[test]
fn invalid_key_bounces_with_internal_server_error_and_closes() {
    let mut w = World::new(cfg(&["a.test"], "right"), cfg(&["b.test"], "t"));
    w.a.out_cfg = cfg(&["a.test"], "wrong");
    w.send(true, "a.test", msg("u@a.test", "v@b.test", "x"));
    assert!(w.b.delivered.is_empty());
    assert!(w.b.inb_wire.contains("type='invalid'"), "{}", w.b.inb_wire);
    assert!(w.b.inb_wire.ends_with("</stream:stream>"));
    assert_eq!(w.a.bounced.len(), 1);
    assert!(
        w.a.bounced[0]
            .to_xml(&s2s_write_ctx())
            .contains("internal-server-error")
    );
    assert_eq!(w.a.bounced[0].attr("to"), Some("u@a.test"));
}

#[test]
fn multiplexed_sender_domains_are_verified_separately() {
    let mut w = World::new(cfg(&["a.test", "conf.a.test"], "s"), cfg(&["b.test"], "t"));
    w.send(true, "a.test", msg("u@a.test", "v@b.test", "1"));
    w.send(
        true,
        "conf.a.test",
        msg("room@conf.a.test/n", "v@b.test", "2"),
    );
    assert_eq!(
        w.b.delivered.iter().map(body).collect::<Vec<_>>(),
        ["1", "2"]
    );
    assert_eq!(w.a.out_wire.matches("<db:result").count(), 2);
    let pairs: Vec<(String, String)> =
        w.b.inb
            .as_ref()
            .map(|i| {
                i.verified_pairs()
                    .map(|(o, r)| (o.to_string(), r.to_string()))
                    .collect()
            })
            .unwrap_or_default();
    assert_eq!(pairs.len(), 2, "{pairs:?}");
}

#[test]
fn dialback_timeout_bounces_with_remote_server_timeout() {
    let mut w = World::new(cfg(&["a.test"], "s"), cfg(&["b.test"], "t"));
    w.ensure_out(true);
    let now = w.now;
    // Swallow B's verify request: no answer ever comes back.
    if let Some(o) = w.a.out.as_mut() {
        o.send_stanza(now, "a.test", msg("u@a.test", "v@b.test", "x"));
    }
    // Move only A's bytes to B, drop B's VerifyRequest.
    while let Some(out) = w.a.out.as_mut().and_then(|o| o.poll_output()) {
        if let (Output::Transmit(b), Some(i)) = (out, w.b.inb.as_mut()) {
            let _ = i.handle_input(now, Input::Data(&b));
        }
    }
    while let Some(out) = w.b.inb.as_mut().and_then(|i| i.poll_output()) {
        if let (Output::Transmit(b), Some(o)) = (out, w.a.out.as_mut()) {
            let _ = o.handle_input(now, Input::Data(&b));
        }
    }
    w.advance(Duration::from_secs(6));
    // B's own verification timer fires first (same timeout) and reports an error; either
    // way A bounces with remote-server-timeout (DB-04).
    assert_eq!(w.a.bounced.len(), 1);
    assert!(
        w.a.bounced[0]
            .to_xml(&s2s_write_ctx())
            .contains("remote-server-timeout")
    );
}

/// One session driven with hand-written bytes.
struct Raw<S> {
    s: S,
    now: Instant,
    wire: String,
    outs: Vec<Output>,
}

impl<S: Session> Raw<S> {
    fn new(s: S, now: Instant) -> Self {
        let mut r = Raw {
            s,
            now,
            wire: String::new(),
            outs: vec![],
        };
        r.drain();
        r
    }
    fn drain(&mut self) {
        while let Some(o) = self.s.output() {
            match o {
                Output::Transmit(b) => self.wire.push_str(&String::from_utf8_lossy(&b)),
                o => self.outs.push(o),
            }
        }
    }
    fn feed(&mut self, s: &str) -> Result<(), Error> {
        let r = self.s.input(self.now, Input::Data(s.as_bytes()));
        self.drain();
        r
    }
    fn verdict(&mut self, o: &str, r: &str, v: Verdict) {
        let _ = self.s.input(
            self.now,
            Input::VerifyResult {
                originating: o.into(),
                receiving: r.into(),
                result: v,
            },
        );
        self.drain();
    }
    fn take_wire(&mut self) -> String {
        std::mem::take(&mut self.wire)
    }
    fn stanzas(&self) -> usize {
        self.outs
            .iter()
            .filter(|o| matches!(o, Output::Stanza(_)))
            .count()
    }
    fn closed_with(&self) -> Option<Option<StreamCondition>> {
        self.outs.iter().find_map(|o| match o {
            Output::Close(e) => Some(e.as_ref().map(|e| e.condition)),
            _ => None,
        })
    }
    fn advance(&mut self, d: Duration) {
        self.now += d;
        let _ = self.s.fire(self.now);
        self.drain();
    }
}

const HDR_B: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:server' \
    xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' \
    from='a.test' to='b.test' version='1.0'>";

fn inbound_b() -> Raw<InboundSession> {
    let now = Instant::now();
    Raw::new(
        InboundSession::new(now, cfg(&["b.test"], "t"), "ID1".into()),
        now,
    )
}

/// Inbound stream with (a.test → b.test) verified.
fn verified_inbound() -> Raw<InboundSession> {
    let mut r = inbound_b();
    r.feed(HDR_B).ok();
    r.feed("<db:result from='a.test' to='b.test'>k</db:result>")
        .ok();
    assert!(
        matches!(r.outs.last(), Some(Output::VerifyRequest(v)) if v.stream_id == "ID1" && v.key == "k")
    );
    r.verdict("a.test", "b.test", Verdict::Valid);
    assert!(
        r.take_wire()
            .contains("<db:result from='b.test' to='a.test' type='valid'/>")
    );
    r
}

#[test]
fn response_header_and_features() {
    let mut r = inbound_b();
    r.feed(HDR_B).ok();
    let w = r.take_wire();
    for part in [
        "from='b.test'",
        "to='a.test'",
        "id='ID1'",
        "version='1.0'",
        "xml:lang='en'",
        "xmlns:db='jabber:server:dialback'",
        "<stream:features><dialback xmlns='urn:xmpp:features:dialback'><errors/></dialback></stream:features>",
    ] {
        assert!(w.contains(part), "{part} missing in {w}");
    }
}

#[test]
fn version_1_10_gets_1_0() {
    let mut r = inbound_b();
    r.feed(&HDR_B.replace("version='1.0'>", "version='1.10'>"))
        .ok();
    let w = r.take_wire();
    assert!(
        w.contains("version='1.0'") && w.contains("<stream:features>"),
        "{w}"
    );
}

#[test]
fn legacy_header_gets_no_version_nor_features_and_dialback_works() {
    let mut r = inbound_b();
    r.feed(&HDR_B.replace(" version='1.0'>", ">")).ok();
    let w = r.take_wire();
    assert!(
        !w.contains("version='1.0'>") && !w.contains("<stream:features"),
        "{w}"
    );
    r.feed("<db:result from='a.test' to='b.test'>k</db:result>")
        .ok();
    r.verdict("a.test", "b.test", Verdict::Valid);
    r.feed("<message from='u@a.test' to='v@b.test'/>").ok();
    assert_eq!(r.stanzas(), 1);
}

#[rstest::rstest]
#[case::unserved_to(HDR_B.replace("to='b.test'", "to='c.test'"), StreamCondition::HostUnknown)]
#[case::client_ns(HDR_B.replace("xmlns='jabber:server'", "xmlns='jabber:client'"), StreamCondition::InvalidNamespace)]
#[case::bad_stream_ns(HDR_B.replace("xmlns:stream='http://etherx.jabber.org/streams'", "xmlns:stream='urn:wrong'"), StreamCondition::InvalidNamespace)]
#[case::bad_version(HDR_B.replace("version='1.0'>", "version='one'>"), StreamCondition::UnsupportedVersion)]
fn header_errors_come_after_a_response_header(#[case] hdr: String, #[case] c: StreamCondition) {
    let mut r = inbound_b();
    assert!(r.feed(&hdr).is_err());
    let w = r.take_wire();
    // STR-08: header, then the error, then the close.
    let h = w.find("<stream:stream").unwrap_or(usize::MAX);
    let e = w.find(&format!("<{}", c.as_str())).unwrap_or(0);
    assert!(h < e && w.ends_with("</stream:stream>"), "{w}");
    assert_eq!(r.closed_with(), Some(Some(c)));
    if c == StreamCondition::HostUnknown {
        assert!(
            w.contains("from='b.test'"),
            "STR-09: an authoritative from: {w}"
        );
    }
    // A failed session stays failed.
    assert!(
        r.feed("<db:result from='a.test' to='b.test'>k</db:result>")
            .is_err()
    );
    assert!(r.take_wire().is_empty());
}

#[test]
fn stanza_before_auth_is_not_authorized_and_not_processed() {
    let mut r = inbound_b();
    r.feed(HDR_B).ok();
    assert!(
        r.feed("<message from='u@a.test' to='v@b.test'><body>x</body></message>")
            .is_err()
    );
    assert_eq!(r.stanzas(), 0);
    assert_eq!(r.closed_with(), Some(Some(StreamCondition::NotAuthorized)));
}

#[test]
fn stanza_while_verifying_is_not_authorized() {
    let mut r = inbound_b();
    r.feed(HDR_B).ok();
    r.feed("<db:result from='a.test' to='b.test'>k</db:result>")
        .ok();
    assert!(r.feed("<message from='u@a.test' to='v@b.test'/>").is_err());
    assert_eq!(r.stanzas(), 0);
}

#[rstest::rstest]
#[case::forged_from(
    "<message from='u@evil.test' to='v@b.test'/>",
    StreamCondition::InvalidFrom
)]
#[case::unknown_to(
    "<message from='u@a.test' to='v@other.test'/>",
    StreamCondition::HostUnknown
)]
#[case::no_from("<message to='v@b.test'/>", StreamCondition::ImproperAddressing)]
#[case::bad_to(
    "<iq type='get' id='1' from='u@a.test' to='@b.test'/>",
    StreamCondition::ImproperAddressing
)]
#[case::unknown_element("<foo xmlns='urn:x'/>", StreamCondition::UnsupportedStanzaType)]
#[case::client_ns_stanza(
    "<message xmlns='jabber:client' from='u@a.test' to='v@b.test'/>",
    StreamCondition::InvalidNamespace
)]
#[case::garbage("<a></b>", StreamCondition::NotWellFormed)]
fn addressing_and_content_errors(#[case] input: &str, #[case] c: StreamCondition) {
    let mut r = verified_inbound();
    assert!(r.feed(input).is_err());
    assert_eq!(r.stanzas(), 0);
    assert_eq!(r.closed_with(), Some(Some(c)));
    let w = r.take_wire();
    assert!(
        w.contains(&format!(
            "<{} xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>",
            c.as_str()
        )),
        "{w}"
    );
}

#[test]
fn verified_pair_passes_stanzas() {
    let mut r = verified_inbound();
    r.feed("<message from='u@a.test/r' to='v@b.test'><body>x</body></message> ")
        .ok();
    assert_eq!(r.stanzas(), 1);
}

#[test]
fn db_result_for_unknown_domain_is_item_not_found_and_stream_stays_open() {
    let mut r = inbound_b();
    r.feed(HDR_B).ok();
    r.take_wire();
    r.feed("<db:result from='a.test' to='c.test'>k</db:result>")
        .ok();
    let w = r.take_wire();
    assert!(
        w.contains("type='error'") && w.contains("<item-not-found"),
        "{w}"
    );
    assert!(w.contains("from='c.test' to='a.test'"), "{w}");
    assert_eq!(r.closed_with(), None);
    r.feed("<db:result from='a.test' to='b.test'>k</db:result>")
        .ok();
    assert!(r.outs.iter().any(|o| matches!(o, Output::VerifyRequest(_))));
}

#[test]
fn invalid_with_other_verified_pair_is_forbidden_and_keeps_stream() {
    let mut r = verified_inbound();
    r.feed("<db:result from='conf.a.test' to='b.test'>k2</db:result>")
        .ok();
    r.verdict("conf.a.test", "b.test", Verdict::Invalid);
    let w = r.take_wire();
    assert!(
        w.contains("<forbidden") && !w.contains("</stream:stream>"),
        "{w}"
    );
    r.feed("<message from='u@a.test' to='v@b.test'/>").ok();
    assert_eq!(r.stanzas(), 1);
}

#[test]
fn verify_error_is_relayed_as_dialback_error() {
    let mut r = inbound_b();
    r.feed(HDR_B).ok();
    r.feed("<db:result from='a.test' to='b.test'>k</db:result>")
        .ok();
    r.take_wire();
    r.verdict(
        "a.test",
        "b.test",
        Verdict::Error(StanzaCondition::RemoteServerNotFound),
    );
    let w = r.take_wire();
    assert!(
        w.contains("type='error'") && w.contains("remote-server-not-found"),
        "{w}"
    );
    // An answer for a pair that is no longer pending is dropped silently.
    r.verdict("a.test", "b.test", Verdict::Valid);
    assert!(r.take_wire().is_empty());
}

#[rstest::rstest]
#[case::valid("b.test", "a.test", "ID9", true, "type='valid'")]
#[case::wrong_id("b.test", "a.test", "ID8", false, "type='invalid'")]
#[case::swapped("a.test", "b.test", "ID9", false, "type='invalid'")]
fn authoritative_answers_db_verify(
    #[case] recv: &str,
    #[case] orig: &str,
    #[case] key_id: &str,
    #[case] _ok: bool,
    #[case] want: &str,
) {
    // We are a.test's authoritative server; b.test asks about a key for stream ID9.
    let now = Instant::now();
    let mut r = Raw::new(
        InboundSession::new(now, cfg(&["a.test"], "s"), "X".into()),
        now,
    );
    r.feed(&HDR_B.replace("from='a.test' to='b.test'", "from='b.test' to='a.test'"))
        .ok();
    r.take_wire();
    let key = dialback::key("s", recv, orig, key_id);
    r.feed(&format!(
        "<db:verify from='b.test' to='a.test' id='ID9'>{key}</db:verify>"
    ))
    .ok();
    let w = r.take_wire();
    assert!(
        w.contains(want) && w.contains("from='a.test' to='b.test' id='ID9'"),
        "{w}"
    );
}

#[test]
fn authoritative_unknown_domain_is_item_not_found() {
    let now = Instant::now();
    let mut r = Raw::new(
        InboundSession::new(now, cfg(&["a.test"], "s"), "X".into()),
        now,
    );
    r.feed(&HDR_B.replace("from='a.test' to='b.test'", "from='b.test' to='a.test'"))
        .ok();
    r.take_wire();
    r.feed("<db:verify from='b.test' to='z.test' id='I'>k</db:verify>")
        .ok();
    let w = r.take_wire();
    assert!(
        w.contains("item-not-found") && !w.contains("</stream:stream>"),
        "{w}"
    );
}

#[test]
fn peer_close_is_answered() {
    let mut r = verified_inbound();
    r.feed("</stream:stream>").ok();
    assert_eq!(r.take_wire(), "</stream:stream>");
    assert_eq!(r.closed_with(), Some(None));
}

#[test]
fn establishment_timeout_closes_stalled_stream() {
    let mut r = inbound_b();
    r.feed(HDR_B).ok();
    r.advance(Duration::from_secs(11));
    assert_eq!(
        r.closed_with(),
        Some(Some(StreamCondition::ConnectionTimeout))
    );
}

// ---- outbound, driven by hand ----

const RESP_HDR: &str = "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' \
    xmlns:db='jabber:server:dialback' from='b.test' to='a.test' id='RID' version='1.0'>";
const FEATURES: &str = "<stream:features><dialback xmlns='urn:xmpp:features:dialback'><errors/></dialback></stream:features>";

fn outbound_a() -> Raw<OutboundSession> {
    let now = Instant::now();
    Raw::new(
        OutboundSession::new(now, cfg(&["a.test"], "s"), "a.test", "b.test"),
        now,
    )
}

fn bounces(r: &Raw<OutboundSession>) -> Vec<String> {
    r.outs
        .iter()
        .filter_map(|o| match o {
            Output::Bounce(e) => e
                .elements()
                .next()
                .and_then(|er| er.elements().next())
                .map(|c| c.name.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn initial_header_is_str01() {
    let mut r = outbound_a();
    let w = r.take_wire();
    assert!(
        w.contains("to='b.test'") && w.contains("from='a.test'") && w.contains("version='1.0'")
    );
    assert!(
        w.contains("xmlns:db='jabber:server:dialback'") && !w.contains(" id="),
        "{w}"
    );
}

#[test]
fn db_result_waits_for_features_and_carries_the_key() {
    let mut r = outbound_a();
    r.take_wire();
    let now = r.now;
    r.s.send_stanza(now, "a.test", msg("u@a.test", "v@b.test", "x"));
    r.drain();
    r.feed(RESP_HDR).ok();
    assert!(
        !r.take_wire().contains("db:result"),
        "DB-02: not before features"
    );
    r.feed(FEATURES).ok();
    let key = dialback::key("s", "b.test", "a.test", "RID");
    assert_eq!(
        r.take_wire(),
        format!("<db:result from='a.test' to='b.test'>{key}</db:result>")
    );
    r.feed("<db:result from='b.test' to='a.test' type='valid'/>")
        .ok();
    assert!(
        r.take_wire().starts_with("<message"),
        "DB-03: flushed after valid"
    );
    assert!(r.s.is_authorized("a.test"));
}

#[rstest::rstest]
#[case::error(
    "<db:result from='b.test' to='a.test' type='error'><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></db:result>",
    "remote-server-timeout"
)]
#[case::invalid(
    "<db:result from='b.test' to='a.test' type='invalid'/>",
    "internal-server-error"
)]
#[case::closed("</stream:stream>", "remote-server-timeout")]
fn outcomes_bounce_held_stanzas(#[case] answer: &str, #[case] cond: &str) {
    let mut r = outbound_a();
    let now = r.now;
    r.feed(RESP_HDR).ok();
    r.feed(FEATURES).ok();
    r.s.send_stanza(now, "a.test", msg("u@a.test", "v@b.test", "1"));
    r.s.send_stanza(now, "a.test", msg("u@a.test", "v@b.test", "2"));
    r.drain();
    r.feed(answer).ok();
    assert_eq!(bounces(&r), [cond, cond]);
    assert!(!r.take_wire().contains("<message"));
}

#[test]
fn unsolicited_results_are_ignored() {
    let mut r = outbound_a();
    r.feed(RESP_HDR).ok();
    r.feed(FEATURES).ok();
    // DB-05: a valid result we never asked for.
    r.feed("<db:result from='b.test' to='a.test' type='valid'/>")
        .ok();
    assert!(!r.s.is_authorized("a.test"));
    // DB-11: a verify answer we never asked for.
    r.feed("<db:verify from='b.test' to='a.test' id='RID' type='valid'/>")
        .ok();
    assert!(
        !r.outs
            .iter()
            .any(|o| matches!(o, Output::VerifyResult { .. }))
    );
    assert_eq!(r.closed_with(), None);
}

#[test]
fn piggybacked_verify_before_ready_and_matching() {
    let mut r = outbound_a();
    r.take_wire();
    let now = r.now;
    let req = VerifyRequest {
        originating: "b.test".into(),
        receiving: "a.test".into(),
        stream_id: "IN7".into(),
        key: "K".into(),
    };
    r.s.request_verify(now, req);
    r.drain();
    assert!(r.take_wire().is_empty(), "held until the stream is ready");
    r.feed(RESP_HDR).ok();
    r.feed(FEATURES).ok();
    assert_eq!(
        r.take_wire(),
        "<db:verify from='a.test' to='b.test' id='IN7'>K</db:verify>"
    );
    // Wrong id: ignored (DB-11); right one: reported.
    r.feed("<db:verify from='b.test' to='a.test' id='IN8' type='valid'/>")
        .ok();
    r.feed("<db:verify from='b.test' to='a.test' id='IN7' type='valid'/>")
        .ok();
    let results: Vec<_> = r
        .outs
        .iter()
        .filter(|o| matches!(o, Output::VerifyResult { .. }))
        .collect();
    assert_eq!(results.len(), 1);
    assert!(
        matches!(results[0], Output::VerifyResult { result: Verdict::Valid, stream_id, .. } if stream_id == "IN7")
    );
}

#[test]
fn verify_timeout_reports_error() {
    let mut r = outbound_a();
    let now = r.now;
    r.feed(RESP_HDR).ok();
    r.feed(FEATURES).ok();
    let req = VerifyRequest {
        originating: "b.test".into(),
        receiving: "a.test".into(),
        stream_id: "I".into(),
        key: "K".into(),
    };
    r.s.request_verify(now, req);
    r.advance(Duration::from_secs(6));
    assert!(r.outs.iter().any(|o| matches!(
        o,
        Output::VerifyResult {
            result: Verdict::Error(StanzaCondition::RemoteServerTimeout),
            ..
        }
    )));
}

#[test]
fn stanza_on_outbound_stream_is_refused() {
    let mut r = outbound_a();
    r.feed(RESP_HDR).ok();
    r.feed(FEATURES).ok();
    assert!(r.feed("<message from='v@b.test' to='u@a.test'/>").is_err());
    assert_eq!(r.closed_with(), Some(Some(StreamCondition::NotAuthorized)));
    assert_eq!(r.stanzas(), 0);
}

#[test]
fn legacy_response_header_starts_dialback_without_features() {
    let mut r = outbound_a();
    r.take_wire();
    let now = r.now;
    r.s.send_stanza(now, "a.test", msg("u@a.test", "v@b.test", "x"));
    r.drain();
    r.feed(&RESP_HDR.replace(" version='1.0'", "")).ok();
    assert!(r.take_wire().starts_with("<db:result"));
}

#[test]
fn required_starttls_fails_the_stream_and_bounces() {
    let mut r = outbound_a();
    let now = r.now;
    r.s.send_stanza(now, "a.test", msg("u@a.test", "v@b.test", "x"));
    r.drain();
    r.feed(RESP_HDR).ok();
    let _ = r.feed("<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls></stream:features>");
    assert_eq!(bounces(&r), ["remote-server-timeout"]);
    assert!(r.s.is_closed());
}

// ---- XEP-0114 ----

fn component_pair(secret_used: &str) -> (Raw<ComponentSession>, Raw<ComponentClient>) {
    let now = Instant::now();
    let creds = vec![ComponentCredentials {
        domain: "gw.a.test".into(),
        secret: "sekrit".into(),
    }];
    let server = ComponentSession::new(
        now,
        creds,
        "CID".into(),
        Default::default(),
        Duration::from_secs(5),
    );
    let client = ComponentClient::new(
        now,
        "gw.a.test",
        secret_used,
        Default::default(),
        Duration::from_secs(5),
    );
    (Raw::new(server, now), Raw::new(client, now))
}

fn shuttle(s: &mut Raw<ComponentSession>, c: &mut Raw<ComponentClient>) {
    for _ in 0..10 {
        let (a, b) = (c.take_wire(), s.take_wire());
        if a.is_empty() && b.is_empty() {
            return;
        }
        if !a.is_empty() {
            let _ = s.feed(&a);
        }
        if !b.is_empty() {
            let _ = c.feed(&b);
        }
    }
}

#[test]
fn component_handshake_ok_and_stanzas_both_ways() {
    let (mut s, mut c) = component_pair("sekrit");
    c.s.send_stanza(msg("sip@gw.a.test", "v@b.test", "queued"));
    shuttle(&mut s, &mut c);
    assert!(c.s.is_ready());
    assert_eq!(s.s.domain(), Some("gw.a.test"));
    assert!(s.outs.contains(&Output::ComponentReady("gw.a.test".into())));
    // Stanzas from the component leave in jabber:server for the router.
    let got: Vec<&Element> = s
        .outs
        .iter()
        .filter_map(|o| {
            if let Output::Stanza(e) = o {
                Some(e)
            } else {
                None
            }
        })
        .collect();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].ns, ns::SERVER);
    assert_eq!(body(got[0]), "queued");
    assert!(
        s.s.send_stanza(msg("v@b.test", "sip@gw.a.test", "back"))
            .is_ok()
    );
    s.drain();
    shuttle(&mut s, &mut c);
    assert!(
        c.outs
            .iter()
            .any(|o| matches!(o, Output::Stanza(e) if body(e) == "back"))
    );
    assert_eq!(handshake_digest("CID", "sekrit").len(), 40);
}

#[test]
fn component_bad_handshake_is_not_authorized() {
    let (mut s, mut c) = component_pair("wrong");
    shuttle(&mut s, &mut c);
    assert!(!c.s.is_ready());
    assert_eq!(s.closed_with(), Some(Some(StreamCondition::NotAuthorized)));
}

#[rstest::rstest]
#[case::forged_from(
    "<message from='x@evil.test' to='v@b.test'/>",
    StreamCondition::InvalidFrom
)]
#[case::no_to("<message from='x@gw.a.test'/>", StreamCondition::ImproperAddressing)]
fn component_from_must_be_its_domain(#[case] st: &str, #[case] c: StreamCondition) {
    let (mut s, mut cl) = component_pair("sekrit");
    shuttle(&mut s, &mut cl);
    assert!(s.feed(st).is_err());
    assert_eq!(s.closed_with(), Some(Some(c)));
}

#[test]
fn component_unknown_domain_is_host_unknown() {
    let now = Instant::now();
    let mut s = Raw::new(
        ComponentSession::new(
            now,
            vec![],
            "CID".into(),
            Default::default(),
            Duration::from_secs(5),
        ),
        now,
    );
    let _ = s.feed("<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' to='gw.a.test'>");
    let w = s.take_wire();
    assert!(w.starts_with("<?xml") && w.contains("host-unknown"), "{w}");
}

#[test]
fn component_stanza_before_handshake_is_not_authorized() {
    let now = Instant::now();
    let creds = vec![ComponentCredentials {
        domain: "gw.a.test".into(),
        secret: "x".into(),
    }];
    let mut s = Raw::new(
        ComponentSession::new(
            now,
            creds,
            "CID".into(),
            Default::default(),
            Duration::from_secs(5),
        ),
        now,
    );
    let _ = s.feed("<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' to='gw.a.test'>");
    assert!(
        s.feed("<message from='a@gw.a.test' to='b@b.test'/>")
            .is_err()
    );
    assert_eq!(s.closed_with(), Some(Some(StreamCondition::NotAuthorized)));
}

// ---- TLS, SASL EXTERNAL and per-partner policy (TLS is simulated: the sessions never do
// crypto, the World feeds TlsEstablished with the verdict real checks give on real test
// certificates) ----

fn test_ca() -> &'static TestCa {
    static CA: std::sync::OnceLock<TestCa> = std::sync::OnceLock::new();
    CA.get_or_init(|| TestCa::new("s2s tests CA").expect("CA"))
}

/// What a driver computes on `leaf` presented by a peer in `role`.
fn verdict(leaf: &Leaf, role: PeerRole) -> CertVerdict {
    let (anchors, _) = identity::anchors_from(&[test_ca().cert()]);
    crate::tls::verify_peer(
        &leaf.cert_chain(),
        &anchors,
        std::time::SystemTime::now(),
        role,
    )
}

fn tls_cfg(domain: &str, secret: &str, p: PartnerPolicy) -> Arc<LocalConfig> {
    Arc::new(LocalConfig {
        policies: Policies::uniform(p),
        tls: TlsAbility {
            server: true,
            client_cert: true,
        },
        ..local_cfg(&[domain], secret)
    })
}

const OPT: PartnerPolicy = PartnerPolicy {
    tls: Negotiation::Optional,
    sasl: Negotiation::Optional,
    dialback: true,
    keepalive: false,
};

fn tls_world(pa: PartnerPolicy, pb: PartnerPolicy) -> World {
    let mut w = World::new(tls_cfg("a.test", "sa", pa), tls_cfg("b.test", "sb", pb));
    w.a.leaf = Some(test_ca().valid("a.test").expect("leaf"));
    w.b.leaf = Some(test_ca().valid("b.test").expect("leaf"));
    w
}

/// The `id='…'` values of the stream headers in `wire`, in order.
fn header_ids(wire: &str) -> Vec<String> {
    wire.split("<stream:stream")
        .skip(1)
        .filter_map(|h| {
            let h = h.split('>').next()?;
            let i = h.find(" id='")? + 5;
            Some(h.get(i..)?.split('\'').next()?.to_string())
        })
        .collect()
}

/// The `<stream:features…>` blocks in `wire`, in order.
fn feature_sets(wire: &str) -> Vec<String> {
    wire.match_indices("<stream:features")
        .filter_map(|(i, _)| {
            let rest = wire.get(i..)?;
            let end = if rest.starts_with("<stream:features/>") {
                "<stream:features/>".len()
            } else {
                rest.find("</stream:features>")? + "</stream:features>".len()
            };
            rest.get(..end).map(str::to_string)
        })
        .collect()
}

#[test]
fn starttls_then_sasl_external_both_directions() {
    let mut w = tls_world(OPT, OPT);
    w.send(true, "a.test", msg("juliet@a.test/r", "romeo@b.test", "hi"));
    assert_eq!(w.b.delivered.len(), 1, "a wire: {}", w.a.out_wire);
    let (aw, bw) = (&w.a.out_wire, &w.b.inb_wire);
    // TLS-01/TLS-02, SASL-10: STARTTLS, then EXTERNAL with base64(a.test) as authzid.
    assert!(
        aw.contains("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"),
        "{aw}"
    );
    assert!(
        aw.contains(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>YS50ZXN0</auth>"
        ),
        "{aw}"
    );
    assert!(!aw.contains("db:result"), "no dialback needed: {aw}");
    assert!(bw.contains("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"));
    assert!(bw.contains("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>"));
    // STR-05: three streams, three different ids.
    let ids = header_ids(bw);
    assert_eq!(ids.len(), 3, "{bw}");
    assert!(
        ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2],
        "{ids:?}"
    );
    // TLS-01, SASL-01, SASL-02, SASL-07: features before TLS, after TLS, after SASL.
    let f = feature_sets(bw);
    assert_eq!(f.len(), 3, "{bw}");
    assert!(
        f[0].contains("<starttls") && !f[0].contains("<required/>") && !f[0].contains("mechanisms")
    );
    assert!(!f[1].contains("starttls") && f[1].contains("<mechanism>EXTERNAL</mechanism>"));
    assert_eq!(f[2], "<stream:features/>");
    // A's outbound sent one header per stream.
    assert_eq!(aw.matches("<stream:stream").count(), 3, "{aw}");
    let o = w.a.out.as_ref().expect("out");
    assert!(o.is_encrypted() && o.sasl_authenticated() && o.is_authorized("a.test"));
    let i = w.b.inb.as_ref().expect("inb");
    assert_eq!(i.sasl_authenticated(), Some("a.test"));

    // And back: B's own outbound does the same.
    w.send(
        false,
        "b.test",
        msg("romeo@b.test", "juliet@a.test/r", "hello"),
    );
    assert_eq!(w.a.delivered.len(), 1);
    assert!(
        w.b.out_wire
            .contains("mechanism='EXTERNAL'>Yi50ZXN0</auth>")
    );
    assert!(w.a.bounced.is_empty() && w.b.bounced.is_empty());
}

#[test]
fn tls_handshake_survives_byte_by_byte_delivery() {
    let mut w = tls_world(OPT, OPT);
    w.bytewise = true;
    w.send(true, "a.test", msg("juliet@a.test/r", "romeo@b.test", "hi"));
    assert_eq!(w.b.delivered.len(), 1, "{}", w.b.inb_wire);
}

#[test]
fn wrong_name_certificate_falls_back_to_dialback_over_tls() {
    // D-17 / SASL-02: A's certificate lacks a.test, so B offers no EXTERNAL; dialback over
    // TLS authenticates the stream instead.
    let mut w = tls_world(OPT, OPT);
    w.a.leaf = Some(test_ca().wrong_name("a.test").expect("leaf"));
    w.send(true, "a.test", msg("juliet@a.test/r", "romeo@b.test", "hi"));
    assert_eq!(w.b.delivered.len(), 1, "{}", w.b.inb_wire);
    let f = feature_sets(&w.b.inb_wire);
    assert!(
        !f[1].contains("mechanisms") && f[1].contains("<dialback"),
        "{f:?}"
    );
    let aw = &w.a.out_wire;
    let (tls, db) = (
        aw.find("<starttls").unwrap_or(usize::MAX),
        aw.find("<db:result").unwrap_or(0),
    );
    assert!(tls < db, "dialback only after TLS: {aw}");
    assert!(!aw.contains("<auth"));
}

#[rstest::rstest]
#[case::untrusted("untrusted")]
#[case::expired("expired")]
#[case::no_client_auth("no_client_auth")]
#[case::none("none")]
fn bad_certificates_get_no_external(#[case] which: &str) {
    let mut w = tls_world(OPT, OPT);
    w.a.leaf = match which {
        "untrusted" => Some(crate::tls::pki::untrusted("a.test").expect("leaf")),
        "expired" => Some(test_ca().expired("a.test").expect("leaf")),
        "no_client_auth" => Some(test_ca().no_client_auth("a.test").expect("leaf")),
        _ => None,
    };
    w.send(true, "a.test", msg("juliet@a.test/r", "romeo@b.test", "hi"));
    assert_eq!(w.b.delivered.len(), 1, "dialback over TLS still works");
    assert!(!w.b.inb_wire.contains("EXTERNAL"), "{}", w.b.inb_wire);
    assert!(w.a.out_wire.contains("<db:result"));
}

#[test]
fn sasl_required_without_a_matching_certificate_is_policy_violation() {
    // SASL-09, MS-07: SASL required, no acceptable certificate, dialback not enough.
    let strict = PartnerPolicy {
        sasl: Negotiation::Required,
        ..OPT
    };
    let mut w = tls_world(OPT, strict);
    w.a.leaf = Some(test_ca().wrong_name("a.test").expect("leaf"));
    w.send(true, "a.test", msg("juliet@a.test/r", "romeo@b.test", "hi"));
    assert!(w.b.delivered.is_empty());
    assert_eq!(
        w.b.closes,
        [Some(StreamError::new(StreamCondition::PolicyViolation))]
    );
    assert_eq!(w.a.bounced.len(), 1);
    // Before TLS nothing but a required STARTTLS was offered (TLS-01 SHOULD).
    let f = feature_sets(&w.b.inb_wire);
    assert_eq!(
        f[0],
        "<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls></stream:features>"
    );
}

#[test]
fn tls_required_receiver_and_dialback_only_initiator_do_not_federate() {
    // MS-06: B requires TLS (features: a required STARTTLS and nothing else); A, in the
    // Google Talk profile, may not do TLS and gives up without trying dialback.
    let required = PartnerPolicy {
        tls: Negotiation::Required,
        ..OPT
    };
    let mut w = World::new(
        tls_cfg("a.test", "sa", PartnerPolicy::DIALBACK_ONLY),
        tls_cfg("b.test", "sb", required),
    );
    w.send(true, "a.test", msg("juliet@a.test/r", "romeo@b.test", "hi"));
    assert!(w.b.delivered.is_empty());
    assert!(!w.a.out_wire.contains("<starttls") && !w.a.out_wire.contains("<db:result"));
    let bounced = w.a.bounced[0].to_xml(&s2s_write_ctx());
    assert!(bounced.contains("remote-server-timeout"), "{bounced}");
}

#[test]
fn dialback_before_required_tls_gets_policy_violation_dialback_error() {
    // DB-14: TLS required, the peer skips it and sends <db:result> in the clear.
    let required = PartnerPolicy {
        tls: Negotiation::Required,
        ..OPT
    };
    let mut r = inbound_tls(required);
    r.feed(&HDR_TLS.replace(
        "<stream:stream",
        "<stream:stream xmlns:db='jabber:server:dialback'",
    ))
    .ok();
    r.take_wire();
    r.feed("<db:result from='a.test' to='b.test'>k</db:result>")
        .ok();
    assert_eq!(
        r.take_wire(),
        "<db:result from='b.test' to='a.test' type='error'><error type='modify'><policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></db:result>"
    );
    assert!(!r.s.is_closed(), "the stream stays open (XEP-0220 §2.5)");
    assert!(!r.outs.iter().any(|o| matches!(o, Output::VerifyRequest(_))));
}

#[test]
fn initiator_requiring_tls_tries_unadvertised_starttls_and_gives_up_on_failure() {
    // TLS-08 / D-09: B advertises no STARTTLS (NotSupported); A requires TLS and tries it
    // anyway; B answers <failure/> and closes (TLS-02).
    let required = PartnerPolicy {
        tls: Negotiation::Required,
        ..OPT
    };
    let mut w = World::new(
        tls_cfg("a.test", "sa", required),
        tls_cfg("b.test", "sb", PartnerPolicy::DIALBACK_ONLY),
    );
    w.send(true, "a.test", msg("juliet@a.test/r", "romeo@b.test", "hi"));
    assert!(w.a.out_wire.contains("<starttls"));
    assert!(
        w.b.inb_wire
            .contains("<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/></stream:stream>")
    );
    assert!(w.b.delivered.is_empty());
    assert_eq!(w.a.bounced.len(), 1);
    assert!(!w.a.out_wire.contains("<db:result"));
}

#[test]
fn tls_optional_peer_without_tls_gets_plain_dialback() {
    let mut w = World::new(
        tls_cfg("a.test", "sa", OPT),
        cfg(&["b.test"], "sb"), // no TLS at all (DIALBACK_ONLY, no certificate)
    );
    w.send(true, "a.test", msg("juliet@a.test/r", "romeo@b.test", "hi"));
    assert_eq!(w.b.delivered.len(), 1);
    assert!(!w.a.out_wire.contains("<starttls"));
}

// ---- inbound TLS and SASL by hand ----

const HDR_TLS: &str = "<stream:stream xmlns='jabber:server' \
    xmlns:stream='http://etherx.jabber.org/streams' from='a.test' to='b.test' version='1.0'>";

fn inbound_tls(p: PartnerPolicy) -> Raw<InboundSession> {
    let now = Instant::now();
    Raw::new(
        InboundSession::new(now, tls_cfg("b.test", "t", p), "ID1".into()),
        now,
    )
}

/// An inbound stream after STARTTLS with `cert` and the post-TLS header.
fn inbound_after_tls(cert: Option<CertVerdict>) -> Raw<InboundSession> {
    let mut r = inbound_tls(OPT);
    r.feed(HDR_TLS).ok();
    r.feed("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        .ok();
    assert!(
        r.take_wire()
            .ends_with("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
    );
    assert!(r.outs.contains(&Output::UpgradeTls));
    let _ =
        r.s.handle_input(r.now, Input::TlsEstablished { peer: cert });
    r.drain();
    r.feed(HDR_TLS).ok();
    r
}

fn valid_a() -> Option<CertVerdict> {
    Some(verdict(
        &test_ca().valid("a.test").expect("leaf"),
        PeerRole::Initiating,
    ))
}

#[rstest::rstest]
#[case::equals("=", true)]
#[case::empty("", true)]
#[case::domain("YS50ZXN0", true)] // base64("a.test"), what Prosody sends
#[case::domain_upper("QS5URVNU", true)] // base64("A.TEST")
fn external_authzid_accepted(#[case] data: &str, #[case] ok: bool) {
    // SASL-03, D-06.
    let mut r = inbound_after_tls(valid_a());
    let w = r.take_wire();
    assert!(w.contains("<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>EXTERNAL</mechanism></mechanisms>"), "{w}");
    let before = header_ids(&w);
    r.feed(&format!(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>{data}</auth>"
    ))
    .ok();
    assert_eq!(r.take_wire().contains("<success"), ok);
    // SASL-07: restart, new id, empty features; then stanzas flow.
    r.feed(HDR_TLS).ok();
    let w = r.take_wire();
    assert!(w.contains("<stream:features/>"), "{w}");
    assert_ne!(header_ids(&w), before);
    assert_ne!(header_ids(&w), ["ID1"]);
    r.feed("<message from='u@a.test' to='v@b.test'><body>x</body></message>")
        .ok();
    assert_eq!(r.stanzas(), 1);
    assert!(
        r.outs.iter().any(
            |o| matches!(o, Output::PairVerified { originating, .. } if originating == "a.test")
        )
    );
}

#[rstest::rstest]
#[case::other_authzid("ZXZpbC50ZXN0", "invalid-authzid")] // base64("evil.test"), SASL-04
#[case::bad_base64("!!!!", "incorrect-encoding")]
#[case::whitespace(" YS50ZXN0", "incorrect-encoding")]
#[case::jid_authzid("dUBhLnRlc3Q=", "invalid-authzid")] // base64("u@a.test")
fn external_authzid_refused(#[case] data: &str, #[case] cond: &str) {
    let mut r = inbound_after_tls(valid_a());
    r.take_wire();
    r.feed(&format!(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>{data}</auth>"
    ))
    .ok();
    assert_eq!(
        r.take_wire(),
        format!("<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><{cond}/></failure>")
    );
    assert!(
        !r.s.is_closed(),
        "a failure is not the end (RFC 6120 §6.4.5)"
    );
}

#[test]
fn sasl_failure_conditions_and_retry_limit() {
    // SASL-05, SASL-06: specific conditions, then policy-violation after 3 attempts.
    let mut r = inbound_after_tls(valid_a());
    r.take_wire();
    r.feed("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGEAYg==</auth>")
        .ok();
    assert!(r.take_wire().contains("<invalid-mechanism/>"));
    r.feed("<abort xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>")
        .ok();
    assert!(r.take_wire().contains("<aborted/>"));
    let _ = r.feed(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>ZXZpbC50ZXN0</auth>",
    );
    let w = r.take_wire();
    assert!(
        w.contains("<invalid-authzid/>") && w.contains("<policy-violation"),
        "{w}"
    );
    assert_eq!(
        r.closed_with(),
        Some(Some(StreamCondition::PolicyViolation))
    );
}

#[test]
fn sasl_before_tls_is_encryption_required() {
    let mut r = inbound_tls(OPT);
    r.feed(HDR_TLS).ok();
    let w = r.take_wire();
    // TLS-01, SASL-01: STARTTLS and dialback offered, no mechanisms before TLS.
    assert!(
        w.contains("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/><dialback"),
        "{w}"
    );
    assert!(!w.contains("mechanisms"));
    r.feed("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>=</auth>")
        .ok();
    assert!(r.take_wire().contains("<encryption-required/>"));
}

#[test]
fn external_for_an_unverified_certificate_is_invalid_mechanism() {
    let cert = verdict(
        &test_ca().wrong_name("a.test").expect("leaf"),
        PeerRole::Initiating,
    );
    let mut r = inbound_after_tls(Some(cert));
    assert!(!r.take_wire().contains("EXTERNAL"));
    r.feed("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>=</auth>")
        .ok();
    assert!(r.take_wire().contains("<invalid-mechanism/>"));
    assert_eq!(r.s.sasl_authenticated(), None);
}

#[test]
fn no_from_then_authzid_names_the_domain() {
    // XEP-0178 §3: without `from`, the authzid says who the peer is; the certificate must
    // authenticate it.
    let hdr = HDR_TLS.replace(" from='a.test'", "");
    let mut r = inbound_tls(OPT);
    r.feed(&hdr).ok();
    r.feed("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        .ok();
    let _ =
        r.s.handle_input(r.now, Input::TlsEstablished { peer: valid_a() });
    r.drain();
    r.feed(&hdr).ok();
    assert!(r.take_wire().contains("EXTERNAL"));
    r.feed("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>=</auth>")
        .ok();
    assert!(r.take_wire().contains("<not-authorized/>"));
    r.feed("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>Yy50ZXN0</auth>")
        .ok(); // c.test: not in the certificate
    assert!(r.take_wire().contains("<not-authorized/>"));
    r.feed("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>YS50ZXN0</auth>")
        .ok();
    assert!(r.take_wire().contains("<success"));
}

#[test]
fn plaintext_after_starttls_is_refused() {
    // STYLE §2 / RFC 6120 §5.4.3.3: bytes behind <starttls/> never become "protected".
    let mut r = inbound_tls(OPT);
    r.feed(HDR_TLS).ok();
    r.take_wire();
    let _ = r.feed("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/><message from='u@a.test' to='v@b.test'/>");
    let w = r.take_wire();
    assert!(!w.contains("<proceed"), "{w}");
    assert_eq!(
        r.closed_with(),
        Some(Some(StreamCondition::PolicyViolation))
    );
    assert!(!r.outs.contains(&Output::UpgradeTls));
}

#[test]
fn starttls_not_offered_gets_failure_and_close() {
    // TLS-02: NotSupported partner sends <starttls/> anyway.
    let mut r = inbound_tls(PartnerPolicy::DIALBACK_ONLY);
    r.feed(HDR_TLS).ok();
    assert!(!r.take_wire().contains("starttls"));
    let _ = r.feed("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
    assert_eq!(
        r.take_wire(),
        "<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/></stream:stream>"
    );
    assert_eq!(r.closed_with(), Some(None));
}

#[test]
fn tls_failure_closes_without_writing() {
    // TLS-03: a failed handshake ends the connection with no XML.
    let mut r = inbound_tls(OPT);
    r.feed(HDR_TLS).ok();
    r.feed("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        .ok();
    r.take_wire();
    assert_eq!(
        r.feed("<x/>"),
        Err(Error::Misuse),
        "no data during the handshake"
    );
    let _ = r.s.handle_input(r.now, Input::TlsFailed);
    r.drain();
    assert_eq!(r.take_wire(), "");
    assert_eq!(r.closed_with(), Some(None));
    assert!(r.s.is_closed());
}

#[test]
fn tls_forgets_what_came_before() {
    // TLS-05: a pair verified before TLS does not survive it.
    let mut r = inbound_tls(OPT);
    r.feed(HDR_TLS).ok();
    r.feed("<db:result xmlns:db='jabber:server:dialback' from='a.test' to='b.test'>k</db:result>")
        .ok();
    r.verdict("a.test", "b.test", Verdict::Valid);
    assert_eq!(r.s.verified_pairs().count(), 1);
    r.feed("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        .ok();
    let _ =
        r.s.handle_input(r.now, Input::TlsEstablished { peer: None });
    assert_eq!(r.s.verified_pairs().count(), 0);
}

#[test]
fn legacy_header_with_tls_required_gets_policy_violation_on_dialback() {
    // STR-04 + DB-14: a version-less peer cannot do STARTTLS at all.
    let required = PartnerPolicy {
        tls: Negotiation::Required,
        ..OPT
    };
    let mut r = inbound_tls(required);
    r.feed(&HDR_TLS.replace(" version='1.0'", "")).ok();
    assert!(!r.take_wire().contains("features"));
    r.feed("<db:result xmlns:db='jabber:server:dialback' from='a.test' to='b.test'>k</db:result>")
        .ok();
    assert!(
        r.take_wire()
            .contains("type='error'><error type='modify'><policy-violation")
    );
    assert!(!r.outs.iter().any(|o| matches!(o, Output::VerifyRequest(_))));
}

#[test]
fn dialback_disabled_partner_gets_policy_violation() {
    // MS-08: SupportDialbackNegotiation=False; answered, not left to time out (SASL-09).
    let no_db = PartnerPolicy {
        dialback: false,
        ..OPT
    };
    let mut r = inbound_tls(no_db);
    r.feed(HDR_TLS).ok();
    let w = r.take_wire();
    assert!(w.contains("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls></stream:features>"), "{w}");
    r.feed("<db:result xmlns:db='jabber:server:dialback' from='a.test' to='b.test'>k</db:result>")
        .ok();
    assert!(r.take_wire().contains("policy-violation"));
}

#[test]
fn partner_is_reported_and_per_partner_policy_applies() {
    let mut cfg = local_cfg(&["b.test"], "t");
    cfg.tls = TlsAbility {
        server: true,
        client_cert: true,
    };
    cfg.policies = Policies::uniform(PartnerPolicy::DIALBACK_ONLY);
    cfg.policies.partners.insert(
        "a.test".into(),
        PartnerPolicy {
            tls: Negotiation::Required,
            ..OPT
        },
    );
    let now = Instant::now();
    let mut r = Raw::new(InboundSession::new(now, Arc::new(cfg), "ID".into()), now);
    r.feed(HDR_TLS).ok();
    assert!(r.outs.contains(&Output::Partner("a.test".into())));
    assert!(r.take_wire().contains("<required/>"));
    let mut r2 = inbound_b();
    r2.feed(&HDR_TLS.replace("a.test", "c.test")).ok();
    assert!(!r2.take_wire().contains("starttls"));
}

// ---- outbound TLS by hand ----

fn outbound_tls(p: PartnerPolicy) -> Raw<OutboundSession> {
    let now = Instant::now();
    let mut r = Raw::new(
        OutboundSession::new(now, tls_cfg("a.test", "s", p), "a.test", "b.test"),
        now,
    );
    let now = r.now;
    r.s.send_stanza(now, "a.test", msg("u@a.test", "v@b.test", "x"));
    r.drain();
    r.take_wire();
    r
}

const FEATURES_TLS: &str = "<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>\
    <dialback xmlns='urn:xmpp:features:dialback'><errors/></dialback><bidi xmlns='urn:xmpp:features:bidi'/></stream:features>";

#[test]
fn plaintext_after_proceed_is_refused() {
    let mut r = outbound_tls(OPT);
    r.feed(RESP_HDR).ok();
    r.feed(FEATURES_TLS).ok();
    assert_eq!(
        r.take_wire(),
        "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
    );
    let _ = r.feed("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/><stream:features/>");
    assert!(!r.outs.contains(&Output::UpgradeTls));
    assert_eq!(
        r.closed_with(),
        Some(Some(StreamCondition::PolicyViolation))
    );
    assert_eq!(bounces(&r), ["remote-server-timeout"]);
}

#[test]
fn bidi_and_starttls_tolerated_by_a_dialback_only_initiator() {
    // XEP-0288 advertised, STARTTLS optional, our policy NotSupported: plain dialback.
    let mut r = outbound_tls(PartnerPolicy::DIALBACK_ONLY);
    r.feed(RESP_HDR).ok();
    r.feed(FEATURES_TLS).ok();
    let w = r.take_wire();
    assert!(
        w.starts_with("<db:result") && !w.contains("starttls") && !w.contains("bidi"),
        "{w}"
    );
}

#[test]
fn sasl_failure_falls_back_to_dialback_over_tls() {
    // D-17 from the initiator's side.
    let mut r = outbound_tls(OPT);
    r.feed(RESP_HDR).ok();
    r.feed(FEATURES_TLS).ok();
    r.feed("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        .ok();
    assert!(r.outs.contains(&Output::UpgradeTls));
    let _ =
        r.s.handle_input(r.now, Input::TlsEstablished { peer: None });
    r.drain();
    let w = r.take_wire();
    assert!(
        w.contains("<stream:stream") && w.contains("to='b.test'"),
        "new header: {w}"
    );
    r.feed(&RESP_HDR.replace("RID", "RID2")).ok();
    r.feed("<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>EXTERNAL</mechanism></mechanisms><dialback xmlns='urn:xmpp:features:dialback'/></stream:features>").ok();
    assert!(
        r.take_wire()
            .contains("mechanism='EXTERNAL'>YS50ZXN0</auth>")
    );
    r.feed("<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>")
        .ok();
    let w = r.take_wire();
    let key = dialback::key("s", "b.test", "a.test", "RID2");
    assert!(
        w.contains(&key),
        "dialback keyed to the post-TLS stream id: {w}"
    );
}

#[test]
fn sasl_success_restarts_and_flushes() {
    let mut r = outbound_tls(OPT);
    r.feed(RESP_HDR).ok();
    r.feed(FEATURES_TLS).ok();
    r.feed("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        .ok();
    let _ =
        r.s.handle_input(r.now, Input::TlsEstablished { peer: None });
    r.drain();
    r.feed(&RESP_HDR.replace("RID", "RID2")).ok();
    r.feed("<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>EXTERNAL</mechanism></mechanisms></stream:features>").ok();
    r.take_wire();
    // <success/> and the new header in one read (the decoder restart keeps the rest).
    r.feed(&format!(
        "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>{}<stream:features/>",
        RESP_HDR.replace("RID", "RID3")
    ))
    .ok();
    let w = r.take_wire();
    assert!(
        w.starts_with("<?xml") || w.starts_with("<stream:stream"),
        "{w}"
    );
    assert!(w.contains("<message"), "{w}");
    assert!(r.s.is_authorized("a.test"));
    assert!(!w.contains("db:result"));
}

#[test]
fn sasl_required_initiator_without_external_closes_with_policy_violation() {
    let strict = PartnerPolicy {
        tls: Negotiation::Required,
        sasl: Negotiation::Required,
        ..OPT
    };
    let mut r = outbound_tls(strict);
    r.feed(RESP_HDR).ok();
    r.feed(FEATURES_TLS).ok();
    r.feed("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        .ok();
    let _ =
        r.s.handle_input(r.now, Input::TlsEstablished { peer: None });
    r.drain();
    r.feed(&RESP_HDR.replace("RID", "RID2")).ok();
    let _ = r.feed(FEATURES);
    assert_eq!(
        r.closed_with(),
        Some(Some(StreamCondition::PolicyViolation))
    );
    assert_eq!(bounces(&r), ["remote-server-timeout"]);
}

#[rstest::rstest]
#[case::dialback_allowed(OPT, false)]
#[case::sasl_only(PartnerPolicy { tls: Negotiation::Required, sasl: Negotiation::Required, ..OPT }, true)]
fn wrong_server_certificate_aborts_only_without_dialback(
    #[case] p: PartnerPolicy,
    #[case] aborts: bool,
) {
    // CERT-04: the receiving server presents a certificate for another name.
    let mut r = outbound_tls(p);
    r.feed(RESP_HDR).ok();
    r.feed(FEATURES_TLS).ok();
    r.feed("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        .ok();
    r.take_wire();
    let cert = verdict(
        &test_ca()
            .issue(&crate::tls::LeafSpec::for_domain("host.hoster.test"))
            .expect("leaf"),
        PeerRole::Receiving,
    );
    let _ =
        r.s.handle_input(r.now, Input::TlsEstablished { peer: Some(cert) });
    r.drain();
    let w = r.take_wire();
    assert!(w.contains("<stream:stream"), "{w}");
    assert_eq!(r.s.is_closed(), aborts, "{w}");
    if aborts {
        assert!(w.contains("<policy-violation ") && w.contains("does not authenticate b.test"));
        assert_eq!(
            r.closed_with(),
            Some(Some(StreamCondition::PolicyViolation))
        );
        assert_eq!(bounces(&r), ["remote-server-timeout"]);
    }
}

/// Deterministic generated inputs (xorshift): mutated TLS/SASL transcripts never panic the
/// sessions, whatever state they reach.
#[test]
fn mutated_tls_and_sasl_transcripts_never_panic() {
    let pieces = [
        HDR_TLS,
        "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
        "<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
        "<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>YS50ZXN0</auth>",
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>=</auth>",
        "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>",
        "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>",
        "<abort xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>",
        "<challenge xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>=</challenge>",
        FEATURES_TLS,
        "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>EXTERNAL</mechanism></mechanisms></stream:features>",
        "<db:result xmlns:db='jabber:server:dialback' from='a.test' to='b.test'>k</db:result>",
        "<message from='u@a.test' to='v@b.test'/>",
        RESP_HDR,
        " ",
        "</stream:stream>",
    ];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for round in 0..400 {
        let now = Instant::now();
        let mut inb = InboundSession::new(now, tls_cfg("b.test", "t", OPT), format!("id{round}"));
        let mut out = OutboundSession::new(now, tls_cfg("a.test", "s", OPT), "a.test", "b.test");
        out.send_stanza(now, "a.test", msg("u@a.test", "v@b.test", "x"));
        for _ in 0..(next() % 12) {
            let p = pieces[(next() % pieces.len() as u64) as usize];
            let mut bytes = p.as_bytes().to_vec();
            if next() % 3 == 0 && !bytes.is_empty() {
                let cut = (next() % bytes.len() as u64) as usize;
                bytes.truncate(cut);
            }
            for s in [&mut inb as &mut dyn Session, &mut out as &mut dyn Session] {
                let _ = s.input(now, Input::Data(&bytes));
                if next() % 4 == 0 {
                    let cert = if next() % 2 == 0 { valid_a() } else { None };
                    let _ = s.input(now, Input::TlsEstablished { peer: cert });
                }
                if next() % 7 == 0 {
                    let _ = s.input(now, Input::TlsFailed);
                }
                let _ = s.fire(now + Duration::from_secs(next() % 400));
                while s.output().is_some() {}
            }
        }
    }
}

// ---- keepalives (KA-01, MS-10) ----

#[test]
fn whitespace_keepalives_are_sent_only_when_established() {
    let mut c = local_cfg(&["a.test"], "s");
    c.timeouts.keepalive_send = Some(Duration::from_secs(60));
    let now = Instant::now();
    let mut r = Raw::new(
        OutboundSession::new(now, Arc::new(c), "a.test", "b.test"),
        now,
    );
    r.s.send_stanza(now, "a.test", msg("u@a.test", "v@b.test", "x"));
    r.drain();
    r.feed(RESP_HDR).ok();
    r.feed(FEATURES).ok();
    r.take_wire();
    r.advance(Duration::from_secs(4)); // below the dialback timeout
    assert_eq!(r.take_wire(), "", "not during dialback");
    r.feed("<db:result from='b.test' to='a.test' type='valid'/>")
        .ok();
    r.take_wire();
    r.advance(Duration::from_secs(59));
    assert_eq!(r.take_wire(), "");
    r.advance(Duration::from_secs(2));
    assert_eq!(r.take_wire(), " ");
    r.advance(Duration::from_secs(61));
    assert_eq!(r.take_wire(), " ");
}

#[test]
fn keepalive_partner_silent_too_long_is_closed_with_connection_timeout() {
    let mut c = local_cfg(&["b.test"], "t");
    c.timeouts.keepalive_expect = Duration::from_secs(300);
    c.policies.default.keepalive = true;
    let now = Instant::now();
    let mut r = Raw::new(InboundSession::new(now, Arc::new(c), "ID".into()), now);
    r.feed(HDR_B).ok();
    r.feed("<db:result from='a.test' to='b.test'>k</db:result>")
        .ok();
    r.verdict("a.test", "b.test", Verdict::Valid);
    // MS-10: spaces every 200 s keep the stream …
    for _ in 0..3 {
        r.advance(Duration::from_secs(200));
        r.feed(" ").ok();
    }
    assert!(!r.s.is_closed());
    // … 310 s of silence closes it.
    r.advance(Duration::from_secs(310));
    assert_eq!(
        r.closed_with(),
        Some(Some(StreamCondition::ConnectionTimeout))
    );
}
