//! Cross-module tests: realistic peer messages, parse → serialise → parse round trips, and
//! a deterministic mutation pass over the samples (no input may panic).

use rstest::rstest;

use super::*;

/// A MESSAGE in the style Kamailio's `xmpp` module sends towards SIP (see the project's
/// interop notes): Contact without `<>`, `Content-type` spelled so, CSeq 10, a Via without
/// port, and the body copied verbatim with its trailing CRLF.
const KAMAILIO_MESSAGE: &str = concat!(
    "MESSAGE sip:carol@sip-users.test SIP/2.0\r\n",
    "Via: SIP/2.0/UDP 127.0.0.3;branch=z9hG4bK8f1c.6a2e31b5000000000000000000000000.0\r\n",
    "To: <sip:carol@sip-users.test>\r\n",
    "From: <sip:alice*xmpp-a.test@sip.test>;tag=4b1e7c2a9f3d8e6b5a4c3d2e1f0a9b8c-77e2\r\n",
    "CSeq: 10 MESSAGE\r\n",
    "Call-ID: 5d0e3a9c7b1f2e4d-4711@127.0.0.3\r\n",
    "Content-Length: 14\r\n",
    "User-Agent: kamailio (5.6.3 (x86_64/linux))\r\n",
    "Content-type: text/plain\r\n",
    "Contact: sip:alice*xmpp-a.test@sip.test\r\n",
    "Max-Forwards: 70\r\n",
    "\r\n",
    "Hello, Carol\r\n"
);

/// A MESSAGE as a SIPp scenario writes it: display name token, `[len]` padded with spaces,
/// Subject, Contact without `<>`.
const SIPP_MESSAGE: &str = concat!(
    "MESSAGE sip:juliet@xmpp.test SIP/2.0\r\n",
    "Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-4242-1-0\r\n",
    "From: sipp <sip:sipp@127.0.0.1:5061>;tag=4242SIPpTag001\r\n",
    "To: <sip:juliet@xmpp.test>\r\n",
    "Call-ID: 1-4242@127.0.0.1\r\n",
    "CSeq: 1 MESSAGE\r\n",
    "Contact: sip:sipp@127.0.0.1:5061\r\n",
    "Max-Forwards: 70\r\n",
    "Subject: Performance Test\r\n",
    "Content-Type: text/plain\r\n",
    "Content-Length:    12\r\n",
    "\r\n",
    "Hello world!"
);

/// RFC 3261 §7.3.3's compact forms and §7.3.1 folding, all in one message.
const COMPACT_FOLDED: &str = concat!(
    "SUBSCRIBE sip:juliet@xmpp.test SIP/2.0\r\n",
    "v: SIP/2.0/TCP 127.0.0.1:5060;branch=z9hG4bKc1;rport,\r\n",
    " SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKc0;received=10.0.0.9\r\n",
    "f: \"Romeo\"\r\n  <sip:romeo@sip.test>;tag=t1\r\n",
    "t: sip:juliet@xmpp.test\r\n",
    "i: c7@127.0.0.1\r\n",
    "CSeq: 3 SUBSCRIBE\r\n",
    "Max-Forwards: 69\r\n",
    "m: <sip:romeo@127.0.0.1:5060;transport=tcp>\r\n",
    "o: presence;id=9\r\n",
    "u: presence, message-summary\r\n",
    "k: eventlist\r\n",
    "s: folded\r\n\tsubject\r\n",
    "e: gzip\r\n",
    "Expires: 600\r\n",
    "Content-Language: en\r\n",
    "c: application/pidf+xml\r\n",
    "l: 0\r\n",
    "\r\n"
);

const PIDF_NOTIFY: &str = concat!(
    "NOTIFY sip:romeo@127.0.0.1:5060;transport=tcp SIP/2.0\r\n",
    "Via: SIP/2.0/TCP 127.0.0.2:5060;branch=z9hG4bKn1\r\n",
    "Max-Forwards: 70\r\n",
    "From: <sip:juliet@xmpp.test>;tag=j1\r\n",
    "To: <sip:romeo@sip.test>;tag=t1\r\n",
    "Call-ID: c7@127.0.0.1\r\n",
    "CSeq: 1 NOTIFY\r\n",
    "Event: presence;id=9\r\n",
    "Subscription-State: active;expires=599\r\n",
    "Contact: <sip:juliet@127.0.0.2:5060;transport=tcp>\r\n",
    "Content-Type: application/pidf+xml\r\n",
    "Content-Length: 167\r\n",
    "\r\n",
    "<?xml version=\"1.0\"?><presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"pres:juliet@xmpp.test\">",
    "<tuple id=\"a\"><status><basic>open</basic></status></tuple></presence>"
);

const OK_RESPONSE: &str = concat!(
    "SIP/2.0 200 OK\r\n",
    "Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-4242-1-0;received=127.0.0.1\r\n",
    "From: sipp <sip:sipp@127.0.0.1:5061>;tag=4242SIPpTag001\r\n",
    "To: <sip:juliet@xmpp.test>;tag=x1\r\n",
    "Call-ID: 1-4242@127.0.0.1\r\n",
    "CSeq: 1 MESSAGE\r\n",
    "Content-Length: 0\r\n",
    "\r\n"
);

fn udp(s: &str) -> Message {
    match parse_datagram(s.as_bytes(), &Limits::default()) {
        Ok(Item::Message(m)) => m,
        other => panic!("sample must parse: {other:?}"),
    }
}

fn request(s: &str) -> Request {
    match udp(s) {
        Message::Request(r) => r,
        other => panic!("sample is a request: {other:?}"),
    }
}

#[test]
fn kamailio_style_message() {
    let r = request(KAMAILIO_MESSAGE);
    assert_eq!(validate_request(&r), Ok(()));
    assert_eq!(r.method, Method::Message);
    let h = &r.headers;
    assert_eq!(
        h.cseq(),
        Ok(CSeq {
            seq: 10,
            method: Method::Message
        })
    );
    let via = h.top_via().expect("via");
    assert_eq!((via.host.as_str(), via.port), ("127.0.0.3", None));
    let contact = h.contacts().expect("contact");
    assert_eq!(contact[0].uri.as_str(), "sip:alice*xmpp-a.test@sip.test");
    assert_eq!(contact[0].uri.user(), Some("alice*xmpp-a.test"));
    assert_eq!(
        h.content_type()
            .expect("ct")
            .map(|c| c.essence())
            .as_deref(),
        Some("text/plain")
    );
    assert_eq!(r.body, b"Hello, Carol\r\n");
    assert_eq!(h.from().expect("from").tag().map(|t| t.len()), Some(37));
}

#[test]
fn sipp_style_message() {
    let r = request(SIPP_MESSAGE);
    assert_eq!(validate_request(&r), Ok(()));
    assert_eq!(r.headers.get("Content-Length"), Some("12"));
    assert_eq!(r.body, b"Hello world!");
    let from = r.headers.from().expect("from");
    assert_eq!(from.display_name.as_deref(), Some("sipp"));
    assert_eq!(from.tag().as_deref(), Some("4242SIPpTag001"));
    assert_eq!(r.headers.subject(), Some("Performance Test"));
    // SIPp's branch has the cookie but dashes after it: still RFC 3261.
    let key = transaction::ServerKey::from_request(&r).expect("key");
    assert_eq!(key.sent_by, "127.0.0.1:5061");
}

#[test]
fn compact_forms_and_folding() {
    let r = request(COMPACT_FOLDED);
    assert_eq!(validate_request(&r), Ok(()));
    let h = &r.headers;
    let vias = h.vias().expect("vias");
    assert_eq!(vias.len(), 2);
    assert_eq!(vias[0].rport(), Some(None));
    assert_eq!(vias[1].received().as_deref(), Some("10.0.0.9"));
    let from = h.from().expect("from");
    assert_eq!(from.display_name.as_deref(), Some("Romeo"));
    assert_eq!(from.tag().as_deref(), Some("t1"));
    assert_eq!(
        h.to().map(|t| t.uri.to_string()),
        Ok("sip:juliet@xmpp.test".into())
    );
    assert_eq!(h.call_id(), Ok("c7@127.0.0.1"));
    assert_eq!(h.max_forwards(), Ok(Some(69)));
    assert_eq!(
        h.event().ok().flatten().and_then(|e| e.id()).as_deref(),
        Some("9")
    );
    assert_eq!(h.values("Allow-Events"), ["presence", "message-summary"]);
    assert_eq!(h.get("Supported"), Some("eventlist"));
    assert_eq!(h.subject(), Some("folded subject"));
    assert_eq!(h.get("Content-Encoding"), Some("gzip"));
    assert_eq!(h.expires(), Ok(Some(600)));
    assert_eq!(h.content_language(), Ok(vec!["en".to_owned()]));
    assert_eq!(
        h.content_type()
            .ok()
            .flatten()
            .map(|c| c.essence())
            .as_deref(),
        Some("application/pidf+xml")
    );
}

#[test]
fn notify_with_pidf() {
    let r = request(PIDF_NOTIFY);
    assert_eq!(validate_request(&r), Ok(()));
    let st = r
        .headers
        .subscription_state()
        .ok()
        .flatten()
        .expect("state");
    assert_eq!((st.state, st.expires), (SubState::Active, Some(599)));
    assert!(r.body.ends_with(b"</presence>"));
}

#[rstest]
#[case::kamailio(KAMAILIO_MESSAGE)]
#[case::sipp(SIPP_MESSAGE)]
#[case::compact_folded(COMPACT_FOLDED)]
#[case::notify(PIDF_NOTIFY)]
#[case::response(OK_RESPONSE)]
fn round_trips(#[case] sample: &str) {
    let first = udp(sample);
    let bytes = first.to_bytes();
    let second = match parse_datagram(&bytes, &Limits::default()) {
        Ok(Item::Message(m)) => m,
        other => panic!("serialised form must parse: {other:?}"),
    };
    assert_eq!(first, second);
    // Serialising again is stable byte for byte.
    assert_eq!(second.to_bytes(), bytes);
    // And over a stream, where Content-Length is mandatory, the output frames itself.
    let mut d = StreamDecoder::default();
    d.feed(&bytes);
    d.feed(&bytes);
    assert_eq!(d.next(), Ok(Some(Item::Message(first.clone()))));
    assert_eq!(d.next(), Ok(Some(Item::Message(first))));
    assert_eq!(d.next(), Ok(None));
}

#[test]
fn serialisation_recomputes_a_wrong_content_length() {
    let mut r = request(SIPP_MESSAGE);
    r.body = b"changed body, longer".to_vec();
    let bytes = r.to_bytes();
    let again = request(std::str::from_utf8(&bytes).expect("utf-8"));
    assert_eq!(again.body, b"changed body, longer");
    assert_eq!(again.headers.get("Content-Length"), Some("20"));
}

/// Exercises every accessor on a message; only absence of panics matters here.
fn touch(m: &Message) {
    let h = m.headers();
    let _ = (
        h.call_id(),
        h.from(),
        h.to(),
        h.cseq(),
        h.vias(),
        h.top_via(),
    );
    let _ = (
        h.max_forwards(),
        h.expires(),
        h.contacts(),
        h.record_route(),
        h.route(),
    );
    let _ = (
        h.event(),
        h.subscription_state(),
        h.content_type(),
        h.content_language(),
    );
    let _ = m.to_bytes();
    match m {
        Message::Request(r) => {
            let _ = validate_request(r);
            let _ = transaction::ServerKey::from_request(r);
            let _ = dialog::DialogId::of_received_request(r);
            let _ = (r.uri.user(), r.uri.host(), r.uri.port(), r.uri.param("lr"));
        }
        Message::Response(r) => {
            let _ = validate_response(r);
            let _ = transaction::ClientKey::from_response(r);
        }
    }
}

#[test]
fn mutated_samples_never_panic() {
    const REPLACEMENTS: [u8; 8] = [0, b'\r', b'\n', b' ', b':', b';', b'"', 0xFF];
    for sample in [KAMAILIO_MESSAGE, COMPACT_FOLDED, PIDF_NOTIFY, OK_RESPONSE] {
        let bytes = sample.as_bytes();
        for i in 0..bytes.len() {
            for r in REPLACEMENTS {
                let mut m = bytes.to_vec();
                if let Some(b) = m.get_mut(i) {
                    *b = r;
                }
                if let Ok(Item::Message(msg)) = parse_datagram(&m, &Limits::default()) {
                    touch(&msg);
                }
                let mut d = StreamDecoder::default();
                d.feed(&m);
                while let Ok(Some(_)) = d.next() {}
            }
            // Truncation at every point, too.
            let _ = parse_datagram(bytes.get(..i).unwrap_or_default(), &Limits::default());
        }
    }
}

/// A whole pager-mode exchange with no sockets: a client transaction on one side, a
/// server transaction on the other, datagrams handed across in virtual time, the first
/// request lost once so Timer E has to retransmit it.
#[test]
fn client_and_server_transactions_back_to_back() {
    use std::time::{Duration, Instant};
    use transaction::*;

    let start = Instant::now();
    let mut rng = builder::SeededRandom(42);
    let local = builder::Local {
        aor: NameAddr::parse("From", "<sip:romeo@sip.test>").expect("valid"),
        transport: "UDP".into(),
        sent_by: "127.0.0.1:5060".into(),
        contact: None,
    };
    let req = builder::RequestBuilder::new(
        Method::Message,
        Uri::parse("sip:juliet@xmpp.test").expect("uri"),
    )
    .body("text/plain", "hi")
    .build(&local, &mut rng);
    let mut client =
        ClientTransaction::new(start, &req, Reliability::Unreliable, Timers::default())
            .expect("client");
    assert!(
        matches!(client.poll_output(), Some(ClientOutput::Transmit(_))),
        "first copy is lost"
    );

    let at = client.poll_timeout().expect("timer E");
    assert_eq!(at - start, Duration::from_millis(500));
    client.handle_timeout(at);
    let Some(ClientOutput::Transmit(wire)) = client.poll_output() else {
        panic!("retransmission");
    };
    let Ok(Item::Message(Message::Request(received))) = parse_datagram(&wire, &Limits::default())
    else {
        panic!("server parses the request");
    };
    let mut server = ServerTransaction::new(&received, Reliability::Unreliable, Timers::default())
        .expect("server");
    let ok = builder::ResponseBuilder::new(&received, 200).build(&mut rng);
    server
        .handle_input(at, ServerInput::Respond(ok))
        .expect("respond");
    let Some(ServerOutput::Transmit(wire)) = server.poll_output() else {
        panic!("server sends 200");
    };
    let Ok(Item::Message(Message::Response(resp))) = parse_datagram(&wire, &Limits::default())
    else {
        panic!("client parses the response");
    };
    assert_eq!(ClientKey::from_response(&resp).as_ref(), Ok(client.key()));
    client
        .handle_input(at, ClientInput::Response(resp))
        .expect("matches");
    assert!(matches!(client.poll_output(), Some(ClientOutput::Response(r)) if r.status == 200));
    assert_eq!(client.state(), ClientState::Completed);
    client.handle_timeout(at + T4);
    assert_eq!(client.poll_output(), Some(ClientOutput::Terminated));
    server.handle_timeout(at + 64 * T1);
    assert_eq!(server.poll_output(), Some(ServerOutput::Terminated));
}
