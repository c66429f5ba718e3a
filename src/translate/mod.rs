//! Pure SIP/SIMPLE ⇄ XMPP mappings: the translating core of a gateway (RFC 7247,
//! RFC 8048, RFC 7572, RFC 3863).
//!
//! Nothing here knows a socket, a clock or a SIP stack. Every function maps *values*
//! (addresses, error codes, presence states, message fields) between small plain data
//! types, and the subscription state machines take time as an argument and return
//! actions for a driver to perform (sans-IO, see STYLE.md §1).
//!
//! | Module | Source | Requirements |
//! |---|---|---|
//! | [`address`] | RFC 7247 §6, §8; XEP-0106 | ADDR-01, -02, -04, -05, -07, -08; ARCH-04 |
//! | [`error`] | RFC 7247 §7 Tables 2–3 | ERR-01..ERR-08 |
//! | [`presence`] | RFC 8048 §6, RFC 3863, RFC 6121 §4.7 | PNOT-01..PNOT-06, PNOT-08 |
//! | [`subscription`] | RFC 8048 §5, §7.2, §8.1; RFC 6665 | PSUB-01..03, -05..12, -14..19 (pair-local parts); PRB-02, PRB-03 |
//! | [`message`] | RFC 7572 §4–§8, RFC 6121 §5.2 | IM-01, -02, -04..-07, -09, -11, -12; D-03 |
//! | [`xml`] | XML 1.0 | bounded parsing of SIP XML bodies |
//!
//! Where RFC 8048 and RFC 7248 differ, RFC 8048 is followed and the RFC 7248
//! behaviour is available as a legacy option (D-01, D-02).

pub mod address;
pub mod error;
pub mod message;
pub mod presence;
pub mod subscription;
pub mod xml;

pub use address::{AddressError, JidParts, Scheme, jid_to_sip, sip_to_jid};
pub use error::{sip_to_xmpp, sip_to_xmpp_error, xmpp_to_sip, xmpp_to_sip_with};
pub use message::{SipMessage, XmppMessage, sip_to_xmpp_message, xmpp_to_sip_message};
pub use presence::{Pidf, XmppPresence, pidf_to_xmpp_presence, xmpp_presence_to_pidf};
pub use subscription::{SipToXmpp, XmppToSip};

#[cfg(test)]
mod robustness {
    //! No input from the network may panic any parser here (COMMON rules). A small
    //! deterministic generator builds strings from the characters the parsers care
    //! about and feeds them to every entry point.

    use super::*;
    use crate::xmpp::element::Element;

    const ALPHABET: &[&str] = &[
        "sip:",
        "sips:",
        "pres:",
        "im:",
        "<",
        ">",
        "@",
        "%",
        "%2",
        "%C3",
        "%FF",
        "%41",
        ";",
        ";gr=",
        "?",
        ":",
        "[",
        "]",
        "\\",
        "\\26",
        "\\5c",
        "/",
        "&",
        "'",
        "\"",
        " ",
        "a",
        "Z",
        "0",
        ".",
        "-",
        "\u{fc}",
        "\u{1f600}",
        "\u{0}",
        "\u{7f}",
        "=",
        "<presence",
        "<tuple",
        " id='x'",
        " xmlns='urn:ietf:params:xml:ns:pidf'",
        " entity='pres:a@b'",
        "</tuple>",
        "</presence>",
        "<status>",
        "<basic>open</basic>",
        "</status>",
        "/>",
        "&amp;",
        "&#x0;",
        "&#1114112;",
        "<![CDATA[",
        "]]>",
        "<!DOCTYPE",
        "<?xml version='1.0'?>",
        "th~",
        "ID-",
        "_",
        "_C3",
        "_ZZ",
    ];

    struct Gen(u64);
    impl Gen {
        fn next(&mut self) -> u64 {
            // xorshift64
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn string(&mut self) -> String {
            let n = (self.next() % 24) as usize;
            (0..n)
                .map(|_| ALPHABET[(self.next() % ALPHABET.len() as u64) as usize])
                .collect()
        }
    }

    #[test]
    fn parsers_never_panic_on_generated_input() {
        let mut g = Gen(0x5eed_f00d_dead_beef);
        for _ in 0..20_000 {
            let s = g.string();
            let _ = sip_to_jid(&s);
            if let Ok(j) = JidParts::parse(&s) {
                for scheme in [Scheme::Sip, Scheme::Sips, Scheme::Im, Scheme::Pres] {
                    let _ = jid_to_sip(&j, scheme);
                }
            }
            let raw = JidParts::new(Some(&s), "x.test", Some(&s));
            let _ = jid_to_sip(&raw, Scheme::Sip);
            let _ = address::unescape_localpart(&s);
            let _ = address::escape_localpart(&s);
            if let Ok(p) = Pidf::parse(&s) {
                let _ = pidf_to_xmpp_presence(&p);
            }
            let _ = presence::resource_from_tuple_id(&s);
            let _ = presence::tuple_resource(&s);
            let _ = message::call_id_to_thread(&s);
            let _ = message::header_uri(&s);
            let sip = SipMessage {
                request_uri: s.clone(),
                from: s.clone(),
                to: s.clone(),
                call_id: s.clone(),
                content_type: s.clone(),
                content_language: Some(s.clone()),
                subject: Some(s.clone()),
                body: s.clone(),
            };
            let _ = sip_to_xmpp_message(&sip);
            let e = Element::new("jabber:server", "presence").with_attr("type", s.clone());
            let _ = XmppPresence::from_element(&e);
        }
    }

    #[test]
    fn state_machines_never_panic_on_any_input_order() {
        use std::time::{Duration, Instant};
        use subscription::*;
        let t0 = Instant::now();
        let a = JidParts::new(Some("a"), "x.test", Some("r"));
        let b = JidParts::new(Some("b"), "y.test", None);
        let mut g = Gen(42);
        for _ in 0..500 {
            let mut xs = XmppToSip::new(SubscriptionConfig::default(), &a, &b);
            let mut sx = SipToXmpp::new(SubscriptionConfig::default(), &b, &a);
            let mut now = t0;
            for _ in 0..30 {
                now += Duration::from_secs(g.next() % 4000);
                let code =
                    [100, 200, 202, 403, 408, 423, 481, 489, 500, 603][(g.next() % 10) as usize];
                let state = match g.next() % 4 {
                    0 => SubState::Pending,
                    1 => SubState::Active,
                    2 => SubState::Terminated(Some(TerminationReason::Rejected)),
                    _ => SubState::Terminated(Some(TerminationReason::Deactivated)),
                };
                let xi = match g.next() % 7 {
                    0 => XsInput::XmppSubscribe,
                    1 => XsInput::XmppUnsubscribe,
                    2 => XsInput::XmppSessionStarted,
                    3 => XsInput::ProbeRejected,
                    4 => XsInput::SubscribeResponse {
                        code,
                        expires: Some((g.next() % 5000) as u32),
                        min_expires: None,
                    },
                    5 => XsInput::Notify {
                        state,
                        expires: Some((g.next() % 5000) as u32),
                        body: None,
                    },
                    _ => XsInput::Tick,
                };
                xs.handle(now, xi);
                while xs.poll_action().is_some() {}
                let kind = if g.next().is_multiple_of(2) {
                    presence::PresenceKind::Available
                } else {
                    presence::PresenceKind::Unavailable
                };
                let si = match g.next() % 5 {
                    0 => SxInput::Subscribe {
                        expires: (g.next() % 3) as u32 * 1800,
                    },
                    1 => SxInput::XmppSubscribed,
                    2 => SxInput::XmppUnsubscribed,
                    3 => SxInput::XmppPresence {
                        from: a.clone(),
                        presence: XmppPresence::new(kind),
                    },
                    _ => SxInput::Tick,
                };
                sx.handle(now, si);
                while sx.poll_action().is_some() {}
            }
        }
    }
}
