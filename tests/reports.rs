//! The CI reports: JUnit XML in the shape consumers accept, and the JSON document read back
//! into its documented schema.
//!
//! The JUnit shape checked here is the common denominator of the Jenkins/Ant `junit-10.xsd`
//! family and the readers of GitLab and GitHub: root `<testsuites>`; each `<testsuite>` has
//! `name`, `tests`, `failures`, `errors`, `skipped`, `time` and holds `<properties>` then
//! `<testcase>`s; each `<testcase>` has `name`, `classname`, `time` and holds, in this order,
//! an optional `<properties>`, at most one of `<skipped>`/`<failure>`/`<error>` (a
//! `message` attribute; failure and error also `type`), then `<system-out>`, `<system-err>`;
//! the counts agree with the children.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use quick_xml::events::Event;

use fedcheck::harness::sinks::{JSON_SCHEMA_VERSION, JsonReport};

#[derive(Debug, Default)]
struct Node {
    name: String,
    attrs: BTreeMap<String, String>,
    children: Vec<Node>,
    text: String,
}

fn parse(xml: &str) -> Node {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut stack: Vec<Node> = vec![Node::default()];
    let node_of = |e: &quick_xml::events::BytesStart<'_>| Node {
        name: String::from_utf8_lossy(e.name().as_ref()).into_owned(),
        attrs: e
            .attributes()
            .map(|a| {
                let a = a.expect("attribute");
                (
                    String::from_utf8_lossy(a.key.as_ref()).into_owned(),
                    a.unescape_value().expect("value").into_owned(),
                )
            })
            .collect(),
        ..Node::default()
    };
    loop {
        match reader.read_event().expect("well-formed XML") {
            Event::Start(e) => stack.push(node_of(&e)),
            Event::Empty(e) => {
                let n = node_of(&e);
                stack.last_mut().expect("parent").children.push(n);
            }
            Event::End(_) => {
                let n = stack.pop().expect("open element");
                stack.last_mut().expect("parent").children.push(n);
            }
            Event::Text(t) => {
                let s = t.decode().expect("text").into_owned();
                stack.last_mut().expect("node").text.push_str(&s);
            }
            Event::GeneralRef(_) => {
                stack.last_mut().expect("node").text.push('&');
            }
            Event::Eof => break,
            _ => {}
        }
    }
    let mut doc = stack.pop().expect("document");
    assert_eq!(doc.children.len(), 1, "one root element");
    doc.children.remove(0)
}

fn count(n: &Node, key: &str) -> usize {
    n.attrs
        .get(key)
        .unwrap_or_else(|| panic!("<{}> lacks {key}", n.name))
        .parse()
        .unwrap_or_else(|_| panic!("<{}> {key} is not a count", n.name))
}

fn seconds(n: &Node) {
    let t = n
        .attrs
        .get("time")
        .unwrap_or_else(|| panic!("<{}> lacks time", n.name));
    assert!(t.parse::<f64>().is_ok_and(|t| t >= 0.0), "time={t}");
}

/// Assert the JUnit document has the shape described in this module's doc comment.
pub fn check_junit_shape(xml: &str) {
    assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>"));
    let root = parse(xml);
    assert_eq!(root.name, "testsuites");
    let mut totals = [0usize; 4];
    for suite in &root.children {
        assert_eq!(suite.name, "testsuite");
        assert!(suite.attrs.contains_key("name"));
        seconds(suite);
        let mut seen = [0usize; 4];
        for (i, c) in suite.children.iter().enumerate() {
            match c.name.as_str() {
                "properties" => {
                    assert_eq!(i, 0, "suite properties come first");
                    for p in &c.children {
                        assert_eq!(p.name, "property");
                        assert!(p.attrs.contains_key("name") && p.attrs.contains_key("value"));
                    }
                }
                "testcase" => {
                    seen[0] += 1;
                    assert!(c.attrs.contains_key("name"), "testcase name");
                    assert!(c.attrs.contains_key("classname"), "testcase classname");
                    seconds(c);
                    let order = |n: &str| match n {
                        "properties" => 0,
                        "skipped" | "failure" | "error" => 1,
                        "system-out" => 2,
                        "system-err" => 3,
                        other => panic!("unexpected <{other}> in a testcase"),
                    };
                    let ranks: Vec<i32> = c.children.iter().map(|x| order(&x.name)).collect();
                    assert!(ranks.windows(2).all(|w| w[0] < w[1]), "order: {ranks:?}");
                    for x in &c.children {
                        match x.name.as_str() {
                            "skipped" => {
                                seen[3] += 1;
                                let m = x.attrs.get("message").expect("skipped has a reason");
                                assert!(!m.is_empty(), "skipped with an empty reason");
                            }
                            "failure" | "error" => {
                                seen[if x.name == "failure" { 1 } else { 2 }] += 1;
                                assert!(x.attrs.contains_key("message"));
                                assert!(x.attrs.contains_key("type"));
                            }
                            "properties" => {
                                for p in &x.children {
                                    assert_eq!(p.name, "property");
                                    assert!(p.attrs.contains_key("value"));
                                }
                            }
                            _ => {}
                        }
                    }
                }
                other => panic!("unexpected <{other}> in a testsuite"),
            }
        }
        for (k, (key, n)) in ["tests", "failures", "errors", "skipped"]
            .iter()
            .zip(seen)
            .enumerate()
        {
            assert_eq!(count(suite, key), n, "testsuite {key}");
            totals[k] += n;
        }
    }
    for (key, n) in ["tests", "failures", "errors", "skipped"]
        .iter()
        .zip(totals)
    {
        assert_eq!(count(&root, key), n, "testsuites {key}");
    }
}

fn fedcheck_run(args: &[&str], dir: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_fedcheck"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("run")
        .args(args)
        .arg("--junit")
        .arg(dir.join("junit.xml"))
        .arg("--json")
        .arg(dir.join("report.json"))
        .output()
        .expect("run fedcheck")
}

/// A remote target whose SUT does not exist: a scenario it cannot claim is inconclusive
/// (skipped in JUnit), the others fail to connect. Covers skipped + failure/error shapes.
const UNREACHABLE_TARGET: &str = r#"
name = "nobody home"
kind = "remote"
capabilities = ["dialback"]
[xmpp]
domain = "gone.test"
s2s = "127.0.0.1:9"
"#;

#[test]
fn junit_and_json_from_a_bundled_run_have_the_documented_shape() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = fedcheck_run(
        &[
            "scenarios/s2s/db-06-receiving-verifies.toml",
            "scenarios/s2s/str-02-version-matrix.toml",
        ],
        dir.path(),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let junit = std::fs::read_to_string(dir.path().join("junit.xml")).expect("junit");
    check_junit_shape(&junit);
    let root = parse(&junit);
    let cases: Vec<&Node> = root.children[0]
        .children
        .iter()
        .filter(|c| c.name == "testcase")
        .collect();
    assert_eq!(
        cases.len(),
        5,
        "one testcase per scenario and per matrix cell"
    );
    let db06 = cases
        .iter()
        .find(|c| c.attrs["name"] == "s2s/db-06-receiving-verifies.toml")
        .expect("db-06 testcase");
    assert_eq!(db06.attrs["classname"], "s2s");
    let props: Vec<(&str, &str)> = db06.children[0]
        .children
        .iter()
        .map(|p| (p.attrs["name"].as_str(), p.attrs["value"].as_str()))
        .collect();
    for id in ["DB-06", "DB-08", "DB-07"] {
        assert!(props.contains(&("requirement", id)), "{props:?}");
    }
    let system_out = db06
        .children
        .iter()
        .find(|c| c.name == "system-out")
        .expect("system-out");
    assert!(system_out.text.contains("{sut}"), "normalised transcript");

    let bytes = std::fs::read(dir.path().join("report.json")).expect("json");
    let report: JsonReport = serde_json::from_slice(&bytes).expect("JSON reads back");
    assert_eq!(report.schema_version, JSON_SCHEMA_VERSION);
    assert_eq!(report.target.kind, "bundled");
    assert_eq!(report.outcomes.len(), 5);
    assert_eq!(report.summary["pass"], 5);
    let o = &report.outcomes[0];
    assert!(!o.transcript.is_empty());
    assert!(o.transcript.iter().any(|e| {
        e.kind == "header"
            && e.dir == "from_sut"
            && e.raw
                .as_deref()
                .is_some_and(|r| r.contains("stream:stream"))
    }));
    assert!(o.normalised.contains("{sut}"));
    // Every documented top-level key is present (docs/json-schema.md).
    let v: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
    for key in [
        "schema_version",
        "tool",
        "target",
        "exit_code",
        "elapsed_ms",
        "summary",
        "outcomes",
    ] {
        assert!(v.get(key).is_some(), "missing {key}");
    }
}

#[test]
fn inconclusive_and_failures_are_never_reported_as_passes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = dir.path().join("t.toml");
    std::fs::write(&target, UNREACHABLE_TARGET).expect("target");
    let out = fedcheck_run(
        &[
            "scenarios/component/cmp-01-handshake.toml",
            "scenarios/s2s/str-09-host-unknown.toml",
            "--target",
            target.to_str().expect("utf-8 path"),
        ],
        dir.path(),
    );
    assert_ne!(out.status.code(), Some(0));
    let junit = std::fs::read_to_string(dir.path().join("junit.xml")).expect("junit");
    check_junit_shape(&junit);
    let root = parse(&junit);
    let suite = &root.children[0];
    assert_eq!(count(suite, "tests"), 2);
    assert_eq!(count(suite, "skipped"), 1, "inconclusive is skipped");
    assert_eq!(count(suite, "failures") + count(suite, "errors"), 1);
    assert!(junit.contains("does not claim: component"), "{junit}");
    let report: JsonReport =
        serde_json::from_slice(&std::fs::read(dir.path().join("report.json")).expect("json"))
            .expect("JSON reads back");
    assert_eq!(report.summary["inconclusive"], 1);
    assert_eq!(report.summary["pass"], 0);
}

#[test]
fn markdown_report_is_a_verdict_table() {
    let out = Command::new(env!("CARGO_BIN_EXE_fedcheck"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "run",
            "scenarios/s2s/db-06-receiving-verifies.toml",
            "--report",
            "markdown",
        ])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0));
    let md = String::from_utf8_lossy(&out.stdout);
    assert!(md.contains("## Target `bundled` (bundled)"), "{md}");
    assert!(
        md.contains("| verdict | scenario | requirements | note |"),
        "{md}"
    );
    assert!(
        md.contains("| pass | s2s/db-06-receiving-verifies.toml | DB-06 DB-08 DB-07 |"),
        "{md}"
    );
}

#[test]
fn interop_matrix_names_the_command_that_regenerates_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out_file = dir.path().join("interop.md");
    let out = Command::new(env!("CARGO_BIN_EXE_fedcheck"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "interop-matrix",
            "--target",
            "bundled",
            "scenarios/s2s/str-09-host-unknown.toml",
            "--out",
        ])
        .arg(&out_file)
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let md = std::fs::read_to_string(&out_file).expect("written");
    assert!(md.starts_with("# Interop matrix"), "{md}");
    assert!(
        md.contains("fedcheck interop-matrix --target bundled --out "),
        "{md}"
    );
    assert!(
        md.contains("| pass | s2s/str-09-host-unknown.toml | STR-09 STR-08 |"),
        "{md}"
    );
}
