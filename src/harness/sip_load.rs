//! Loader rules for SIP actors and SIP steps (docs/scenarios.md "SIP actors"); a child of
//! `load` so the validator's bookkeeping stays private.

use toml::Spanned;

use super::super::model::{ScenarioFile, StepFile};
use super::super::sip_actor::{SipActor, SipProfile, SipTransport};
use super::super::sip_match;
use super::{Action, Actor, ActorKind, GW_PLACEHOLDER, GW_PROBE, GW_VAR, NOTHING, Validator, Walk};
use crate::sip::Uri;

impl Validator<'_> {
    /// `[sip.NAME]` tables: a `sip:`/`sips:` URI with user and host, a known transport and
    /// profile; actors of one domain share one socket, so they must share the transport.
    pub(super) fn sip_actors(&mut self, f: &ScenarioFile, actors: &mut Vec<(usize, Actor)>) {
        // `{gw}` would name an actor `gw` instead of the gateway's domain: not both.
        if !f.sip.is_empty() {
            let gw = f
                .xmpp
                .get(GW_VAR)
                .map(|a| a.span())
                .or_else(|| f.component.get(GW_VAR).map(|a| a.span()))
                .or_else(|| f.sip.get(GW_VAR).map(|a| a.span()));
            if let Some(span) = gw {
                self.err(
                    span,
                    "a scenario with SIP actors may not name an actor `gw`: {gw} is the gateway's domain",
                );
            }
        }
        for (name, a) in &f.sip {
            if f.xmpp.contains_key(name) || f.component.contains_key(name) {
                self.err(a.span(), format!("actor name {name:?} is declared twice"));
            }
            let file = a.get_ref();
            let uri_text = file.uri.get_ref();
            // `{gw}` (the SUT's gateway domain) is bound when the scenario runs against a
            // target; it is validated as a stand-in host.
            let probe = uri_text.replace(GW_PLACEHOLDER, GW_PROBE);
            let uri = Uri::parse(&probe).filter(|u| u.is_sip());
            let (user, domain) = match &uri {
                Some(u) if u.user().is_some_and(|x| !x.is_empty()) && u.host().is_some() => (
                    u.user().map(str::to_string),
                    match u.host().unwrap_or_default().to_ascii_lowercase() {
                        h if h == GW_PROBE && uri_text.contains(GW_PLACEHOLDER) => {
                            GW_PLACEHOLDER.to_string()
                        }
                        h => h,
                    },
                ),
                _ => {
                    self.err(
                        file.uri.span(),
                        format!(
                            "uri {uri_text:?} must be a sip: or sips: URI with user and host (RFC 3261 §19.1)"
                        ),
                    );
                    (None, String::new())
                }
            };
            let transport = match file.transport.as_ref().map(|t| t.get_ref().as_str()) {
                None | Some("udp") => SipTransport::Udp,
                Some("tcp") => SipTransport::Tcp,
                Some(other) => {
                    let span = file.transport.as_ref().map_or(a.span(), Spanned::span);
                    self.err(
                        span,
                        format!("transport must be \"udp\" or \"tcp\", not {other:?}"),
                    );
                    SipTransport::Udp
                }
            };
            let profile = match file.profile.as_ref().map(|p| p.get_ref().as_str()) {
                None | Some("rfc7572") => SipProfile::Rfc7572,
                Some(other) => {
                    let span = file.profile.as_ref().map_or(a.span(), Spanned::span);
                    self.err(
                        span,
                        format!(
                            "profile {other:?} is not supported (known: \"rfc7572\"; the MS chat-session dialect is planned)"
                        ),
                    );
                    SipProfile::Rfc7572
                }
            };
            let clash = actors.iter().any(|(_, o)| {
                matches!(&o.kind, ActorKind::Sip(s) if s.domain == domain && s.transport != transport)
            });
            if clash {
                self.err(
                    a.span(),
                    format!(
                        "SIP actors of domain {domain:?} share one socket: give them the same transport"
                    ),
                );
            }
            let answer = file.answer.as_ref().map(|s| *s.get_ref());
            if let Some(s) = &file.answer
                && !(200..=699).contains(s.get_ref())
            {
                self.err(
                    s.span(),
                    "answer must be a final status code, 200..=699 (RFC 3261 §7.2)",
                );
            }
            actors.push((
                a.span().start,
                Actor {
                    name: name.clone(),
                    kind: ActorKind::Sip(SipActor {
                        uri: uri_text.clone(),
                        user,
                        domain,
                        transport,
                        profile,
                        answer,
                    }),
                    // TLS certificates and partner policies are XMPP notions.
                    cert: "none".to_string(),
                    partner: None,
                },
            ));
        }
    }

    /// A stream may not take a SIP actor's name: `send`/`expect` would be ambiguous.
    pub(super) fn not_sip_actor(&mut self, s: &Spanned<String>, w: &Walk<'_>) {
        if w.actors
            .iter()
            .any(|a| a.name == *s.get_ref() && matches!(a.kind, ActorKind::Sip(_)))
        {
            self.err(
                s.span(),
                format!("stream name {:?} is the name of a SIP actor", s.get_ref()),
            );
        }
    }

    /// Whether a step's value names a SIP actor (for `expect_none`).
    pub(super) fn names_sip_actor(&self, v: Option<&Spanned<String>>, w: &Walk<'_>) -> bool {
        v.is_some_and(|v| {
            w.actors
                .iter()
                .any(|a| a.name == *v.get_ref() && matches!(a.kind, ActorKind::Sip(_)))
        })
    }

    /// `send`/`expect` with `sip`: the value names a SIP actor; the message must parse
    /// (sends) or be a valid SIP template (expects), with the variables defined so far.
    pub(super) fn sip_step(
        &mut self,
        action: &str,
        st: &StepFile,
        timeout: std::time::Duration,
        w: &mut Walk<'_>,
    ) -> Option<Action> {
        let target = if action == "send" {
            st.send.as_ref()?
        } else {
            st.expect.as_ref()?
        };
        let sip = st.sip.as_ref()?;
        if let Some(x) = &st.xml {
            self.err(x.span(), "a step has `xml` or `sip`, not both");
        }
        if let Some(e) = &st.exact {
            self.err(e.span(), "`exact` applies to XML templates only");
        }
        if let Some(b) = &st.branch {
            self.err(b.span(), "`branch` applies to XML templates only");
        }
        let actor = target.get_ref().clone();
        if !w
            .actors
            .iter()
            .any(|a| a.name == actor && matches!(a.kind, ActorKind::Sip(_)))
        {
            self.err(
                target.span(),
                format!("{action} with `sip` needs a SIP actor ([sip.NAME]); {actor:?} is not one"),
            );
            return None;
        }
        let lookup = |n: &str| w.lookup(n);
        if action == "send" {
            let raw = st.raw.as_ref().is_some_and(|r| *r.get_ref());
            // A capture may stand for a URI (a Contact, then a Request-URI): try the
            // dummy values again as URIs before calling the message broken.
            let as_uri = |n: &str| {
                w.lookup(n).map(|v| {
                    if w.captures.iter().any(|c| c == n) {
                        format!("sip:{n}@capture.invalid")
                    } else {
                        v
                    }
                })
            };
            match sip_match::substitute_payload(sip.get_ref(), &lookup) {
                Ok(text) => {
                    let uri_text =
                        sip_match::substitute_payload(sip.get_ref(), &as_uri).unwrap_or_default();
                    if !raw
                        && let Err(e) = sip_match::payload_message(&text)
                        && sip_match::payload_message(&uri_text).is_err()
                    {
                        self.err(
                            sip.span(),
                            format!(
                                "sip: not a SIP message: {e} (write `raw = true` to send it anyway)"
                            ),
                        );
                    }
                }
                Err(e) => self.err(sip.span(), format!("sip: {e}")),
            }
            return Some(Action::SipSend {
                actor,
                text: sip.get_ref().clone(),
                raw,
            });
        }
        if let Some(r) = &st.raw {
            self.err(r.span(), "`raw` applies to `send` only");
        }
        let mut or = Vec::new();
        for alt in st.or.iter().flat_map(|l| l.get_ref()) {
            if alt.get_ref().trim() != NOTHING {
                match sip_match::prepare(alt.get_ref(), &lookup) {
                    Ok(t) if !t.capture_names().is_empty() => {
                        self.err(alt.span(), "an `or` alternative cannot capture")
                    }
                    Ok(_) => {}
                    Err(e) => self.err(alt.span(), format!("sip template: {e}")),
                }
            }
            or.push(alt.get_ref().clone());
        }
        match sip_match::prepare(sip.get_ref(), &lookup) {
            Ok(t) => {
                for c in t.capture_names() {
                    self.capture(&c, sip.span(), w, None);
                }
            }
            Err(e) => self.err(sip.span(), format!("sip template: {e}")),
        }
        Some(Action::SipExpect {
            actor,
            template: sip.get_ref().clone(),
            or,
            timeout: self.duration(&st.timeout, timeout),
            answer: None,
        })
    }
}

/// An actor with a default `answer` answers each request an `expect` step matches, unless
/// the actor's next SIP step is a response it writes itself (a status line).
pub(super) fn plan_answers(actors: &[Actor], steps: &mut [super::Step]) {
    let default_of = |name: &str| {
        actors.iter().find_map(|a| match &a.kind {
            ActorKind::Sip(s) if a.name == name => s.answer,
            _ => None,
        })
    };
    let next_is_response: Vec<bool> = (0..steps.len())
        .map(|i| {
            let Some(Action::SipExpect { actor, .. }) = steps.get(i).map(|s| &s.action) else {
                return false;
            };
            steps.iter().skip(i + 1).find_map(|s| match &s.action {
                Action::SipSend { actor: a, text, .. } if a == actor => Some(
                    text.trim_start()
                        .to_ascii_uppercase()
                        .starts_with("SIP/2.0"),
                ),
                Action::SipExpect { actor: a, .. } | Action::SipExpectNone { actor: a, .. }
                    if a == actor =>
                {
                    Some(false)
                }
                _ => None,
            }) == Some(true)
        })
        .collect();
    for (s, explicit) in steps.iter_mut().zip(next_is_response) {
        if let Action::SipExpect { actor, answer, .. } = &mut s.action {
            *answer = if explicit { None } else { default_of(actor) };
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use rstest::rstest;

    use super::super::super::catalogue::Catalogue;
    use super::super::{Action, ActorKind, LoadError, load_str};
    use crate::harness::sip_actor::SipTransport;

    fn load(actor: &str, steps: &str) -> Result<super::super::Scenario, LoadError> {
        let text = format!(
            "title = \"t\"\ncovers = [\"IM-01\"]\n\n[xmpp.rx]\ndomain = \"remote.test\"\n\n{actor}\n\n{steps}"
        );
        let cat = Catalogue::builtin().expect("catalogue");
        load_str(&text, Path::new("t.toml"), &cat)
    }

    const ALICE: &str = "[sip.alice]\nuri = \"sip:alice@Sip.Test\"";
    const SEND: &str =
        "[[step]]\nsend = \"alice\"\nsip = \"MESSAGE sip:juliet@remote.test SIP/2.0\"";

    #[test]
    fn a_sip_actor_and_its_steps_load() {
        let steps = format!(
            "{SEND}\n\n[[step]]\nexpect = \"alice\"\ntimeout = \"1s\"\nsip = \"SIP/2.0 200\\nTo: <sip:juliet@remote.test>;tag={{id:jt}}\"\nor = [\"{{nothing}}\"]\n\n[[step]]\nsend = \"alice\"\nsip = \"MESSAGE {{alice}}\\nTo: <sip:juliet@remote.test>;tag={{jt}}\""
        );
        let s = match load(&format!("{ALICE}\ntransport = \"tcp\""), &steps) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        match s.actor("alice").map(|a| &a.kind) {
            Some(ActorKind::Sip(a)) => {
                assert_eq!(a.domain, "sip.test");
                assert_eq!(a.user.as_deref(), Some("alice"));
                assert_eq!(a.transport, SipTransport::Tcp);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(&s.steps[0].action, Action::SipSend { actor, .. } if actor == "alice"));
        assert!(matches!(
            &s.steps[1].action,
            Action::SipExpect { timeout, or, .. } if timeout.as_millis() == 1000 && or.len() == 1
        ));
    }

    /// `{gw}` stays symbolic until a target binds it; templates may use it too.
    #[test]
    fn the_gateway_domain_is_bound_per_target() {
        let steps = "[[step]]\nsend = \"alice\"\nsip = \"MESSAGE sip:juliet@remote.test SIP/2.0\\nFrom: <sip:alice@{gw}>\"\n\n[[step]]\ndialback = \"in\"\nactor = \"rx\"\nto = \"{gw}\"";
        let s = match load("[sip.alice]\nuri = \"sip:alice@{gw}\"", steps) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        let sip = |s: &super::super::Scenario| match s.actor("alice").map(|a| &a.kind) {
            Some(ActorKind::Sip(a)) => (a.uri.clone(), a.domain.clone()),
            other => panic!("{other:?}"),
        };
        assert_eq!(sip(&s), ("sip:alice@{gw}".into(), "{gw}".into()));
        let bound = s.with_gateway(Some("GW.Example.test"));
        assert_eq!(
            sip(&bound),
            ("sip:alice@GW.Example.test".into(), "gw.example.test".into())
        );
        assert_eq!(sip(&s.with_gateway(None)).1, "{gw}");
    }

    #[test]
    fn default_answers_yield_to_explicit_ones() {
        let expect = "[[step]]\nexpect = \"alice\"\nsip = \"MESSAGE {alice}\"";
        let steps = format!(
            "{expect}\n\n[[step]]\nsend = \"alice\"\nsip = \"SIP/2.0 486\"\n\n{expect}\n\n{expect}\n\n[[step]]\nexpect_none = \"alice\"\n\n{expect}"
        );
        let s = match load(&format!("{ALICE}\nanswer = 200"), &steps) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        let answers: Vec<Option<u16>> = s
            .steps
            .iter()
            .filter_map(|st| match &st.action {
                Action::SipExpect { answer, .. } => Some(*answer),
                _ => None,
            })
            .collect();
        assert_eq!(answers, vec![None, Some(200), Some(200), Some(200)]);
        let s = load(ALICE, &steps).expect("loads");
        assert!(s.steps.iter().all(|st| !matches!(
            st.action,
            Action::SipExpect {
                answer: Some(_),
                ..
            }
        )));
    }

    #[rstest]
    #[case(
        "[sip.alice]\nuri = \"sip:a@s.test\"\nanswer = 100",
        SEND,
        "final status code"
    )]
    #[case("[sip.alice]\nuri = \"tel:+123\"", SEND, "must be a sip: or sips: URI")]
    #[case("[sip.alice]\nuri = \"sip:sip.test\"", SEND, "with user and host")]
    #[case(
        "[sip.alice]\nuri = \"sip:a@s.test\"\ntransport = \"sctp\"",
        SEND,
        "transport must be \"udp\" or \"tcp\""
    )]
    #[case(
        "[sip.alice]\nuri = \"sip:a@s.test\"\nprofile = \"ms-chat\"",
        SEND,
        "is not supported"
    )]
    #[case(
        "[sip.rx]\nuri = \"sip:a@s.test\"",
        "[[step]]\nsend = \"rx\"\nsip = \"OPTIONS sip:x@y SIP/2.0\"",
        "declared twice"
    )]
    #[case(
        "[sip.alice]\nuri = \"sip:a@s.test\"\n\n[sip.bob]\nuri = \"sip:b@s.test\"\ntransport = \"tcp\"",
        SEND,
        "same transport"
    )]
    #[case(
        ALICE,
        "[[step]]\nsend = \"rx\"\nsip = \"OPTIONS sip:x@y SIP/2.0\"",
        "needs a SIP actor"
    )]
    #[case(
        ALICE,
        "[[step]]\nsend = \"alice\"\nsip = \"not sip\"",
        "not a SIP message"
    )]
    #[case(
        ALICE,
        "[[step]]\nsend = \"alice\"\nsip = \"MESSAGE {nope} SIP/2.0\"",
        "undefined variable {nope}"
    )]
    #[case(ALICE, "[[step]]\nexpect = \"alice\"\nsip = \"HELLO\"", "sip template")]
    #[case(
        ALICE,
        "[[step]]\nexpect = \"alice\"\nraw = true\nsip = \"SIP/2.0 200\"",
        "is not used by `expect`"
    )]
    #[case(
        ALICE,
        "[[step]]\nsend = \"alice\"\nraw = true\nsip = \"not sip {nope}\"",
        "undefined variable"
    )]
    #[case(
        ALICE,
        "[[step]]\nexpect = \"alice\"\nexact = true\nsip = \"SIP/2.0 200\"",
        "`exact` applies to XML"
    )]
    #[case(
        ALICE,
        "[[step]]\nexpect = \"alice\"\nsip = \"SIP/2.0 200\"\nor = [\"SIP/2.0 {id:c}\"]",
        "cannot capture"
    )]
    #[case(
        ALICE,
        "[[step]]\nsend = \"alice\"\nxml = \"<a/>\"\nsip = \"SIP/2.0 200\"",
        "not both"
    )]
    #[case(
        ALICE,
        "[[step]]\nconnect = \"alice\"\nactor = \"rx\"",
        "name of a SIP actor"
    )]
    #[case(
        ALICE,
        "[[step]]\nconnect = \"s\"\nactor = \"alice\"",
        "is a SIP actor"
    )]
    #[case(ALICE, "[[step]]\nclose = \"alice\"", "used before a step creates it")]
    #[case(
        "[sip.alice]\nuri = \"sip:a@{gw}\"\n\n[component.gw]\ndomain = \"c.test\"\nsecret = \"s\"",
        SEND,
        "may not name an actor `gw`"
    )]
    #[case("[sip.alice]\nuri = \"sip:{gw}\"", SEND, "with user and host")]
    fn broken_sip_parts_are_reported(#[case] actor: &str, #[case] steps: &str, #[case] want: &str) {
        match load(actor, steps) {
            Ok(_) => panic!("loaded; wanted an error with {want:?}"),
            Err(e) => assert!(e.to_string().contains(want), "{e}"),
        }
    }
}
