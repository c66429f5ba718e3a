//! Normalised text of SIP messages for snapshots (docs/scenarios.md "Transcript and
//! snapshot"); a child of `normalise` so labels are shared with the XML side.
//!
//! Header order is kept (it carries meaning for Via and Route, RFC 3261 §7.3.1) and
//! values are rewritten only where they vary per run: tags `[tagN]` (§19.3), branches
//! `[branchN]` (§8.1.1.7), Call-IDs `[callN]` (§8.1.1.4), loopback ports `[port]`, the
//! `expires` countdown of Subscription-State `[expires]` (RFC 6665 §4.1.3), Date
//! `[date]`, SUT domains `{sut}`. CSeq numbers stay: the harness's are deterministic, and
//! a SUT's sequence is part of its behaviour. Content-Length is the body's real length.

use std::fmt::Write as _;

use super::Normaliser;
use crate::harness::sip_match::{body_is_xml, parse_xml_body};
use crate::sip::Message;
use crate::sip::message::names_equal;

/// Header parameters whose value is a per-run identifier, and the label kind.
const LABELLED_PARAMS: [(&str, &str); 2] = [("tag", "tag"), ("branch", "branch")];

impl Normaliser<'_> {
    pub(super) fn sip_message(&mut self, m: &Message, prefix: &str, out: &mut String) {
        let pad = " ".repeat(prefix.chars().count() + 2);
        let start = match m {
            Message::Request(r) => {
                format!(
                    "{} {} {}",
                    r.method,
                    self.sip_text(r.uri.as_str()),
                    r.version
                )
            }
            Message::Response(r) => format!("{} {} {}", r.version, r.status, r.reason),
        };
        let _ = writeln!(out, "{prefix}{start}");
        for h in m.headers() {
            let value = if names_equal(&h.name, "Content-Length") {
                m.body().len().to_string()
            } else {
                self.sip_header(&h.name, &h.value)
            };
            let _ = writeln!(out, "{pad}{}: {value}", h.name);
        }
        let body = String::from_utf8_lossy(m.body());
        if body.trim().is_empty() {
            return;
        }
        if body_is_xml(&body)
            && let Ok(el) = parse_xml_body(&body)
        {
            let mut lines = Vec::new();
            self.element_lines(&el, "", 0, &mut lines);
            for l in lines {
                let _ = writeln!(out, "{pad}| {l}");
            }
            return;
        }
        for l in body.trim().lines() {
            let _ = writeln!(out, "{pad}| {}", self.sip_text(l.trim_end()));
        }
    }

    fn sip_header(&mut self, name: &str, value: &str) -> String {
        if names_equal(name, "Call-ID") {
            return self.labels.get("call", value.trim());
        }
        if names_equal(name, "Date") {
            return "[date]".to_string();
        }
        let mut v = value.to_string();
        for (param, kind) in LABELLED_PARAMS {
            v = self.label_param(&v, param, kind);
        }
        v = replace_param(&v, "rport", |p| {
            (!p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())).then(|| "[port]".into())
        });
        if names_equal(name, "Subscription-State") {
            v = replace_param(&v, "expires", |_| Some("[expires]".into()));
        }
        self.sip_text(&v)
    }

    fn label_param(&mut self, v: &str, param: &str, kind: &'static str) -> String {
        let labels = &mut self.labels;
        replace_param(v, param, |p| Some(labels.get(kind, p)))
    }

    /// Loopback ports and SUT domains masked in free SIP text.
    fn sip_text(&self, s: &str) -> String {
        let mut t = mask_loopback_ports(s);
        for d in &self.ctx.gw_domains {
            t = mask_domain(&t, d, "{gw}");
        }
        for d in &self.ctx.sut_domains {
            t = mask_domain(&t, d, "{sut}");
        }
        t
    }
}

/// Rewrite the value of every `;NAME=value` parameter (name case-insensitive) with `f`;
/// a `None` from `f` keeps the value.
fn replace_param(v: &str, name: &str, mut f: impl FnMut(&str) -> Option<String>) -> String {
    let needle = format!(";{}=", name.to_ascii_lowercase());
    let lower = v.to_ascii_lowercase();
    let mut out = String::with_capacity(v.len());
    let mut pos = 0usize;
    while let Some(i) = lower.get(pos..).and_then(|r| r.find(&needle)) {
        let start = pos + i + needle.len();
        let end = v
            .get(start..)
            .and_then(|r| r.find([';', ',', '>', '?', ' ', '\t']))
            .map_or(v.len(), |j| start + j);
        out.push_str(v.get(pos..start).unwrap_or(""));
        let value = v.get(start..end).unwrap_or("");
        match f(value) {
            Some(new) => out.push_str(&new),
            None => out.push_str(value),
        }
        pos = end;
    }
    out.push_str(v.get(pos..).unwrap_or(""));
    out
}

/// `127.0.0.1:NNNN` and `[::1]:NNNN` → `…:[port]`: the harness and a bundled SUT use
/// ephemeral loopback ports.
fn mask_loopback_ports(s: &str) -> String {
    let mut out = s.to_string();
    for host in ["127.0.0.1:", "[::1]:"] {
        let mut res = String::with_capacity(out.len());
        let mut rest = out.as_str();
        while let Some(i) = rest.find(host) {
            let after = &rest[i + host.len()..];
            let digits = after.bytes().take_while(u8::is_ascii_digit).count();
            res.push_str(&rest[..i + host.len()]);
            if digits > 0 {
                res.push_str("[port]");
            }
            rest = &after[digits..];
        }
        res.push_str(rest);
        out = res;
    }
    out
}

/// Whole-domain occurrences of `domain` → `label` (`{sut}`, `{gw}`), not inside a longer
/// name.
fn mask_domain(text: &str, domain: &str, label: &str) -> String {
    if domain.is_empty() {
        return text.to_string();
    }
    let part_of_name = |c: char| c.is_ascii_alphanumeric() || c == '.' || c == '-';
    let lower = text.to_ascii_lowercase();
    let d = domain.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut pos = 0usize;
    while let Some(i) = lower.get(pos..).and_then(|r| r.find(&d)) {
        let at = pos + i;
        let end = at + d.len();
        let before = text.get(..at).and_then(|b| b.chars().next_back());
        let after = text.get(end..).and_then(|a| a.chars().next());
        out.push_str(text.get(pos..at).unwrap_or(""));
        if before.is_some_and(part_of_name) || after.is_some_and(|c| part_of_name(c) && c != '.') {
            out.push_str(text.get(at..end).unwrap_or(""));
        } else {
            out.push_str(label);
        }
        pos = end;
    }
    out.push_str(text.get(pos..).unwrap_or(""));
    out
}

#[cfg(test)]
mod tests {
    use super::super::{NormaliseContext, normalise};
    use super::*;
    use crate::harness::transcript::{Dir, Transcript, Unit};
    use crate::sip::{Limits, parse_payload};
    use rstest::rstest;
    use std::time::Duration;

    #[rstest]
    #[case("<sip:a@b>;tag=x1;foo=1", "tag", "<sip:a@b>;tag=[L];foo=1")]
    #[case("<sip:a@b>;TAG=x1", "tag", "<sip:a@b>;TAG=[L]")]
    #[case(
        "SIP/2.0/UDP h;branch=z9hG4bKq, SIP/2.0/UDP g;branch=z9",
        "branch",
        "SIP/2.0/UDP h;branch=[L], SIP/2.0/UDP g;branch=[L]"
    )]
    #[case("<sip:a@b;tag=uri>", "tag", "<sip:a@b;tag=[L]>")]
    #[case("no params", "tag", "no params")]
    fn params_are_rewritten(#[case] v: &str, #[case] name: &str, #[case] want: &str) {
        assert_eq!(replace_param(v, name, |_| Some("[L]".into())), want);
    }

    #[rstest]
    #[case(
        "SIP/2.0/UDP 127.0.0.1:40123;rport",
        "SIP/2.0/UDP 127.0.0.1:[port];rport"
    )]
    #[case(
        "<sip:alice@127.0.0.1:5;transport=tcp>",
        "<sip:alice@127.0.0.1:[port];transport=tcp>"
    )]
    #[case("sip:[::1]:77", "sip:[::1]:[port]")]
    #[case("127.0.0.1 alone", "127.0.0.1 alone")]
    fn loopback_ports_are_masked(#[case] s: &str, #[case] want: &str) {
        assert_eq!(mask_loopback_ports(s), want);
    }

    #[rstest]
    #[case("sip:romeo@sut.test", "sip:romeo@{sut}")]
    #[case("sip:romeo@SUT.test;transport=tcp", "sip:romeo@{sut};transport=tcp")]
    #[case("sip:romeo@gw.sut.test", "sip:romeo@gw.sut.test")]
    #[case("sip:romeo@sut.tester", "sip:romeo@sut.tester")]
    fn sut_domains_are_masked(#[case] s: &str, #[case] want: &str) {
        assert_eq!(mask_domain(s, "sut.test", "{sut}"), want);
    }

    fn unit(text: &str) -> Unit {
        Unit::Sip {
            message: parse_payload(text, &Limits::default()).expect("test message"),
            retransmission: false,
        }
    }

    #[test]
    fn a_notify_and_its_response_normalise_stably() {
        let notify = "NOTIFY sip:alice@127.0.0.1:40000 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bKabc;rport=5099
From: <sip:juliet@sut.test>;tag=77aa
To: <sip:alice@sip.remote>;tag=b0b
Call-ID: f00@127.0.0.1
CSeq: 2 NOTIFY
Subscription-State: active;expires=598
Date: Tue, 01 Dec 2026 09:00:00 GMT
Content-Type: application/pidf+xml
Content-Length: 166

<?xml version='1.0'?><presence xmlns='urn:ietf:params:xml:ns:pidf' entity='pres:juliet@sut.test'><tuple id='t'><status><basic>open</basic></status></tuple></presence>";
        let ok = "SIP/2.0 200 OK
Via: SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bKabc;rport=5099
From: <sip:juliet@sut.test>;tag=77aa
To: <sip:alice@sip.remote>;tag=b0b
Call-ID: f00@127.0.0.1
CSeq: 2 NOTIFY
Content-Length: 0

";
        let mut t = Transcript::default();
        t.push(
            Duration::ZERO,
            "alice",
            "udp",
            Dir::FromSut,
            unit(notify),
            Vec::new(),
        );
        t.push(
            Duration::ZERO,
            "alice",
            "udp",
            Dir::ToSut,
            unit(ok),
            Vec::new(),
        );
        let mut again = unit(notify);
        if let Unit::Sip { retransmission, .. } = &mut again {
            *retransmission = true;
        }
        t.push(
            Duration::ZERO,
            "alice",
            "udp",
            Dir::FromSut,
            again,
            Vec::new(),
        );
        let ctx = NormaliseContext {
            sut_domains: vec!["sut.test".into()],
            gw_domains: Vec::new(),
        };
        let text = normalise(&t, &ctx);
        let want = "alice/udp ← NOTIFY sip:alice@127.0.0.1:[port] SIP/2.0
              Via: SIP/2.0/UDP 127.0.0.1:[port];branch=[branch1];rport=[port]
              From: <sip:juliet@{sut}>;tag=[tag1]
              To: <sip:alice@sip.remote>;tag=[tag2]
              Call-ID: [call1]
              CSeq: 2 NOTIFY
              Subscription-State: active;expires=[expires]
              Date: [date]
              Content-Type: application/pidf+xml
              Content-Length: 166
              | <presence xmlns='urn:ietf:params:xml:ns:pidf' entity='pres:juliet@{sut}'><tuple id='[id1]'><status><basic>open</basic></status></tuple></presence>
alice/udp → SIP/2.0 200 OK
              Via: SIP/2.0/UDP 127.0.0.1:[port];branch=[branch1];rport=[port]
              From: <sip:juliet@{sut}>;tag=[tag1]
              To: <sip:alice@sip.remote>;tag=[tag2]
              Call-ID: [call1]
              CSeq: 2 NOTIFY
              Content-Length: 0
";
        assert_eq!(text, want);
    }
}
