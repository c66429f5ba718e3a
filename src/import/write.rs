//! A [`Draft`] as scenario TOML (docs/scenarios.md), which the loader reads back.

use std::fmt::Write as _;

use super::{ActorSpec, Draft, Value};

/// A TOML string for `s`: a multi-line literal (`'''`) for SIP-like text that has no
/// control characters besides LF and tab, else a basic string with escapes (TOML 1.0
/// "String").
pub fn toml_string(s: &str) -> String {
    let literal_ok = s.contains('\n')
        && !s.contains("'''")
        && !s.ends_with('\'')
        && s.chars().all(|c| c == '\n' || c == '\t' || !c.is_control());
    if literal_ok {
        return format!("'''\n{s}'''");
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn value(v: &Value) -> String {
    match v {
        Value::Str(s) => toml_string(s),
        Value::Bool(b) => b.to_string(),
        Value::List(l) => format!(
            "[{}]",
            l.iter()
                .map(|s| toml_string(s))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn comment(out: &mut String, text: &str) {
    for line in text.lines() {
        let _ = writeln!(out, "# {line}");
    }
}

pub fn render(d: &Draft) -> String {
    let mut out = String::new();
    for h in &d.header {
        comment(&mut out, h);
    }
    out.push('\n');
    let _ = writeln!(out, "title = {}", toml_string(&d.title));
    out.push_str(
        "covers = []   # fill in: the requirement IDs this scenario checks (`fedcheck coverage`)\n",
    );
    if !d.requires.is_empty() {
        let _ = writeln!(
            out,
            "requires = {}",
            value(&Value::List(d.requires.clone()))
        );
    }
    for a in &d.actors {
        out.push('\n');
        if let Some(c) = &a.comment {
            comment(&mut out, c);
        }
        match &a.spec {
            ActorSpec::Xmpp {
                domain,
                secret,
                cert,
                partner,
            } => {
                let _ = writeln!(out, "[xmpp.{}]", a.name);
                let _ = writeln!(out, "domain = {}", toml_string(domain));
                if let Some(s) = secret {
                    let _ = writeln!(out, "secret = {}", toml_string(s));
                }
                if let Some(c) = cert {
                    let _ = writeln!(out, "cert = {}", toml_string(c));
                }
                if let Some(p) = partner {
                    let _ = writeln!(out, "partner = {p}");
                }
            }
            ActorSpec::Component { domain, secret } => {
                let _ = writeln!(out, "[component.{}]", a.name);
                let _ = writeln!(out, "domain = {}", toml_string(domain));
                let _ = writeln!(out, "secret = {}", toml_string(secret));
            }
            ActorSpec::Sip { uri, transport } => {
                let _ = writeln!(out, "[sip.{}]", a.name);
                let _ = writeln!(out, "uri = {}", toml_string(uri));
                let _ = writeln!(out, "transport = {}", toml_string(transport));
            }
        }
    }
    for s in &d.steps {
        out.push('\n');
        for c in &s.comments {
            comment(&mut out, c);
        }
        out.push_str("[[step]]\n");
        for (k, v) in &s.keys {
            let _ = writeln!(out, "{k} = {}", value(v));
        }
    }
    if !d.trailer.is_empty() {
        out.push('\n');
        for c in &d.trailer {
            comment(&mut out, c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("<a x='1'/>")]
    #[case("say \"hi\"\\ \r\n\u{1}")]
    #[case("SIP/2.0 200\nCSeq: 1 MESSAGE\n")]
    #[case("ends with '\n'")]
    fn strings_read_back_unchanged(#[case] s: &str) {
        let doc = format!("v = {}\n", toml_string(s));
        let back: toml::Table = toml::from_str(&doc).unwrap_or_default();
        assert_eq!(back.get("v").and_then(|v| v.as_str()), Some(s), "{doc}");
    }
}
