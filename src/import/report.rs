//! A fedcheck `--json` report (docs/json-schema.md) as a [`Trace`]: one outcome's raw
//! transcript, in the order its steps consumed the units.
//!
//! What the wire does not show — an actor's dialback secret, its certificate preset, the
//! partner policy the SUT must have for it — comes from the scenario the outcome names when
//! the caller could load it; otherwise actors are inferred from the traffic (docs/import.md).

use std::time::Duration;

use super::{ActorDecl, ActorSpec, FailureHint, ImportError, Kind, Record, Trace};
use crate::harness::load::{ActorKind, Scenario};
use crate::harness::sinks::{JsonOutcome, JsonReport};
use crate::harness::transcript::Dir;

/// Which outcome of a report to import (`--scenario`, `--cell`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pick {
    /// A scenario path, or a part of it (`db-06`, `s2s/db-06-receiving-verifies.toml`).
    pub scenario: Option<String>,
    /// The matrix cell, as the report writes it (`transport=udp`).
    pub cell: Option<String>,
}

/// Kinds as the JSON report names them.
const KINDS: &[(&str, Kind)] = &[
    ("connected", Kind::Connected),
    ("header", Kind::Header),
    ("element", Kind::Element),
    ("stream_close", Kind::StreamClose),
    ("whitespace", Kind::Whitespace),
    ("undecodable", Kind::Undecodable),
    ("eof", Kind::Eof),
    ("reset", Kind::Reset),
    ("note", Kind::Note),
    ("tls", Kind::Tls),
    ("sip", Kind::Sip),
];

pub fn parse_report(bytes: &[u8]) -> Result<JsonReport, ImportError> {
    #[derive(serde::Deserialize)]
    struct Version {
        schema_version: Option<u32>,
    }
    let v: Version =
        serde_json::from_slice(bytes).map_err(|e| ImportError::BadReport(e.to_string()))?;
    match v.schema_version {
        Some(1) => {}
        Some(n) => return Err(ImportError::SchemaVersion(n)),
        None => return Err(ImportError::BadReport("missing: schema_version".into())),
    }
    serde_json::from_slice(bytes).map_err(|e| ImportError::BadReport(e.to_string()))
}

fn outcome_name(o: &JsonOutcome) -> String {
    match &o.cell {
        Some(c) => format!("{} [{c}]", o.scenario),
        None => o.scenario.clone(),
    }
}

/// The outcome `pick` names; the only one if it names none.
pub fn select_outcome<'r>(
    report: &'r JsonReport,
    pick: &Pick,
) -> Result<&'r JsonOutcome, ImportError> {
    if report.outcomes.is_empty() {
        return Err(ImportError::NoOutcomes);
    }
    let matches: Vec<&JsonOutcome> = report
        .outcomes
        .iter()
        .filter(|o| {
            pick.scenario.as_deref().is_none_or(|s| {
                o.scenario == s || o.scenario.ends_with(s) || o.scenario.contains(s)
            }) && pick
                .cell
                .as_deref()
                .is_none_or(|c| o.cell.as_deref() == Some(c))
        })
        .collect();
    let all = || {
        report
            .outcomes
            .iter()
            .map(outcome_name)
            .collect::<Vec<_>>()
            .join(", ")
    };
    match matches.as_slice() {
        [one] => Ok(one),
        [] => Err(ImportError::NoSuchOutcome(
            format!(
                "--scenario {} --cell {}",
                pick.scenario.as_deref().unwrap_or("(any)"),
                pick.cell.as_deref().unwrap_or("(any)")
            ),
            all(),
        )),
        many => {
            // An exact path match wins over substrings.
            let exact: Vec<&&JsonOutcome> = many
                .iter()
                .filter(|o| pick.scenario.as_deref() == Some(o.scenario.as_str()))
                .collect();
            if let [one] = exact.as_slice() {
                return Ok(one);
            }
            Err(ImportError::Ambiguous {
                count: many.len(),
                names: many
                    .iter()
                    .map(|o| outcome_name(o))
                    .collect::<Vec<_>>()
                    .join(", "),
            })
        }
    }
}

/// One outcome as a trace. `scenario`: the outcome's scenario as loaded (its cell), when
/// the caller could read it — the source of actor settings the wire does not show.
pub fn trace_from_report(
    report: &JsonReport,
    outcome: &JsonOutcome,
    source: &str,
    scenario: Option<&Scenario>,
) -> Result<Trace, ImportError> {
    let mut records = Vec::new();
    for e in &outcome.transcript {
        let Some(kind) = KINDS.iter().find(|(k, _)| *k == e.kind).map(|(_, k)| *k) else {
            continue;
        };
        let kind = if kind == Kind::Sip && e.detail.as_deref() == Some("retransmission") {
            Kind::SipRetransmission
        } else {
            kind
        };
        let raw = match (&e.raw, &e.raw_hex) {
            (Some(r), _) => r.clone().into_bytes(),
            (None, Some(h)) => hex::decode(h).map_err(|err| {
                ImportError::BadReport(format!("transcript entry {}: raw_hex: {err}", e.seq))
            })?,
            (None, None) => Vec::new(),
        };
        let dir = match e.dir.as_str() {
            "from_sut" => Dir::FromSut,
            _ => Dir::ToSut,
        };
        records.push(Record {
            at: Duration::from_micros(e.at_us),
            actor: e.actor.clone(),
            stream: e.stream.clone(),
            dir,
            kind,
            raw,
            detail: e.detail.clone().unwrap_or_default(),
        });
    }
    let (actors, requires, mut notes) = match scenario {
        Some(s) => (
            actors_from_scenario(s),
            s.requires.clone(),
            vec![format!(
                "actor settings (secrets, certificates, partner policies) from {}",
                s.path.display()
            )],
        ),
        None => {
            let actors = infer_actors(&records);
            let requires = infer_requires(&records, &actors);
            (
                actors,
                requires,
                vec!["actors inferred from the traffic: check secrets, certificates and partner policies".into()],
            )
        }
    };
    notes.push(format!(
        "target `{}` ({}), verdict {}",
        report.target.name, report.target.kind, outcome.verdict
    ));
    let failure = outcome.failure.as_ref().map(|f| FailureHint {
        stream: f.stream.clone(),
        expected: f.expected.clone(),
        got_unit: !f.got.starts_with("nothing"),
    });
    Ok(Trace {
        source: source.to_string(),
        taken: vec![format!(
            "outcome {} ({} transcript entries)",
            outcome_name(outcome),
            outcome.transcript.len()
        )],
        notes,
        title: Some(outcome.title.clone()),
        sut_domains: report.target.domains.clone(),
        requires,
        actors,
        records,
        failure,
        from_report: true,
    })
}

/// Actor declarations as the scenario has them, except `answer` (the draft spells out
/// every response the run sent).
pub fn actors_from_scenario(s: &Scenario) -> Vec<ActorDecl> {
    s.actors
        .iter()
        .map(|a| {
            let spec = match &a.kind {
                ActorKind::Xmpp { domain, secret } => ActorSpec::Xmpp {
                    domain: domain.clone(),
                    secret: (*secret != format!("fedcheck-secret-{domain}"))
                        .then(|| secret.clone()),
                    cert: (a.cert != "valid").then(|| a.cert.clone()),
                    partner: a.partner.map(|p| {
                        format!(
                            "{{ tls = \"{}\", sasl = \"{}\", dialback = {}, keepalive = {} }}",
                            p.tls.as_str(),
                            p.sasl.as_str(),
                            p.dialback,
                            p.keepalive
                        )
                    }),
                },
                ActorKind::Component { domain, secret } => ActorSpec::Component {
                    domain: domain.clone(),
                    secret: secret.clone(),
                },
                ActorKind::Sip(sa) => ActorSpec::Sip {
                    uri: sa.uri.clone(),
                    transport: sa.transport.token().to_ascii_lowercase(),
                },
            };
            ActorDecl {
                name: a.name.clone(),
                spec,
                comment: None,
                inferred: false,
            }
        })
        .collect()
}

/// Actors from what they sent: a SIP actor by its messages (its URI from the From of its
/// requests, or the To of requests it received), a component by its stream namespace, an
/// XMPP server by the `from` of its headers (or the `to` of the SUT's).
pub fn infer_actors(records: &[Record]) -> Vec<ActorDecl> {
    let mut names: Vec<String> = Vec::new();
    for r in records {
        if r.actor != "harness" && r.kind != Kind::Note && !names.contains(&r.actor) {
            names.push(r.actor.clone());
        }
    }
    names
        .into_iter()
        .map(|name| {
            let mine: Vec<&Record> = records.iter().filter(|r| r.actor == name).collect();
            if let Some(sip) = mine.iter().find(|r| r.kind == Kind::Sip) {
                let uri = mine
                    .iter()
                    .filter(|r| r.kind == Kind::Sip)
                    .find_map(|r| {
                        let t = r.text();
                        let header = if r.dir == Dir::ToSut { "from" } else { "to" };
                        sip_header_uri(&t, header)
                    })
                    .unwrap_or_else(|| format!("sip:{name}@sip.invalid"));
                return ActorDecl {
                    name,
                    spec: ActorSpec::Sip {
                        uri,
                        transport: sip.stream.clone(),
                    },
                    inferred: true,
                    comment: Some("inferred from its SIP messages".into()),
                };
            }
            let header = |dir: Dir, attr: &str| {
                mine.iter()
                    .filter(|r| r.kind == Kind::Header && r.dir == dir)
                    .find_map(|r| header_attr(&r.text(), attr))
            };
            let component = mine
                .iter()
                .any(|r| r.kind == Kind::Header && r.text().contains("jabber:component:accept"));
            if component {
                let domain = header(Dir::ToSut, "to")
                    .or_else(|| header(Dir::FromSut, "from"))
                    .unwrap_or_else(|| format!("{name}.invalid"));
                return ActorDecl {
                    name,
                    spec: ActorSpec::Component {
                        domain,
                        secret: "secret".into(),
                    },
                    inferred: true,
                    comment: Some("the handshake secret is not on the wire: set the SUT's".into()),
                };
            }
            let domain = header(Dir::ToSut, "from")
                .or_else(|| header(Dir::FromSut, "to"))
                .unwrap_or_else(|| format!("{name}.invalid"));
            ActorDecl {
                name,
                spec: ActorSpec::Xmpp {
                    domain,
                    secret: None,
                    cert: None,
                    partner: None,
                },
                inferred: true,
                comment: Some("inferred from its stream headers".into()),
            }
        })
        .collect()
}

/// Capabilities the traffic shows the SUT needs (docs/scenarios.md `requires`).
pub fn infer_requires(records: &[Record], actors: &[ActorDecl]) -> Vec<String> {
    let mut req: Vec<String> = Vec::new();
    let mut add = |r: &str| {
        if !req.iter().any(|x| x == r) {
            req.push(r.to_string());
        }
    };
    let is =
        |name: &str, f: fn(&ActorSpec) -> bool| actors.iter().any(|a| a.name == name && f(&a.spec));
    for r in records {
        let text = r.text();
        match (r.kind, r.dir) {
            (Kind::Sip, _) => add("sip"),
            (Kind::Connected, Dir::ToSut)
                if is(&r.actor, |s| matches!(s, ActorSpec::Component { .. })) =>
            {
                add("component")
            }
            (Kind::Connected, Dir::ToSut) => add("s2s-in"),
            (Kind::Connected, Dir::FromSut) => add("s2s-out"),
            (Kind::Element, _) if text.contains("<db:result") || text.contains("<db:verify") => {
                add("dialback")
            }
            (Kind::Tls, _) => add("starttls"),
            _ => {}
        }
    }
    req
}

/// The value of attribute `name` on the first start tag of `text` (`from='x'`).
pub(crate) fn header_attr(text: &str, name: &str) -> Option<String> {
    let start = text
        .find("<stream:stream")
        .or_else(|| text.find(":stream "))?;
    let tag = text.get(start..)?;
    let tag = tag.get(..tag.find('>')?)?;
    for q in ['\'', '"'] {
        let pat = format!(" {name}={q}");
        if let Some(i) = tag.find(&pat) {
            let rest = tag.get(i + pat.len()..)?;
            return Some(rest.get(..rest.find(q)?)?.to_string());
        }
    }
    None
}

/// The URI of a name-addr header (`From: "A" <sip:a@b>;tag=1` → `sip:a@b`).
pub(crate) fn sip_header_uri(text: &str, header: &str) -> Option<String> {
    let short = match header {
        "from" => "f",
        "to" => "t",
        _ => header,
    };
    for line in text.lines() {
        let Some((n, v)) = line.split_once(':') else {
            continue;
        };
        let n = n.trim().to_ascii_lowercase();
        if n != header && n != short {
            continue;
        }
        let v = v.trim();
        let uri = match (v.find('<'), v.find('>')) {
            (Some(a), Some(b)) if a < b => v.get(a + 1..b)?,
            _ => v.split(';').next()?,
        };
        return Some(uri.trim().to_string());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(json: &str) -> Result<JsonReport, ImportError> {
        parse_report(json.as_bytes())
    }

    const DOC: &str = r#"{"schema_version":1,"tool":{"name":"fedcheck","version":"0"},
      "target":{"name":"bundled","kind":"bundled","description":null,"capabilities":[],
        "domains":["sut.test"],"expected_failures":[]},
      "exit_code":0,"elapsed_ms":1,"summary":{},
      "outcomes":[
       {"scenario":"scenarios/a/x.toml","cell":"t=udp","area":"a","title":"X","covers":[],
        "verdict":"pass","reason":null,"failure":null,"waiver":null,"elapsed_ms":1,"sut_log":"",
        "normalised":"","transcript":[]},
       {"scenario":"scenarios/a/x.toml","cell":"t=tcp","area":"a","title":"X","covers":[],
        "verdict":"pass","reason":null,"failure":null,"waiver":null,"elapsed_ms":1,"sut_log":"",
        "normalised":"","transcript":[
         {"seq":0,"at_us":5,"actor":"rx","stream":"in","dir":"to_sut","kind":"header",
          "raw":"<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' from='remote.test' to='sut.test'>",
          "raw_hex":null,"detail":null},
         {"seq":1,"at_us":7,"actor":"rx","stream":"in","dir":"to_sut","kind":"undecodable",
          "raw":null,"raw_hex":"ff00","detail":"bad"}]}]}"#;

    #[test]
    fn versions_and_garbage_are_named() {
        assert!(
            matches!(report("{}"), Err(ImportError::BadReport(m)) if m.contains("schema_version"))
        );
        assert!(matches!(
            report(r#"{"schema_version":2}"#),
            Err(ImportError::SchemaVersion(2))
        ));
        assert!(matches!(report("{"), Err(ImportError::BadReport(_))));
    }

    #[test]
    fn picks_an_outcome_or_says_which_exist() -> Result<(), ImportError> {
        let r = report(DOC)?;
        let err = select_outcome(&r, &Pick::default());
        assert!(matches!(err, Err(ImportError::Ambiguous { count: 2, .. })));
        let pick = Pick {
            scenario: Some("x.toml".into()),
            cell: Some("t=tcp".into()),
        };
        let o = select_outcome(&r, &pick)?;
        assert_eq!(o.cell.as_deref(), Some("t=tcp"));
        let none = Pick {
            scenario: Some("y.toml".into()),
            cell: None,
        };
        assert!(
            matches!(select_outcome(&r, &none), Err(ImportError::NoSuchOutcome(_, all)) if all.contains("[t=udp]"))
        );
        let t = trace_from_report(&r, o, "run.json", None)?;
        assert_eq!(t.records.len(), 2);
        assert_eq!(t.records.get(1).map(|r| r.raw.clone()), Some(vec![0xff, 0]));
        assert_eq!(
            t.actors.first().map(|a| a.domain().to_string()),
            Some("remote.test".into())
        );
        Ok(())
    }

    #[test]
    fn sip_uris_from_headers() {
        let m = "MESSAGE sip:b@x SIP/2.0\r\nf: \"A\" <sip:a@sip.test>;tag=1\r\nTo: sip:b@x\r\n\r\n";
        assert_eq!(sip_header_uri(m, "from").as_deref(), Some("sip:a@sip.test"));
        assert_eq!(sip_header_uri(m, "to").as_deref(), Some("sip:b@x"));
    }
}
