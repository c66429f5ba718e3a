//! Table tests of [`GatewayCore`]: no sockets, virtual time. Each mapping path is fed
//! wire-shaped input (SIP bytes, XMPP elements) and its outputs are parsed back.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rstest::rstest;

use super::config::{GatewayConfig, SipTarget, Transport};
use super::engine::{GatewayCore, Output};
use crate::sip::builder::{Local, RequestBuilder, ResponseBuilder, SeededRandom};
use crate::sip::headers::NameAddr;
use crate::sip::{Item, Limits, Message, Method, Request, Response, Uri, parse_datagram};
use crate::translate::presence::Pidf;
use crate::translate::xml::parse_document;
use crate::xmpp::element::Element;
use crate::xmpp::ns;

const UA: &str = "127.0.0.1:5070";
const WINDOW: Duration = Duration::from_millis(100);
const T1: Duration = Duration::from_millis(50);

fn ua_addr() -> SocketAddr {
    UA.parse().expect("addr")
}

fn cfg() -> GatewayConfig {
    let mut c = GatewayConfig::new(
        "sip.sut.test",
        "secret",
        "127.0.0.1:5347".parse().expect("addr"),
    );
    c.sip_routes
        .insert("sip.sut.test".into(), format!("{UA};transport=udp"));
    c.timers.t1 = T1;
    c.timers.message_error_window = WINDOW;
    c.timers.link_down_hold = Duration::from_secs(1);
    c.subscriptions.expires = 600;
    c
}

/// The core plus everything it has said, with every stanza handed over at once.
struct T {
    core: GatewayCore,
    now: Instant,
    stanzas: Vec<Element>,
    sip: Vec<(SipTarget, Message)>,
    /// Hand stanzas to the (virtual) link as they come out.
    auto_hand: bool,
    held: Vec<(Element, u64)>,
    rng: SeededRandom,
    seq: u32,
}

impl T {
    fn new() -> Self {
        Self::with(cfg())
    }

    fn with(c: GatewayConfig) -> Self {
        let mut core = GatewayCore::new(
            c,
            "127.0.0.1:5060".parse().expect("addr"),
            "127.0.0.1:5060".parse().expect("addr"),
            Box::new(SeededRandom(7)),
        );
        let now = Instant::now();
        core.link_up(now);
        T {
            core,
            now,
            stanzas: Vec::new(),
            sip: Vec::new(),
            auto_hand: true,
            held: Vec::new(),
            rng: SeededRandom(99),
            seq: 0,
        }
    }

    fn pump(&mut self) {
        while let Some(o) = self.core.poll_output() {
            match o {
                Output::Stanza { stanza, token } => {
                    if self.auto_hand {
                        self.stanzas.push(stanza);
                        self.core.stanza_handed(self.now, token);
                    } else {
                        self.held.push((stanza, token));
                    }
                }
                Output::Sip { to, bytes } => match parse_datagram(&bytes, &Limits::default()) {
                    Ok(Item::Message(m)) => self.sip.push((to, m)),
                    other => panic!("gateway sent unparsable SIP: {other:?}"),
                },
            }
        }
    }

    fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        // Step through every deadline on the way, as a driver would.
        while let Some(t) = self.core.poll_timeout().filter(|t| *t <= end) {
            self.now = t.max(self.now);
            self.core.handle_timeout(self.now);
            self.pump();
        }
        self.now = end;
        self.core.handle_timeout(self.now);
        self.pump();
    }

    fn datagram(&mut self, bytes: &[u8]) {
        self.core.handle_datagram(self.now, ua_addr(), bytes);
        self.pump();
    }

    fn send_request(&mut self, r: &Request) {
        self.datagram(&r.to_bytes());
    }

    fn xmpp(&mut self, xml: &str) {
        let el = parse_document(xml).expect("test stanza");
        self.core.handle_stanza(self.now, el);
        self.pump();
    }

    fn take_stanzas(&mut self) -> Vec<Element> {
        std::mem::take(&mut self.stanzas)
    }

    fn take_sip(&mut self) -> Vec<Message> {
        std::mem::take(&mut self.sip)
            .into_iter()
            .map(|(to, m)| {
                assert_eq!(to.addr, ua_addr(), "SIP goes to the UA");
                m
            })
            .collect()
    }

    fn responses(&mut self) -> Vec<Response> {
        self.take_sip()
            .into_iter()
            .map(|m| match m {
                Message::Response(r) => r,
                Message::Request(r) => panic!("unexpected request {}", r.method),
            })
            .collect()
    }

    fn requests(&mut self) -> Vec<Request> {
        self.take_sip()
            .into_iter()
            .map(|m| match m {
                Message::Request(r) => r,
                Message::Response(r) => panic!("unexpected response {}", r.status),
            })
            .collect()
    }

    /// A request from the UA (alice unless `from` is given), completed by the builder.
    fn ua(
        &mut self,
        method: Method,
        uri: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Request {
        self.seq += 1;
        let local = Local {
            aor: NameAddr::parse("From", "<sip:alice@sip.sut.test>").expect("aor"),
            transport: "UDP".into(),
            sent_by: UA.into(),
            contact: Uri::parse(&format!("sip:alice@{UA}")),
        };
        let mut b = RequestBuilder::new(method, Uri::parse(uri).expect("uri")).cseq(self.seq);
        for (n, v) in headers {
            b = b.header(*n, *v);
        }
        if let Some(body) = body {
            b = b.body("text/plain;charset=utf-8", body.as_bytes().to_vec());
        }
        b.build(&local, &mut self.rng)
    }

    /// The UA answers a request the gateway sent.
    fn answer(&mut self, req: &Request, code: u16, headers: &[(&str, &str)]) {
        let mut b = ResponseBuilder::new(req, code);
        for (n, v) in headers {
            b = b.header(*n, *v);
        }
        let r = b.build(&mut self.rng);
        self.datagram(&r.to_bytes());
    }
}

fn cond(e: &Element) -> Option<String> {
    e.elements()
        .find(|c| c.name == "error")
        .and_then(|er| {
            er.elements()
                .find(|c| c.ns == ns::STANZAS_ERR && c.name != "text")
        })
        .map(|c| c.name.clone())
}

fn child_text(e: &Element, name: &str) -> Option<String> {
    e.elements().find(|c| c.name == name).map(Element::text)
}

// ---------------------------------------------------------------------------------
// IM, S→X
// ---------------------------------------------------------------------------------

#[test]
fn sip_message_becomes_a_stanza_then_200_after_the_error_window() {
    // IM-05, IM-07, IM-08, IM-09, D-03.
    let mut t = T::new();
    let body = "<&>'\" \u{10d}e\u{161}tina \u{1f600}";
    let r = t.ua(
        Method::Message,
        "sip:juliet@remote.test",
        &[("Subject", "Hi"), ("Content-Language", "cs")],
        Some(body),
    );
    t.send_request(&r);
    let s = t.take_stanzas();
    assert_eq!(s.len(), 1, "exactly one stanza");
    let m = &s[0];
    assert_eq!(m.name, "message");
    assert_eq!(m.ns, ns::SERVER);
    assert_eq!(m.attr("from"), Some("alice@sip.sut.test"));
    assert_eq!(m.attr("to"), Some("juliet@remote.test"));
    assert_eq!(m.attr("type"), None, "pager mode: no type (IM-07)");
    assert_eq!(child_text(m, "body").as_deref(), Some(body));
    assert_eq!(child_text(m, "subject").as_deref(), Some("Hi"));
    assert_eq!(m.lang(), Some("cs"));
    let call_id = r.headers.call_id().expect("call-id");
    assert_eq!(child_text(m, "thread").as_deref(), Some(call_id));
    let branch = r.headers.top_via().expect("via").branch();
    assert_eq!(m.attr("id"), branch.as_deref(), "transaction id → id");
    assert!(t.responses().is_empty(), "no 200 before the error window");
    t.advance(WINDOW);
    let rs = t.responses();
    assert_eq!(rs.len(), 1);
    assert_eq!(rs[0].status, 200);
    // A retransmission gets the same 200 again, and no second stanza.
    t.send_request(&r);
    assert!(t.take_stanzas().is_empty());
    assert_eq!(
        t.responses().iter().map(|r| r.status).collect::<Vec<_>>(),
        [200]
    );
}

#[test]
fn gruu_gives_a_full_jid() {
    // IM-06.
    let mut t = T::new();
    let r = t.ua(
        Method::Message,
        "sip:juliet@remote.test",
        &[("From", "<sip:alice@sip.sut.test;gr=dr4h>")],
        Some("x"),
    );
    t.send_request(&r);
    assert_eq!(
        t.take_stanzas()[0].attr("from"),
        Some("alice@sip.sut.test/dr4h")
    );
}

#[test]
fn zero_window_answers_as_soon_as_the_stanza_is_handed() {
    let mut c = cfg();
    c.timers.message_error_window = Duration::ZERO;
    let mut t = T::with(c);
    t.auto_hand = false;
    let r = t.ua(Method::Message, "sip:juliet@remote.test", &[], Some("x"));
    t.send_request(&r);
    assert!(
        t.responses().is_empty(),
        "nothing before the stanza is handed"
    );
    let (el, tok) = t.held.pop().expect("stanza out");
    t.core.stanza_handed(t.now, tok);
    t.pump();
    assert_eq!(el.name, "message");
    assert_eq!(t.responses()[0].status, 200);
}

// ERR-01..ERR-04 (RFC 7247 §7.1 Table 2): the XMPP error to a translated MESSAGE
// becomes the SIP final response. The stanza went to a bare JID (6xx family).
#[rstest]
#[case("bad-request", 400)]
// RFC 3261 §21.4.2: a 401 needs a challenge the gateway cannot give (translate::error).
#[case("not-authorized", 403)]
#[case("not-allowed", 403)]
#[case("policy-violation", 403)]
#[case("item-not-found", 604)]
#[case("forbidden", 603)]
#[case("recipient-unavailable", 600)]
#[case("remote-server-timeout", 408)]
#[case("remote-server-not-found", 404)]
#[case("internal-server-error", 500)]
#[case("redirect", 302)]
#[case("gone", 410)]
fn xmpp_error_maps_to_the_sip_final_response(#[case] condition: &str, #[case] code: u16) {
    let mut t = T::new();
    let r = t.ua(Method::Message, "sip:juliet@remote.test", &[], Some("x"));
    t.send_request(&r);
    let id = t.take_stanzas()[0].attr("id").expect("id").to_owned();
    t.xmpp(&format!(
        "<message xmlns='jabber:server' type='error' from='juliet@remote.test' \
         to='alice@sip.sut.test' id='{id}'><error type='cancel'><{condition} \
         xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>"
    ));
    let rs = t.responses();
    assert_eq!(rs.iter().map(|r| r.status).collect::<Vec<_>>(), [code]);
    // Nothing more later: the window's 200 does not follow (one final response).
    t.advance(WINDOW * 2);
    assert!(t.responses().is_empty());
    assert!(
        t.take_stanzas().is_empty(),
        "an error is never answered (ERR-10)"
    );
}

// ERR-03 (RFC 7247 §7.1 note 3): a new address in <gone/> or <redirect/> gives a 3xx
// whose Contact is that address (RFC 3261 §21.3.2, §21.3.3); none, or one that does not
// map, gives 410 for <gone/>.
#[rstest]
#[case::gone_xmpp_uri("gone", "xmpp:romeo@new.test", 301, Some("<sip:romeo@new.test>"))]
#[case::gone_sip_uri(
    "gone",
    "sip:romeo@sip.new.test",
    301,
    Some("<sip:romeo@sip.new.test>")
)]
#[case::gone_unmappable("gone", "call me maybe", 410, None)]
#[case::gone_empty("gone", "", 410, None)]
#[case::redirect(
    "redirect",
    "xmpp:romeo@elsewhere.test",
    302,
    Some("<sip:romeo@elsewhere.test>")
)]
#[case::redirect_empty("redirect", "", 302, None)]
fn gone_and_redirect_carry_the_new_address(
    #[case] condition: &str,
    #[case] text: &str,
    #[case] code: u16,
    #[case] contact: Option<&str>,
) {
    let mut t = T::new();
    let r = t.ua(Method::Message, "sip:juliet@remote.test", &[], Some("x"));
    t.send_request(&r);
    let id = t.take_stanzas()[0].attr("id").expect("id").to_owned();
    t.xmpp(&format!(
        "<message xmlns='jabber:server' type='error' from='juliet@remote.test' \
         to='alice@sip.sut.test' id='{id}'><error type='cancel'><{condition} \
         xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>{text}</{condition}></error></message>"
    ));
    let rs = t.responses();
    assert_eq!(rs.iter().map(|r| r.status).collect::<Vec<_>>(), [code]);
    assert_eq!(rs[0].headers.get("Contact"), contact);
}

#[test]
fn service_unavailable_is_not_503() {
    // ERR-04 (RFC 7247 §7.1 note 5).
    let mut t = T::new();
    let r = t.ua(Method::Message, "sip:juliet@remote.test", &[], Some("x"));
    t.send_request(&r);
    let id = t.take_stanzas()[0].attr("id").expect("id").to_owned();
    t.xmpp(&format!(
        "<message xmlns='jabber:server' type='error' from='juliet@remote.test' \
         to='alice@sip.sut.test' id='{id}'><error type='cancel'><service-unavailable \
         xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>"
    ));
    let code = t.responses()[0].status;
    assert!(code == 403 || code == 405, "got {code}");
}

#[test]
fn errors_from_others_or_unknown_ids_are_dropped() {
    let mut t = T::new();
    let r = t.ua(Method::Message, "sip:juliet@remote.test", &[], Some("x"));
    t.send_request(&r);
    let id = t.take_stanzas()[0].attr("id").expect("id").to_owned();
    for (from, id) in [
        ("mallory@evil.test", id.as_str()),
        ("juliet@remote.test", "nope"),
    ] {
        t.xmpp(&format!(
            "<message xmlns='jabber:server' type='error' from='{from}' \
             to='alice@sip.sut.test' id='{id}'><error type='cancel'><forbidden \
             xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>"
        ));
    }
    assert!(t.responses().is_empty());
    assert!(t.take_stanzas().is_empty(), "ERR-10");
    t.advance(WINDOW);
    assert_eq!(t.responses()[0].status, 200);
}

// ARCH-04, ARCH-05, ARCH-06 and bad requests: answered, nothing reaches XMPP.
#[rstest]
#[case::sips_ruri(Method::Message, "sips:juliet@remote.test", &[], 416)]
#[case::sips_to(Method::Message, "sip:juliet@remote.test", &[("To", "<sips:juliet@remote.test>")], 416)]
#[case::sips_subscribe(Method::Subscribe, "sips:juliet@remote.test", &[("Event", "presence")], 416)]
#[case::max_forwards_0(Method::Message, "sip:juliet@remote.test", &[("Max-Forwards", "0")], 483)]
#[case::max_forwards_0_subscribe(Method::Subscribe, "sip:juliet@remote.test", &[("Max-Forwards", "0"), ("Event", "presence")], 483)]
#[case::foreign_sender(Method::Message, "sip:juliet@remote.test", &[("From", "<sip:eve@other.test>")], 403)]
#[case::own_domain(Method::Message, "sip:bob@sip.sut.test", &[], 404)]
#[case::unknown_method(Method::Other("FOO".into()), "sip:juliet@remote.test", &[], 501)]
#[case::register(Method::Register, "sip:sip.sut.test", &[], 405)]
#[case::invite(Method::Invite, "sip:juliet@remote.test", &[], 405)]
#[case::bad_event(Method::Subscribe, "sip:juliet@remote.test", &[("Event", "dialog")], 489)]
#[case::notify_no_dialog(Method::Notify, "sip:gw@127.0.0.1:5060", &[("To", "<sip:gw@sip.sut.test>;tag=x"), ("Event", "presence"), ("Subscription-State", "active")], 481)]
fn refused_requests(
    #[case] method: Method,
    #[case] uri: &str,
    #[case] headers: &[(&str, &str)],
    #[case] code: u16,
) {
    let mut t = T::new();
    let body = (method == Method::Message).then_some("x");
    let r = t.ua(method, uri, headers, body);
    t.send_request(&r);
    let rs = t.responses();
    assert_eq!(rs.iter().map(|r| r.status).collect::<Vec<_>>(), [code]);
    assert!(t.take_stanzas().is_empty(), "nothing to XMPP");
}

#[test]
fn options_lists_what_is_served() {
    let mut t = T::new();
    let r = t.ua(Method::Options, "sip:sip.sut.test", &[], None);
    t.send_request(&r);
    let rs = t.responses();
    assert_eq!(rs[0].status, 200);
    assert!(
        rs[0]
            .headers
            .get("Allow")
            .is_some_and(|a| a.contains("MESSAGE"))
    );
}

// Bad SIP input over UDP: a 400-class answer when there is a request to answer, a
// logged drop otherwise; never a panic.
#[rstest]
#[case::truncated(
    "MESSAGE sip:juliet@remote.test SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKt1\r\n",
    Some(400)
)]
#[case::truncated_in_the_start_line("MESSAGE sip:juliet@remo", None)]
#[case::unknown_method(
    "FROBNICATE sip:juliet@remote.test SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKt7\r\nMax-Forwards: 70\r\nFrom: <sip:alice@sip.sut.test>;tag=a\r\nTo: <sip:juliet@remote.test>\r\nCall-ID: c7\r\nCSeq: 1 FROBNICATE\r\nContent-Length: 0\r\n\r\n",
    Some(501)
)]
#[case::garbled_request_line(
    "MESSAGE juliet SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKt8\r\nMax-Forwards: 70\r\nFrom: <sip:alice@sip.sut.test>;tag=a\r\nTo: <sip:juliet@remote.test>\r\nCall-ID: c8\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n",
    Some(400)
)]
#[case::version_3(
    "MESSAGE sip:juliet@remote.test SIP/3.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKt9\r\nMax-Forwards: 70\r\nFrom: <sip:alice@sip.sut.test>;tag=a\r\nTo: <sip:juliet@remote.test>\r\nCall-ID: c9\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n",
    Some(505)
)]
#[case::garbage("\u{1}\u{2}hello\r\n\r\n", None)]
#[case::bad_content_length(
    "MESSAGE sip:juliet@remote.test SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKt2\r\nMax-Forwards: 70\r\nFrom: <sip:alice@sip.sut.test>;tag=a\r\nTo: <sip:juliet@remote.test>\r\nCall-ID: c2\r\nCSeq: 1 MESSAGE\r\nContent-Type: text/plain\r\nContent-Length: 500\r\n\r\nshort",
    Some(400)
)]
#[case::non_numeric_content_length(
    "MESSAGE sip:juliet@remote.test SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKt3\r\nMax-Forwards: 70\r\nFrom: <sip:alice@sip.sut.test>;tag=a\r\nTo: <sip:juliet@remote.test>\r\nCall-ID: c3\r\nCSeq: 1 MESSAGE\r\nContent-Length: ten\r\n\r\n",
    Some(400)
)]
#[case::missing_call_id(
    "MESSAGE sip:juliet@remote.test SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKt4\r\nMax-Forwards: 70\r\nFrom: <sip:alice@sip.sut.test>;tag=a\r\nTo: <sip:juliet@remote.test>\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n",
    Some(400)
)]
#[case::cseq_mismatch(
    "MESSAGE sip:juliet@remote.test SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKt5\r\nMax-Forwards: 70\r\nFrom: <sip:alice@sip.sut.test>;tag=a\r\nTo: <sip:juliet@remote.test>\r\nCall-ID: c5\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
    Some(400)
)]
#[case::no_via(
    "MESSAGE sip:juliet@remote.test SIP/2.0\r\nMax-Forwards: 70\r\nCall-ID: c6\r\n\r\n",
    None
)]
#[case::response_garbage("SIP/2.0 200 OK\r\n\r\n", None)]
fn bad_datagrams(#[case] text: &str, #[case] code: Option<u16>) {
    let mut t = T::new();
    t.datagram(text.as_bytes());
    let got: Vec<u16> = t.responses().iter().map(|r| r.status).collect();
    assert_eq!(got, code.into_iter().collect::<Vec<_>>());
    assert!(t.take_stanzas().is_empty());
}

// A header over the codec's limit exceeds the gateway, it is not malformed: 513
// (RFC 3261 §21.5.7), see `sip_input::status_for`.
#[test]
fn huge_header_is_answered_513() {
    let mut t = T::new();
    let big = "x".repeat(20_000);
    let text = format!(
        "MESSAGE sip:juliet@remote.test SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKh\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@sip.sut.test>;tag=a\r\nTo: <sip:juliet@remote.test>\r\n\
         Call-ID: ch\r\nCSeq: 1 MESSAGE\r\nX-Huge: {big}\r\nContent-Length: 0\r\n\r\n"
    );
    t.datagram(text.as_bytes());
    let got: Vec<u16> = t.responses().iter().map(|r| r.status).collect();
    assert_eq!(got, [513]);
}

#[test]
fn bad_input_loses_nothing_queued_or_in_flight() {
    // A MESSAGE in flight (its 200 waits for the error window), then garbage, then a
    // good MESSAGE: both good ones reach XMPP and get their 200, the garbage its 400.
    let mut t = T::new();
    let first = t.ua(Method::Message, "sip:juliet@remote.test", &[], Some("one"));
    t.send_request(&first);
    t.datagram(
        b"MESSAGE sip:juliet@remote.test SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKbad\r\n\
          From: <sip:alice@sip.sut.test>;tag=b\r\nTo: <sip:juliet@remote.test>\r\nCall-ID: bad\r\n\
          CSeq: 1 MESSAGE\r\nContent-Length: 99\r\n\r\nshort",
    );
    let second = t.ua(Method::Message, "sip:juliet@remote.test", &[], Some("two"));
    t.send_request(&second);
    let bodies: Vec<Option<String>> = t
        .take_stanzas()
        .iter()
        .map(|m| child_text(m, "body"))
        .collect();
    assert_eq!(bodies, [Some("one".to_owned()), Some("two".to_owned())]);
    assert_eq!(
        t.responses().iter().map(|r| r.status).collect::<Vec<_>>(),
        [400]
    );
    t.advance(WINDOW);
    let done: Vec<(u16, Option<String>)> = t
        .responses()
        .iter()
        .map(|r| (r.status, r.headers.call_id().ok().map(str::to_owned)))
        .collect();
    let id = |r: &Request| r.headers.call_id().ok().map(str::to_owned);
    assert_eq!(done, [(200, id(&first)), (200, id(&second))]);
}

#[test]
fn mutated_datagrams_never_panic() {
    let mut t = T::new();
    let r = t.ua(
        Method::Message,
        "sip:juliet@remote.test",
        &[],
        Some("hello"),
    );
    let base = r.to_bytes();
    let mut x: u64 = 0x1234_5678;
    for _ in 0..3000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let mut d = base.clone();
        let n = d.len();
        match x % 4 {
            0 => d.truncate((x as usize >> 8) % n),
            1 => {
                if let Some(b) = d.get_mut((x as usize >> 8) % n) {
                    *b = (x >> 32) as u8;
                }
            }
            2 => d.insert((x as usize >> 8) % n, b"\r\n:;<>@%"[(x >> 40) as usize % 8]),
            _ => d
                .drain(((x as usize >> 8) % n)..((x as usize >> 8) % n + 5).min(n))
                .for_each(drop),
        }
        t.datagram(&d);
        t.take_sip();
        t.take_stanzas();
    }
    t.advance(Duration::from_secs(10));
}

// ---------------------------------------------------------------------------------
// The component link
// ---------------------------------------------------------------------------------

#[test]
fn link_down_holds_messages_and_delivers_them_in_order() {
    let mut t = T::new();
    t.core.link_down(t.now);
    let a = t.ua(Method::Message, "sip:juliet@remote.test", &[], Some("one"));
    let b = t.ua(Method::Message, "sip:juliet@remote.test", &[], Some("two"));
    t.send_request(&a);
    t.send_request(&b);
    assert!(t.take_stanzas().is_empty());
    assert!(t.responses().is_empty());
    t.advance(Duration::from_millis(500));
    t.core.link_up(t.now);
    t.pump();
    let bodies: Vec<_> = t
        .take_stanzas()
        .iter()
        .filter_map(|s| child_text(s, "body"))
        .collect();
    assert_eq!(bodies, ["one", "two"]);
    t.advance(WINDOW);
    assert_eq!(
        t.responses().iter().map(|r| r.status).collect::<Vec<_>>(),
        [200, 200]
    );
}

#[test]
fn link_down_too_long_answers_480_and_never_delivers() {
    let mut t = T::new();
    t.core.link_down(t.now);
    let a = t.ua(Method::Message, "sip:juliet@remote.test", &[], Some("one"));
    t.send_request(&a);
    t.advance(Duration::from_secs(1));
    let rs = t.responses();
    assert_eq!(rs.iter().map(|r| r.status).collect::<Vec<_>>(), [480]);
    assert!(rs[0].headers.get("Retry-After").is_some());
    t.core.link_up(t.now);
    t.pump();
    assert!(
        t.take_stanzas().is_empty(),
        "answered 480, so not delivered"
    );
}

#[test]
fn full_queue_refuses_new_messages_but_keeps_the_queued() {
    let mut c = cfg();
    c.limits.max_queued = 1;
    let mut t = T::with(c);
    t.core.link_down(t.now);
    let a = t.ua(Method::Message, "sip:juliet@remote.test", &[], Some("one"));
    let b = t.ua(Method::Message, "sip:juliet@remote.test", &[], Some("two"));
    t.send_request(&a);
    t.send_request(&b);
    assert_eq!(
        t.responses().iter().map(|r| r.status).collect::<Vec<_>>(),
        [480]
    );
    t.core.link_up(t.now);
    t.pump();
    assert_eq!(t.take_stanzas().len(), 1);
}

#[test]
fn a_stanza_not_handed_is_queued_again() {
    let mut t = T::new();
    t.auto_hand = false;
    let a = t.ua(Method::Message, "sip:juliet@remote.test", &[], Some("one"));
    t.send_request(&a);
    let (el, tok) = t.held.pop().expect("out");
    t.core.stanza_not_handed(t.now, el, tok);
    t.auto_hand = true;
    t.advance(WINDOW * 3);
    assert!(t.responses().is_empty(), "no 200 for what was not handed");
    t.core.link_up(t.now);
    t.pump();
    assert_eq!(t.take_stanzas().len(), 1);
    t.advance(WINDOW);
    assert_eq!(t.responses()[0].status, 200);
}

// ---------------------------------------------------------------------------------
// IM, X→S
// ---------------------------------------------------------------------------------

const JULIET_MSG: &str = "<message xmlns='jabber:server' from='juliet@remote.test/balcony' \
    to='alice@sip.sut.test' id='m1' type='chat' xml:lang='en'><subject>S</subject>\
    <body>Hi &lt;Alice&gt;</body><thread>T-1</thread></message>";

#[test]
fn xmpp_message_becomes_a_sip_message() {
    // IM-01, IM-02, IM-09, IM-11.
    let mut t = T::new();
    t.xmpp(JULIET_MSG);
    let rs = t.requests();
    assert_eq!(rs.len(), 1);
    let r = &rs[0];
    assert_eq!(r.method, Method::Message);
    assert_eq!(r.uri.as_str(), "sip:alice@sip.sut.test");
    let from = r.headers.from().expect("from");
    assert_eq!(from.uri.as_str(), "sip:juliet@remote.test;gr=balcony");
    assert!(from.tag().is_some());
    assert_eq!(
        r.headers.to().expect("to").uri.as_str(),
        "sip:alice@sip.sut.test"
    );
    assert_eq!(r.headers.call_id().ok(), Some("T-1"));
    assert_eq!(r.headers.get("Subject"), Some("S"));
    assert_eq!(r.headers.get("Content-Language"), Some("en"));
    assert!(
        r.headers
            .get("Content-Type")
            .is_some_and(|c| c.starts_with("text/plain"))
    );
    assert_eq!(r.body, b"Hi <Alice>");
    t.answer(r, 200, &[]);
    assert!(t.take_stanzas().is_empty(), "2xx: nothing back");
}

// IM-04 (RFC 7572 §6, RFC 3428 §7): the 1300-byte limit is on the MESSAGE as sent,
// headers included — a body well under 1300 bytes can still make it too large.
#[rstest]
#[case::fits(600, true)]
#[case::headers_push_it_over(1200, false)]
#[case::body_alone_over(5000, false)]
fn pager_mode_size_limit(#[case] body_len: usize, #[case] sent: bool) {
    let mut t = T::new();
    t.xmpp(&format!(
        "<message xmlns='jabber:server' from='juliet@remote.test/balcony' \
         to='alice@sip.sut.test' id='big'><body>{}</body></message>",
        "y".repeat(body_len)
    ));
    let rs = t.requests();
    let errors = t.take_stanzas();
    if sent {
        assert_eq!(rs.len(), 1);
        assert!(rs[0].to_bytes().len() <= 1300);
        assert!(errors.is_empty());
    } else {
        assert!(rs.is_empty(), "nothing goes out over the limit");
        assert_eq!(errors.len(), 1);
        let e = &errors[0];
        assert_eq!(e.attr("type"), Some("error"));
        assert_eq!(e.attr("id"), Some("big"));
        assert_eq!(e.attr("to"), Some("juliet@remote.test/balcony"));
        let cond = e
            .elements()
            .find(|c| c.name == "error")
            .and_then(|er| er.elements().next())
            .map(|c| c.name.clone());
        assert_eq!(cond.as_deref(), Some("policy-violation"));
    }
}

// IM-13 (RFC 6121 §8.5.2.2.1): an undeliverable headline is dropped silently; chat
// and normal get the mapped error.
#[rstest]
#[case::headline("headline", false)]
#[case::chat("chat", true)]
#[case::normal("normal", true)]
fn undeliverable_headline_is_not_bounced(#[case] kind: &str, #[case] bounced: bool) {
    let mut t = T::new();
    t.xmpp(&format!(
        "<message xmlns='jabber:server' from='juliet@remote.test/balcony' \
         to='alice@sip.sut.test' id='h1' type='{kind}'><body>News</body></message>"
    ));
    let rs = t.requests();
    assert_eq!(rs.len(), 1);
    t.answer(&rs[0], 480, &[]);
    assert_eq!(t.take_stanzas().len(), usize::from(bounced));
}

// ERR-05..ERR-07 (RFC 7247 §7.2 Table 3) in the ERR-09 shape.
#[rstest]
#[case(400, "bad-request")]
#[case(403, "forbidden")]
#[case(404, "item-not-found")]
#[case(405, "feature-not-implemented")]
#[case(408, "remote-server-timeout")]
#[case(410, "gone")]
#[case(413, "policy-violation")]
#[case(415, "not-acceptable")]
#[case(480, "recipient-unavailable")]
#[case(486, "recipient-unavailable")]
#[case(500, "internal-server-error")]
#[case(502, "remote-server-not-found")]
#[case(503, "internal-server-error")]
#[case(603, "recipient-unavailable")]
#[case(499, "bad-request")]
#[case(699, "recipient-unavailable")]
fn sip_error_becomes_an_xmpp_error(#[case] code: u16, #[case] condition: &str) {
    let mut t = T::new();
    t.xmpp(JULIET_MSG);
    let r = t.requests().pop().expect("MESSAGE");
    t.answer(&r, code, &[]);
    let s = t.take_stanzas();
    assert_eq!(s.len(), 1);
    let e = &s[0];
    assert_eq!(e.name, "message");
    assert_eq!(e.attr("type"), Some("error"));
    assert_eq!(e.attr("from"), Some("alice@sip.sut.test"));
    assert_eq!(e.attr("to"), Some("juliet@remote.test/balcony"));
    assert_eq!(e.attr("id"), Some("m1"));
    assert_eq!(cond(e).as_deref(), Some(condition));
    let errs: Vec<_> = e.elements().filter(|c| c.name == "error").collect();
    assert_eq!(errs.len(), 1, "one <error/> child");
    assert!(errs[0].attr("type").is_some());
}

#[test]
fn moved_permanently_carries_the_new_address() {
    // ERR-07.
    let mut t = T::new();
    t.xmpp(JULIET_MSG);
    let r = t.requests().pop().expect("MESSAGE");
    t.answer(&r, 301, &[("Contact", "<sip:alice2@sip.sut.test>")]);
    let e = t.take_stanzas().pop().expect("error");
    let gone = e
        .elements()
        .find(|c| c.name == "error")
        .and_then(|er| er.elements().find(|c| c.name == "gone"))
        .map(Element::text);
    assert_eq!(gone.as_deref(), Some("xmpp:alice2@sip.sut.test"));
}

#[test]
fn timer_f_gives_remote_server_timeout() {
    let mut t = T::new();
    t.xmpp(JULIET_MSG);
    assert_eq!(t.requests().len(), 1);
    t.advance(T1 * 64);
    let retransmits = t.requests().len();
    assert!(
        retransmits >= 3,
        "UDP retransmissions (Timer E): {retransmits}"
    );
    let e = t.take_stanzas().pop().expect("error");
    assert_eq!(cond(&e).as_deref(), Some("remote-server-timeout"));
}

#[rstest]
#[case::no_route(
    "<message xmlns='jabber:server' from='juliet@remote.test' to='bob@sip.sut.test' id='x'><body>b</body></message>",
    "service-unavailable"
)]
#[case::too_large(&format!("<message xmlns='jabber:server' from='juliet@remote.test' to='alice@sip.sut.test' id='x'><body>{}</body></message>", "y".repeat(5000)), "policy-violation")]
#[case::groupchat(
    "<message xmlns='jabber:server' from='juliet@remote.test' to='alice@sip.sut.test' id='x' type='groupchat'><body>b</body></message>",
    "service-unavailable"
)]
#[case::domain(
    "<message xmlns='jabber:server' from='juliet@remote.test' to='sip.sut.test' id='x'><body>b</body></message>",
    "service-unavailable"
)]
fn untranslatable_messages_bounce(#[case] xml: &str, #[case] condition: &str) {
    let mut c = cfg();
    c.sip_routes.clear();
    c.sip_routes
        .insert("alice@sip.sut.test".into(), format!("{UA};transport=udp"));
    let mut t = T::with(c);
    t.xmpp(xml);
    assert!(t.take_sip().is_empty());
    let e = t.take_stanzas().pop().expect("bounce");
    assert_eq!(e.attr("type"), Some("error"));
    assert_eq!(e.attr("id"), Some("x"));
    assert_eq!(cond(&e).as_deref(), Some(condition));
}

#[test]
fn stanzas_not_for_the_gateway_are_dropped() {
    let mut t = T::new();
    t.xmpp("<message xmlns='jabber:server' from='juliet@remote.test' to='alice@other.test'><body>b</body></message>");
    t.xmpp("<message xmlns='jabber:server' from='x@sip.sut.test' to='alice@sip.sut.test'><body>b</body></message>");
    t.xmpp("<message xmlns='jabber:server' from='juliet@remote.test' to='alice@sip.sut.test' type='error'/>");
    assert!(t.take_sip().is_empty());
    assert!(t.take_stanzas().is_empty());
}

// ---------------------------------------------------------------------------------
// Presence: a SIP user subscribes to an XMPP contact (RFC 8048 §5.3)
// ---------------------------------------------------------------------------------

fn sub_state(r: &Request) -> String {
    r.headers
        .get("Subscription-State")
        .unwrap_or_default()
        .to_owned()
}

/// alice SUBSCRIBEs to juliet; returns the SUBSCRIBE.
fn alice_subscribes(t: &mut T) -> Request {
    let r = t.ua(
        Method::Subscribe,
        "sip:juliet@remote.test",
        &[
            ("Event", "presence"),
            ("Accept", "application/pidf+xml"),
            ("Expires", "600"),
        ],
        None,
    );
    t.send_request(&r);
    r
}

#[test]
fn sip_subscribe_becomes_subscribe_and_subscribed_becomes_notify_active() {
    // PSUB-09, PSUB-10, PSUB-15, PNOT-02, PNOT-03, ARCH-07.
    let mut t = T::new();
    alice_subscribes(&mut t);
    let out = t.take_sip();
    let resp = out
        .iter()
        .find_map(|m| match m {
            Message::Response(r) => Some(r.clone()),
            _ => None,
        })
        .expect("response");
    // RFC 6665 §8.3.1: never 202 to a SUBSCRIBE.
    assert_eq!(resp.status, 200);
    assert_eq!(resp.headers.expires().ok().flatten(), Some(600));
    assert!(resp.headers.to().expect("to").tag().is_some());
    assert!(resp.headers.contains("Contact"));
    let notify = out
        .iter()
        .find_map(|m| match m {
            Message::Request(r) => Some(r.clone()),
            _ => None,
        })
        .expect("NOTIFY");
    assert_eq!(notify.method, Method::Notify);
    assert!(sub_state(&notify).starts_with("pending"));
    t.answer(&notify, 200, &[]);
    let s = t.take_stanzas();
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].attr("type"), Some("subscribe"));
    assert_eq!(s[0].attr("from"), Some("alice@sip.sut.test"));
    assert_eq!(s[0].attr("to"), Some("juliet@remote.test"));

    t.xmpp("<presence xmlns='jabber:server' type='subscribed' from='juliet@remote.test' to='alice@sip.sut.test'/>");
    let n = t.requests().pop().expect("NOTIFY active");
    assert!(sub_state(&n).starts_with("active"), "{}", sub_state(&n));
    t.answer(&n, 200, &[]);

    // ARCH-07: presence to bob (not subscribed) reaches nobody.
    t.xmpp("<presence xmlns='jabber:server' from='juliet@remote.test/balcony' to='bob@sip.sut.test'><show>away</show></presence>");
    assert!(t.take_sip().is_empty());

    t.xmpp("<presence xmlns='jabber:server' from='juliet@remote.test/balcony' to='alice@sip.sut.test'><show>away</show></presence>");
    let n = t.requests().pop().expect("NOTIFY with PIDF");
    assert!(sub_state(&n).starts_with("active"));
    let pidf = Pidf::parse(std::str::from_utf8(&n.body).expect("utf8")).expect("pidf");
    assert_eq!(pidf.tuples.len(), 1);
    assert_eq!(pidf.tuples[0].basic.map(|b| b.as_str()), Some("open"));
    assert_eq!(pidf.tuples[0].show.map(|s| s.as_str()), Some("away"));
    t.answer(&n, 200, &[]);

    t.xmpp("<presence xmlns='jabber:server' type='unavailable' from='juliet@remote.test/balcony' to='alice@sip.sut.test'/>");
    let n = t.requests().pop().expect("NOTIFY closed");
    let pidf = Pidf::parse(std::str::from_utf8(&n.body).expect("utf8")).expect("pidf");
    assert_eq!(pidf.tuples[0].basic.map(|b| b.as_str()), Some("closed"));
}

#[test]
fn status_language_and_content_language_map_both_ways() {
    // PNOT-04 (RFC 7248 Tables 1 and 2): xml:lang ↔ Content-Language.
    let mut t = T::new();
    alice_subscribes(&mut t);
    for m in t.take_sip() {
        if let Message::Request(r) = m {
            t.answer(&r, 200, &[]);
        }
    }
    t.take_stanzas();
    t.xmpp("<presence xmlns='jabber:server' type='subscribed' from='juliet@remote.test' to='alice@sip.sut.test'/>");
    let n = t.requests().pop().expect("NOTIFY active");
    t.answer(&n, 200, &[]);
    t.xmpp("<presence xmlns='jabber:server' xml:lang='en' from='juliet@remote.test/balcony' to='alice@sip.sut.test'><status>In a meeting</status></presence>");
    let n = t.requests().pop().expect("NOTIFY with PIDF");
    assert_eq!(n.headers.get("Content-Language"), Some("en"));
    t.answer(&n, 200, &[]);

    let sub = juliet_subscribes(&mut t);
    let body = "<?xml version='1.0'?><presence xmlns='urn:ietf:params:xml:ns:pidf' \
        entity='pres:alice@sip.sut.test'><tuple id='ID-desk'><status><basic>open</basic>\
        </status><note>Bin beim Essen</note></tuple></presence>";
    let mut r = ua_notify(&mut t, &sub, "ua1", "pending", None);
    t.take_sip();
    r.headers.set("Subscription-State", "active;expires=600");
    r.headers.set("Content-Type", "application/pidf+xml");
    r.headers.set("Content-Language", "de");
    r.headers.set("CSeq", "2 NOTIFY");
    r.headers
        .set("Via", "SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-lang2");
    r.body = body.as_bytes().to_vec();
    r.headers.set("Content-Length", r.body.len().to_string());
    t.send_request(&r);
    let s = t.take_stanzas();
    let p = s
        .iter()
        .find(|p| p.attr("type").is_none())
        .expect("presence");
    let status = p.elements().find(|c| c.name == "status").expect("status");
    assert_eq!(status.lang(), Some("de"));
    assert_eq!(status.text(), "Bin beim Essen");
}

#[test]
fn unsubscribed_gives_notify_terminated_rejected() {
    // PSUB-10.
    let mut t = T::new();
    alice_subscribes(&mut t);
    t.take_sip();
    t.take_stanzas();
    t.xmpp("<presence xmlns='jabber:server' type='unsubscribed' from='juliet@remote.test' to='alice@sip.sut.test'/>");
    let n = t.requests().pop().expect("NOTIFY");
    assert!(sub_state(&n).starts_with("terminated"));
    assert!(sub_state(&n).contains("reason=rejected"));
    assert!(n.body.is_empty());
}

#[test]
fn unsolicited_subscribed_is_ignored() {
    // PSUB-16.
    let mut t = T::new();
    t.xmpp("<presence xmlns='jabber:server' type='subscribed' from='juliet@remote.test' to='alice@sip.sut.test'/>");
    assert!(t.take_sip().is_empty());
    assert!(t.take_stanzas().is_empty());
}

#[test]
fn sip_refresh_in_dialog_gets_a_notify() {
    // PSUB-11: the refresh reaches the same subscription via the dialog.
    let mut t = T::new();
    let first = alice_subscribes(&mut t);
    let out = t.take_sip();
    let to_tag = out
        .iter()
        .find_map(|m| match m {
            Message::Response(r) => r.headers.to().ok().and_then(|t| t.tag()),
            _ => None,
        })
        .expect("tag");
    let from = first.headers.get("From").expect("from").to_owned();
    let call_id = first.headers.call_id().expect("cid").to_owned();
    let to = format!("<sip:juliet@remote.test>;tag={to_tag}");
    let refresh = t.ua(
        Method::Subscribe,
        "sip:gw@127.0.0.1:5060",
        &[
            ("From", from.as_str()),
            ("To", to.as_str()),
            ("Call-ID", call_id.as_str()),
            ("Event", "presence"),
            ("Expires", "600"),
        ],
        None,
    );
    t.send_request(&refresh);
    let out = t.take_sip();
    assert!(
        out.iter()
            .any(|m| matches!(m, Message::Response(r) if r.status == 200))
    );
    assert!(
        out.iter()
            .any(|m| matches!(m, Message::Request(r) if r.method == Method::Notify))
    );
    assert_eq!(t.core.subscription_count(), 1);
}

// ---------------------------------------------------------------------------------
// Presence: an XMPP watcher subscribes to a SIP user (RFC 8048 §5.2)
// ---------------------------------------------------------------------------------

const JULIET_SUBSCRIBES: &str = "<presence xmlns='jabber:server' type='subscribe' \
    from='juliet@remote.test' to='alice@sip.sut.test'/>";

fn pidf_open(show: Option<&str>) -> String {
    let show = show
        .map(|s| format!("<show xmlns='jabber:client'>{s}</show>"))
        .unwrap_or_default();
    format!(
        "<?xml version='1.0' encoding='UTF-8'?><presence xmlns='urn:ietf:params:xml:ns:pidf' \
         entity='pres:alice@sip.sut.test'><tuple id='ID-desk'><status><basic>open</basic>{show}\
         </status></tuple></presence>"
    )
}

/// The UA's NOTIFY in the dialog of `sub` (answered with `resp`).
fn ua_notify(t: &mut T, sub: &Request, to_tag: &str, state: &str, body: Option<String>) -> Request {
    let from = format!("<sip:alice@sip.sut.test>;tag={to_tag}");
    let to = sub.headers.get("From").expect("from").to_owned();
    let cid = sub.headers.call_id().expect("cid").to_owned();
    let contact = sub
        .headers
        .contacts()
        .ok()
        .and_then(|c| c.into_iter().next())
        .map(|c| c.uri.as_str().to_owned())
        .expect("contact");
    let mut r = t.ua(
        Method::Notify,
        &contact,
        &[
            ("From", from.as_str()),
            ("To", to.as_str()),
            ("Call-ID", cid.as_str()),
            ("Event", "presence"),
            ("Subscription-State", state),
            ("Contact", "<sip:alice@127.0.0.1:5070>"),
        ],
        None,
    );
    if let Some(b) = body {
        r.headers.set("Content-Type", "application/pidf+xml");
        r.body = b.into_bytes();
        r.headers.set("Content-Length", r.body.len().to_string());
    }
    t.send_request(&r);
    r
}

/// juliet subscribes; the UA accepts with 200 (tag `ua1`); returns the SUBSCRIBE.
fn juliet_subscribes(t: &mut T) -> Request {
    t.xmpp(JULIET_SUBSCRIBES);
    let sub = t.requests().pop().expect("SUBSCRIBE");
    let to = format!("{};tag=ua1", sub.headers.get("To").expect("to"));
    let mut b = ResponseBuilder::new(&sub, 200)
        .header("Expires", "600")
        .header("Contact", "<sip:alice@127.0.0.1:5070>");
    b = b.to_tag("ua1");
    let resp = b.build(&mut t.rng);
    let _ = to;
    t.datagram(&resp.to_bytes());
    sub
}

#[test]
fn xmpp_subscribe_becomes_sip_subscribe() {
    // PSUB-01.
    let mut t = T::new();
    t.xmpp(JULIET_SUBSCRIBES);
    let r = t.requests().pop().expect("SUBSCRIBE");
    assert_eq!(r.method, Method::Subscribe);
    assert_eq!(r.uri.as_str(), "sip:alice@sip.sut.test");
    assert_eq!(
        r.headers.from().expect("from").uri.as_str(),
        "sip:juliet@remote.test"
    );
    assert_eq!(r.headers.get("Event"), Some("presence"));
    assert_eq!(r.headers.get("Accept"), Some("application/pidf+xml"));
    assert_eq!(r.headers.expires().ok().flatten(), Some(600));
    assert!(r.headers.contains("Contact"));
    assert!(t.take_stanzas().is_empty(), "neutral until NOTIFY active");
}

#[test]
fn notify_pending_is_silent_and_active_gives_subscribed_then_presence() {
    // PSUB-02, PSUB-03, PNOT-02, PNOT-03.
    let mut t = T::new();
    let sub = juliet_subscribes(&mut t);
    ua_notify(&mut t, &sub, "ua1", "pending;expires=600", None);
    assert_eq!(
        t.responses().iter().map(|r| r.status).collect::<Vec<_>>(),
        [200]
    );
    assert!(t.take_stanzas().is_empty(), "pending: nothing to XMPP");
    ua_notify(
        &mut t,
        &sub,
        "ua1",
        "active;expires=600",
        Some(pidf_open(Some("dnd"))),
    );
    assert_eq!(
        t.responses().iter().map(|r| r.status).collect::<Vec<_>>(),
        [200]
    );
    let s = t.take_stanzas();
    assert_eq!(s.len(), 2, "{s:?}");
    assert_eq!(s[0].attr("type"), Some("subscribed"));
    assert_eq!(
        s[0].attr("from"),
        Some("alice@sip.sut.test"),
        "bare (PSUB-15)"
    );
    assert_eq!(s[0].attr("to"), Some("juliet@remote.test"));
    assert_eq!(s[1].attr("type"), None);
    assert_eq!(s[1].attr("from"), Some("alice@sip.sut.test/desk"));
    assert_eq!(child_text(&s[1], "show").as_deref(), Some("dnd"));
}

#[test]
fn notify_before_the_2xx_creates_the_dialog() {
    // RFC 6665 §4.1.2.4.
    let mut t = T::new();
    t.xmpp(JULIET_SUBSCRIBES);
    let sub = t.requests().pop().expect("SUBSCRIBE");
    ua_notify(
        &mut t,
        &sub,
        "ua9",
        "active;expires=600",
        Some(pidf_open(None)),
    );
    assert_eq!(
        t.responses().iter().map(|r| r.status).collect::<Vec<_>>(),
        [200]
    );
    assert_eq!(t.take_stanzas().len(), 2);
}

// PRB-05: probes are answered from what the gateway holds, to approved watchers only.
#[test]
fn probes_are_answered_per_watcher() {
    let mut t = T::new();
    // Unknown relationship: unsubscribed from the bare JID, id mirrored.
    t.xmpp("<presence xmlns='jabber:server' type='probe' id='p0' from='juliet@remote.test/x' to='alice@sip.sut.test'/>");
    let s = t.take_stanzas();
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].attr("type"), Some("unsubscribed"));
    assert_eq!(s[0].attr("from"), Some("alice@sip.sut.test"));

    let sub = juliet_subscribes(&mut t);
    ua_notify(
        &mut t,
        &sub,
        "ua1",
        "active;expires=600",
        Some(pidf_open(Some("away"))),
    );
    t.take_sip();
    t.take_stanzas();
    t.xmpp("<presence xmlns='jabber:server' type='probe' id='p1' from='juliet@remote.test' to='alice@sip.sut.test'/>");
    let s = t.take_stanzas();
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].attr("type"), None, "available");
    assert_eq!(s[0].attr("from"), Some("alice@sip.sut.test/desk"));
    // RFC 6121 §4.3.2: the last presence as it was broadcast (it had no id).
    assert_eq!(s[0].attr("id"), None);
    assert_eq!(child_text(&s[0], "show").as_deref(), Some("away"));
    // ARCH-07: romeo is no watcher of alice; he learns nothing.
    t.xmpp("<presence xmlns='jabber:server' type='probe' id='p2' from='romeo@remote.test' to='alice@sip.sut.test'/>");
    let s = t.take_stanzas();
    assert_eq!(s[0].attr("type"), Some("unsubscribed"));
    assert!(t.take_sip().is_empty());
}

#[test]
fn refresh_probes_the_watcher_then_resubscribes_in_dialog() {
    // PSUB-05, PSUB-07, PRB-03.
    let mut t = T::new();
    let sub = juliet_subscribes(&mut t);
    ua_notify(
        &mut t,
        &sub,
        "ua1",
        "active;expires=600",
        Some(pidf_open(None)),
    );
    t.take_sip();
    t.take_stanzas();
    // refresh_delay(600) = 300 s.
    t.advance(Duration::from_secs(301));
    let s = t.take_stanzas();
    assert!(
        s.iter().any(|p| p.attr("type") == Some("probe")
            && p.attr("from") == Some("alice@sip.sut.test")
            && p.attr("to") == Some("juliet@remote.test")),
        "{s:?}"
    );
    let rs = t.requests();
    let re = rs
        .iter()
        .find(|r| r.method == Method::Subscribe)
        .expect("refresh");
    assert_eq!(
        re.headers.to().expect("to").tag().as_deref(),
        Some("ua1"),
        "in dialog"
    );
    assert_eq!(re.uri.as_str(), "sip:alice@127.0.0.1:5070", "remote target");
}

#[test]
fn unsubscribe_sends_expires_0_then_unsubscribed() {
    // PSUB-08.
    let mut t = T::new();
    let sub = juliet_subscribes(&mut t);
    ua_notify(&mut t, &sub, "ua1", "active;expires=600", None);
    t.take_sip();
    t.take_stanzas();
    t.xmpp("<presence xmlns='jabber:server' type='unsubscribe' from='juliet@remote.test' to='alice@sip.sut.test'/>");
    let r = t.requests().pop().expect("SUBSCRIBE Expires: 0");
    assert_eq!(r.headers.expires().ok().flatten(), Some(0));
    assert!(
        t.take_stanzas().is_empty(),
        "RFC 8048: unsubscribed after the 200"
    );
    t.answer(&r, 200, &[("Expires", "0")]);
    let s = t.take_stanzas();
    assert_eq!(s.last().and_then(|p| p.attr("type")), Some("unsubscribed"));
    assert_eq!(t.core.subscription_count(), 0);
}

#[test]
fn unsubscribe_withdraws_presence_and_answers_the_final_notify() {
    // PSUB-08, PSUB-19 (RFC 6121 §3.3.3); RFC 6665 §4.1.2.3: the notifier's
    // terminated NOTIFY after the 200 is acknowledged, not refused with 481.
    let mut t = T::new();
    let sub = juliet_subscribes(&mut t);
    ua_notify(
        &mut t,
        &sub,
        "ua1",
        "active;expires=600",
        Some(pidf_open(None)),
    );
    t.take_sip();
    t.take_stanzas();
    t.xmpp("<presence xmlns='jabber:server' type='unsubscribe' from='juliet@remote.test' to='alice@sip.sut.test'/>");
    let r = t.requests().pop().expect("SUBSCRIBE Expires: 0");
    assert_eq!(
        r.headers.call_id().ok(),
        sub.headers.call_id().ok(),
        "same dialog"
    );
    let s = t.take_stanzas();
    assert_eq!(s.len(), 1, "{s:?}");
    assert_eq!(s[0].attr("type"), Some("unavailable"));
    assert_eq!(s[0].attr("from"), Some("alice@sip.sut.test/desk"));
    t.answer(&r, 200, &[("Expires", "0")]);
    let s = t.take_stanzas();
    assert_eq!(s.len(), 1, "{s:?}");
    assert_eq!(s[0].attr("type"), Some("unsubscribed"));
    assert_eq!(s[0].attr("from"), Some("alice@sip.sut.test"));
    ua_notify(&mut t, &sub, "ua1", "terminated;reason=timeout", None);
    assert_eq!(
        t.responses().iter().map(|r| r.status).collect::<Vec<_>>(),
        [200]
    );
    assert!(t.take_stanzas().is_empty());
    // Once terminated, the dialog is gone for good.
    ua_notify(&mut t, &sub, "ua1", "active", None);
    assert_eq!(
        t.responses().iter().map(|r| r.status).collect::<Vec<_>>(),
        [481]
    );
}

#[test]
fn each_new_watcher_resource_refreshes_the_subscription() {
    // PSUB-05: initial presence of a resource (a new presence session) → re-SUBSCRIBE
    // in the dialog; further presence of that resource does not.
    let mut t = T::new();
    let sub = juliet_subscribes(&mut t);
    ua_notify(
        &mut t,
        &sub,
        "ua1",
        "active;expires=600",
        Some(pidf_open(None)),
    );
    t.take_sip();
    t.take_stanzas();
    let refreshes = |t: &mut T, xml: &str| {
        t.xmpp(xml);
        let n = t
            .requests()
            .iter()
            .filter(|r| r.method == Method::Subscribe)
            .inspect(|r| assert_eq!(r.headers.call_id().ok(), sub.headers.call_id().ok()))
            .count();
        t.take_stanzas();
        n
    };
    let avail = |res: &str| {
        format!(
            "<presence xmlns='jabber:server' from='juliet@remote.test/{res}' to='alice@sip.sut.test'/>"
        )
    };
    let gone = |res: &str| {
        format!(
            "<presence xmlns='jabber:server' type='unavailable' from='juliet@remote.test/{res}' to='alice@sip.sut.test'/>"
        )
    };
    assert_eq!(refreshes(&mut t, &avail("a")), 1);
    assert_eq!(refreshes(&mut t, &avail("a")), 0);
    assert_eq!(refreshes(&mut t, &avail("b")), 1);
    assert_eq!(refreshes(&mut t, &gone("a")), 0);
    assert_eq!(refreshes(&mut t, &avail("b")), 0);
    assert_eq!(refreshes(&mut t, &avail("a")), 1);
}

#[test]
fn probe_answers_offline_and_several_resources() {
    // PRB-05: offline → unavailable (bare, id mirrored); online → one presence per
    // available resource, from its full JID.
    let mut t = T::new();
    let sub = juliet_subscribes(&mut t);
    let closed = "<?xml version='1.0'?><presence xmlns='urn:ietf:params:xml:ns:pidf' \
        entity='pres:alice@sip.sut.test'><tuple id='t1'><status><basic>closed</basic></status>\
        </tuple></presence>";
    ua_notify(
        &mut t,
        &sub,
        "ua1",
        "active;expires=600",
        Some(closed.into()),
    );
    t.take_sip();
    t.take_stanzas();
    t.xmpp("<presence xmlns='jabber:server' type='probe' id='q1' from='juliet@remote.test/x' to='alice@sip.sut.test'/>");
    let s = t.take_stanzas();
    assert_eq!(s.len(), 1, "{s:?}");
    assert_eq!(s[0].attr("type"), Some("unavailable"));
    assert_eq!(s[0].attr("from"), Some("alice@sip.sut.test"));
    assert_eq!(s[0].attr("to"), Some("juliet@remote.test/x"));
    assert_eq!(s[0].attr("id"), Some("q1"));
    let two = "<?xml version='1.0'?><presence xmlns='urn:ietf:params:xml:ns:pidf' \
        entity='pres:alice@sip.sut.test'><tuple id='t1'><status><basic>open</basic></status>\
        </tuple><tuple id='ID-phone'><status><basic>open</basic>\
        <show xmlns='jabber:client'>dnd</show></status></tuple></presence>";
    ua_notify(&mut t, &sub, "ua1", "active;expires=600", Some(two.into()));
    t.take_sip();
    assert_eq!(t.take_stanzas().len(), 2, "PNOT-10: both resources");
    t.xmpp("<presence xmlns='jabber:server' type='probe' id='q2' from='juliet@remote.test' to='alice@sip.sut.test'/>");
    let s = t.take_stanzas();
    let froms: Vec<_> = s
        .iter()
        .map(|p| p.attr("from").unwrap_or_default())
        .collect();
    assert_eq!(froms, ["alice@sip.sut.test/t1", "alice@sip.sut.test/phone"]);
    assert!(s.iter().all(|p| p.attr("type").is_none()));
    assert_eq!(child_text(&s[1], "show").as_deref(), Some("dnd"));
}

#[rstest]
#[case(403)]
#[case(489)]
#[case(603)]
fn permanent_subscribe_failures_tell_the_watcher(#[case] code: u16) {
    // PSUB-06.
    let mut t = T::new();
    t.xmpp(JULIET_SUBSCRIBES);
    let r = t.requests().pop().expect("SUBSCRIBE");
    t.answer(&r, code, &[]);
    let s = t.take_stanzas();
    assert_eq!(s.last().and_then(|p| p.attr("type")), Some("unsubscribed"));
}

#[test]
fn subscribe_to_a_sip_user_without_route_is_refused() {
    let mut c = cfg();
    c.sip_routes.clear();
    let mut t = T::with(c);
    t.xmpp(JULIET_SUBSCRIBES);
    assert!(t.take_sip().is_empty());
    assert_eq!(t.take_stanzas()[0].attr("type"), Some("unsubscribed"));
}

#[test]
fn tcp_routes_send_over_tcp() {
    let mut c = cfg();
    c.sip_routes
        .insert("sip.sut.test".into(), format!("{UA};transport=tcp"));
    let mut t = T::with(c);
    t.xmpp(JULIET_MSG);
    let (to, m) = t.sip.pop().expect("MESSAGE");
    assert_eq!(to.transport, Transport::Tcp);
    let Message::Request(r) = m else {
        panic!("request expected")
    };
    assert!(
        r.headers
            .get("Via")
            .is_some_and(|v| v.contains("SIP/2.0/TCP"))
    );
    // Over TCP there are no retransmissions; Timer F still ends it.
    t.advance(T1 * 64);
    assert!(t.sip.is_empty());
    assert_eq!(
        cond(&t.take_stanzas().pop().expect("error")).as_deref(),
        Some("remote-server-timeout")
    );
}

#[test]
fn presence_reaches_only_the_addressed_watcher() {
    // ARCH-07 (RFC 8048 §8.2): alice and bob both watch juliet; presence addressed to
    // alice yields a NOTIFY in alice's dialog only.
    let mut t = T::new();
    alice_subscribes(&mut t);
    let bob = t.ua(
        Method::Subscribe,
        "sip:juliet@remote.test",
        &[
            ("From", "<sip:bob@sip.sut.test>"),
            ("Contact", "<sip:bob@127.0.0.1:5070>"),
            ("Event", "presence"),
            ("Expires", "600"),
        ],
        None,
    );
    t.send_request(&bob);
    t.take_sip();
    t.take_stanzas();
    for who in ["alice", "bob"] {
        t.xmpp(&format!(
            "<presence xmlns='jabber:server' type='subscribed' from='juliet@remote.test' \
             to='{who}@sip.sut.test'/>"
        ));
    }
    assert_eq!(t.requests().len(), 2, "one NOTIFY active each");
    t.xmpp("<presence xmlns='jabber:server' from='juliet@remote.test/balcony' to='alice@sip.sut.test'/>");
    let ns: Vec<Request> = t.requests();
    assert_eq!(ns.len(), 1);
    assert_eq!(
        ns[0].headers.to().expect("to").uri.as_str(),
        "sip:alice@sip.sut.test"
    );
}

#[test]
fn sip_poll_probes_and_answers_with_one_notify() {
    // PRB-02 (RFC 8048 §7.2), PRB-03: the probe goes bare → bare.
    let mut t = T::new();
    let r = t.ua(
        Method::Subscribe,
        "sip:juliet@remote.test",
        &[("Event", "presence"), ("Expires", "0")],
        None,
    );
    t.send_request(&r);
    let rs = t.responses();
    assert_eq!(rs.iter().map(|r| r.status).collect::<Vec<_>>(), [200]);
    let s = t.take_stanzas();
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].attr("type"), Some("probe"));
    assert_eq!(s[0].attr("from"), Some("alice@sip.sut.test"));
    assert_eq!(s[0].attr("to"), Some("juliet@remote.test"));
    t.xmpp("<presence xmlns='jabber:server' from='juliet@remote.test/balcony' to='alice@sip.sut.test'><show>chat</show></presence>");
    let n = t.requests().pop().expect("NOTIFY");
    assert!(sub_state(&n).starts_with("terminated"));
    let pidf = Pidf::parse(std::str::from_utf8(&n.body).expect("utf8")).expect("pidf");
    assert_eq!(pidf.tuples[0].show.map(|s| s.as_str()), Some("chat"));
    t.answer(&n, 200, &[]);
    assert_eq!(
        t.core.subscription_count(),
        0,
        "a poll leaves nothing behind"
    );
}

#[test]
fn a_lapsed_sip_subscription_ends_with_timeout_and_unavailable() {
    // PSUB-12 (RFC 8048 §5.3.3 variant), D-02.
    let mut t = T::new();
    alice_subscribes(&mut t);
    for m in t.take_sip() {
        if let Message::Request(n) = m {
            t.answer(&n, 200, &[]);
        }
    }
    t.take_stanzas();
    t.xmpp("<presence xmlns='jabber:server' type='subscribed' from='juliet@remote.test' to='alice@sip.sut.test'/>");
    let n = t.requests().pop().expect("NOTIFY active");
    t.answer(&n, 200, &[]);
    t.advance(Duration::from_secs(601));
    let n = t
        .requests()
        .into_iter()
        .find(|r| r.method == Method::Notify)
        .expect("final NOTIFY");
    assert!(
        sub_state(&n).contains("reason=timeout"),
        "{}",
        sub_state(&n)
    );
    let s = t.take_stanzas();
    assert_eq!(s.last().and_then(|p| p.attr("type")), Some("unavailable"));
}

#[test]
fn watcher_session_start_refreshes_the_sip_subscription() {
    // PSUB-05: fresh initial presence from juliet → a new SUBSCRIBE.
    let mut t = T::new();
    let sub = juliet_subscribes(&mut t);
    ua_notify(&mut t, &sub, "ua1", "active;expires=600", None);
    t.take_sip();
    t.take_stanzas();
    t.xmpp("<presence xmlns='jabber:server' from='juliet@remote.test/balcony' to='alice@sip.sut.test'/>");
    let rs = t.requests();
    assert_eq!(
        rs.iter().filter(|r| r.method == Method::Subscribe).count(),
        1
    );
    // More presence from the same session does not re-subscribe again.
    t.xmpp("<presence xmlns='jabber:server' from='juliet@remote.test/balcony' to='alice@sip.sut.test'><show>away</show></presence>");
    assert!(t.requests().is_empty());
}

#[test]
fn unsolicited_unsubscribed_and_presence_are_ignored() {
    // PSUB-17, PNOT-11.
    let mut t = T::new();
    t.xmpp("<presence xmlns='jabber:server' type='unsubscribed' from='juliet@remote.test' to='alice@sip.sut.test'/>");
    t.xmpp("<presence xmlns='jabber:server' from='juliet@remote.test' to='alice@sip.sut.test'/>");
    t.xmpp("<presence xmlns='jabber:server' type='unsubscribe' from='juliet@remote.test' to='alice@sip.sut.test'/>");
    assert!(t.take_sip().is_empty());
    assert!(t.take_stanzas().is_empty());
}

#[test]
fn run_time_routes_are_used() {
    let mut c = cfg();
    c.sip_routes.clear();
    let routes = super::config::SipRoutes::from_config(&c);
    let mut t = T::with(c.clone());
    t.core = GatewayCore::with_routes(
        c,
        routes.clone(),
        "127.0.0.1:5060".parse().expect("addr"),
        "127.0.0.1:5060".parse().expect("addr"),
        Box::new(SeededRandom(1)),
    );
    t.core.link_up(t.now);
    routes.insert(
        "alice@SIP.sut.test",
        SipTarget {
            transport: Transport::Udp,
            addr: ua_addr(),
        },
    );
    t.xmpp(JULIET_MSG);
    assert_eq!(t.requests().len(), 1);
}

#[test]
fn stanzas_bounced_by_the_link_keep_their_order() {
    // IM-15: a, b handed out; the link fails; c is queued; a and b come back.
    let mut t = T::new();
    t.auto_hand = false;
    for body in ["a", "b"] {
        let r = t.ua(Method::Message, "sip:juliet@remote.test", &[], Some(body));
        t.send_request(&r);
    }
    let held = std::mem::take(&mut t.held);
    let mut held = held.into_iter();
    let (a, ta) = held.next().expect("a");
    t.core.stanza_not_handed(t.now, a, ta);
    let r = t.ua(Method::Message, "sip:juliet@remote.test", &[], Some("c"));
    t.send_request(&r);
    let (b, tb) = held.next().expect("b");
    t.core.stanza_not_handed(t.now, b, tb);
    t.auto_hand = true;
    t.core.link_up(t.now);
    t.pump();
    let bodies: Vec<_> = t
        .take_stanzas()
        .iter()
        .filter_map(|s| child_text(s, "body"))
        .collect();
    assert_eq!(bodies, ["a", "b", "c"]);
}

#[test]
fn any_order_of_stanzas_and_sip_answers_never_panics() {
    // Robustness (COMMON rules): random XMPP stanzas, random SIP answers to whatever
    // the gateway sends, random time steps.
    let kinds = [
        "subscribe",
        "subscribed",
        "unsubscribe",
        "unsubscribed",
        "probe",
        "unavailable",
        "",
        "error",
        "bogus",
    ];
    let froms = [
        "juliet@remote.test",
        "juliet@remote.test/r",
        "romeo@remote.test",
        "remote.test",
    ];
    let tos = [
        "alice@sip.sut.test",
        "alice@sip.sut.test/x",
        "bob@sip.sut.test",
        "sip.sut.test",
    ];
    let codes = [100, 200, 202, 403, 404, 408, 423, 481, 489, 500, 603];
    let mut x: u64 = 0xfeed_beef;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut t = T::new();
    for _ in 0..3000 {
        let n = next();
        let from = froms[(n % 4) as usize];
        let to = tos[((n >> 8) % 4) as usize];
        match (n >> 16) % 4 {
            0 => {
                let k = kinds[((n >> 24) % kinds.len() as u64) as usize];
                let ty = if k.is_empty() { String::new() } else { format!(" type='{k}'") };
                t.xmpp(&format!(
                    "<presence xmlns='jabber:server'{ty} from='{from}' to='{to}' id='i{n}'/>"
                ));
            }
            1 => t.xmpp(&format!(
                "<message xmlns='jabber:server' from='{from}' to='{to}' id='m{n}'><body>b</body></message>"
            )),
            2 => {
                let r = t.ua(
                    Method::Subscribe,
                    "sip:juliet@remote.test",
                    &[("Event", "presence"), ("Expires", ["0", "60", "600"][((n >> 24) % 3) as usize])],
                    None,
                );
                t.send_request(&r);
            }
            _ => t.advance(Duration::from_millis((n >> 24) % 5000)),
        }
        for m in t.take_sip() {
            if let Message::Request(r) = m {
                let code = codes[((next() >> 8) % codes.len() as u64) as usize];
                t.answer(
                    &r,
                    code,
                    &[("Expires", "60"), ("Contact", "<sip:alice@127.0.0.1:5070>")],
                );
            }
        }
        t.take_stanzas();
    }
    t.advance(Duration::from_secs(7200));
}

// SIPIN-05 over TCP (RFC 3261 §18.2.2): once the connection a MESSAGE came on is closed,
// its final response goes over a new connection to the source IP and the Via's
// sent-by port; while it is open, over that connection.
#[rstest]
#[case::connection_closed(true, "127.0.0.1:5070")]
#[case::connection_open(false, "127.0.0.1:40001")]
fn tcp_response_after_the_connection_closed(#[case] closed: bool, #[case] to: &str) {
    let mut t = T::new();
    let conn: SocketAddr = "127.0.0.1:40001".parse().expect("addr");
    let r = t.ua(Method::Message, "sip:juliet@remote.test", &[], Some("x"));
    let tcp = |addr| SipTarget {
        transport: Transport::Tcp,
        addr,
    };
    t.core.handle_sip(t.now, tcp(conn), Message::Request(r));
    t.pump();
    assert_eq!(t.take_stanzas().len(), 1);
    if closed {
        t.core.tcp_closed(t.now, conn);
    }
    t.advance(WINDOW);
    let (dest, m) = t.sip.pop().expect("the 200");
    assert_eq!(dest, tcp(to.parse().expect("addr")));
    assert!(matches!(m, Message::Response(r) if r.status == 200));
}
