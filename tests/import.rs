//! `fedcheck import` round trip (docs/import.md): for every scenario file (and matrix
//! cell) under `scenarios/`, run it against the bundled pair, write the `--json` report,
//! import the outcome as a draft, run the draft, and compare: the same verdict and the same
//! normalised transcript.
//!
//! One normalisation differs on purpose: `# …` note lines are left out of the comparison
//! (except the harness's "received but not consumed" marker). They are commentary, not
//! traffic: the original's helper steps (`dialback`, `accept_dialback`) narrate what they
//! do, and the draft spells those exchanges out as plain `send`/`expect` steps with no
//! narration, and step notes carry the draft's step numbers.

use std::path::{Path, PathBuf};

use fedcheck::harness::catalogue::Catalogue;
use fedcheck::harness::load;
use fedcheck::harness::sinks;
use fedcheck::harness::suite;
use fedcheck::harness::target::Target;
use fedcheck::import;
use rstest::rstest;

/// Scenarios (file, cell) that cannot round-trip, with the reason. Empty: every one does.
/// The test fails if an entry here round-trips (the list went stale).
const CANNOT_ROUND_TRIP: &[(&str, Option<&str>, &str)] = &[];

const LEFTOVERS: &str = "# received but not consumed by any step:";

fn comparable(normalised: &str) -> String {
    normalised
        .lines()
        .filter(|l| !l.starts_with("# ") || *l == LEFTOVERS)
        .collect::<Vec<_>>()
        .join("\n")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

#[rstest]
fn round_trip(#[files("scenarios/**/*.toml")] path: PathBuf) {
    let catalogue = Catalogue::builtin().expect("the built-in catalogue parses");
    let rt = runtime();
    let target = Target::Bundled;
    let outcomes = rt.block_on(suite::run_file(&path, &target, &catalogue));
    let run = sinks::TargetRun {
        target: &target,
        outcomes: &outcomes,
        exit_code: 0,
        elapsed: std::time::Duration::ZERO,
        version: None,
    };
    let json = sinks::json(&run);
    let report = import::report::parse_report(json.as_bytes()).expect("our own report parses");
    let cells = load::load_file_cells(&path, &catalogue).expect("the scenario loads");
    let mut problems = Vec::new();
    for o in &outcomes {
        let pick = import::Pick {
            scenario: Some(path.display().to_string()),
            cell: o.cell.clone(),
        };
        let jo = import::select_outcome(&report, &pick).expect("the outcome is in the report");
        let scenario = cells.iter().find(|c| c.cell == o.cell);
        let trace = import::trace_from_report(&report, jo, "report.json", scenario)
            .expect("the outcome imports");
        let text = import::render(&import::draft(&trace));
        let name = o.name();
        let listed = CANNOT_ROUND_TRIP
            .iter()
            .find(|(f, c, _)| name.contains(f) && *c == o.cell.as_deref());
        let draft = match load::load_str(&text, Path::new("draft.toml"), &catalogue) {
            Ok(d) => d,
            Err(e) => {
                problems.push(format!("{name}: the draft does not load: {e}\n{text}"));
                continue;
            }
        };
        let again = rt.block_on(suite::run_scenario(&draft, &target, &catalogue));
        let same = again.verdict == o.verdict
            && comparable(&again.normalised) == comparable(&o.normalised);
        match (same, listed) {
            (true, Some((_, _, why))) => problems.push(format!(
                "{name} round-trips now: remove it from CANNOT_ROUND_TRIP ({why})"
            )),
            (true, None) | (false, Some(_)) => {}
            (false, None) => problems.push(format!(
                "{name}: verdict {} → {}\n{}\n--- original\n{}\n--- draft run\n{}\n--- draft\n{text}",
                o.verdict,
                again.verdict,
                again
                    .failure
                    .as_ref()
                    .map(|f| format!("failed at step {}: expected {} got {}", f.step, f.expected, f.got))
                    .or(again.reason.clone())
                    .unwrap_or_default(),
                comparable(&o.normalised),
                comparable(&again.normalised),
            )),
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

/// Each stream's entries in order, the streams sorted: the comparison for a draft from a
/// capture. Within a stream a capture and a transcript agree (the wire order); across
/// streams a capture orders by time, a transcript by step, and a draft from a capture names
/// actors and streams after what the capture shows (`remote/in2`), not after the scenario
/// the run came from (`rx/in_verify`). Notes and the leftovers marker are left out: a
/// capture has every unit in its place, consumed or not.
fn per_stream(text: &str) -> Vec<Vec<String>> {
    let mut streams: Vec<(String, Vec<String>)> = Vec::new();
    let mut current: Option<usize> = None;
    for l in text.lines() {
        if l.starts_with("# ") {
            current = None;
            continue;
        }
        if l.starts_with(' ') {
            // A continuation line, indented to the width of the name.
            if let Some(i) = current
                && let Some(last) = streams.get_mut(i).and_then(|(_, v)| v.last_mut())
            {
                last.push_str("\n  ");
                last.push_str(l.trim_start());
            }
            continue;
        }
        let Some((head, rest)) = l.split_once(' ') else {
            continue;
        };
        let i = match streams.iter().position(|(h, _)| h == head) {
            Some(i) => i,
            None => {
                streams.push((head.to_string(), Vec::new()));
                streams.len() - 1
            }
        };
        if let Some((_, v)) = streams.get_mut(i) {
            v.push(rest.to_string());
        }
        current = Some(i);
    }
    let mut out: Vec<Vec<String>> = streams.into_iter().map(|(_, v)| v).collect();
    out.sort();
    out
}

/// The flows as a pcapng file gives them back: written by the capture writer and read by
/// the reader, so the round trip goes through the bytes a user would import.
fn through_pcap(cap: fedcheck::capture::Capture) -> fedcheck::capture::Capture {
    let bytes = fedcheck::capture::write_pcapng(&cap.flows, &Default::default())
        .expect("the run's flows can be written as pcapng");
    fedcheck::capture::read(&bytes).expect("our own pcapng reads back")
}

/// What a capture cannot carry, so the capture round trip leaves it out, with the reason.
/// A scenario listed here that round-trips fails the test (the list went stale).
const TLS_CANNOT: &str = "TLS: after STARTTLS a capture holds only encrypted records, and the \
     partner policy and certificate an actor needs are not on the wire";

/// Open work in the importer, not a limit of captures: SIP users of one domain share the
/// harness's socket, so on the wire they are one flow; the importer makes one SIP actor per
/// flow and would have to split a flow by user (Request-URI / From / To) to replay them.
const SHARED_SIP_SOCKET: &str = "two SIP users share one socket (one flow on the wire); the \
     importer makes one SIP actor per flow, not per user";

/// Open work in the importer: from a capture it takes SIP messages that parse; a peer's
/// deliberately malformed datagram or segment is not yet replayed as a raw send.
const MALFORMED_SIP: &str = "deliberately malformed SIP: the capture importer does not yet \
     replay bytes that do not parse as a raw send";

const CAPTURE_CANNOT: &[(&str, &str)] = &[
    ("tls/cert-01-peer-certificate-identity.toml", TLS_CANNOT),
    ("tls/db-14-dialback-before-tls.toml", TLS_CANNOT),
    ("tls/ms-09-negotiation-matrix.toml", TLS_CANNOT),
    ("tls/sasl-03-authzid.toml", TLS_CANNOT),
    ("tls/tls-01-starttls-then-external.toml", TLS_CANNOT),
    (
        "tls/tls-02-wrong-name-falls-back-to-dialback.toml",
        TLS_CANNOT,
    ),
    (
        "s2s/ka-01-keepalives.toml",
        "its dialback verification stream negotiates TLS (the rest of that flow is encrypted)",
    ),
    ("presence/arch-07-no-presence-leak.toml", SHARED_SIP_SOCKET),
    ("presence/prb-05-probe-answers.toml", SHARED_SIP_SOCKET),
    (
        "presence/psub-16-unsolicited-and-revoked.toml",
        SHARED_SIP_SOCKET,
    ),
    ("sip-input/sipin-01-malformed-request.toml", MALFORMED_SIP),
    (
        "sip-input/sipin-03-udp-bytes-beyond-content-length.toml",
        MALFORMED_SIP,
    ),
    ("sip-input/sipin-04-huge-header.toml", MALFORMED_SIP),
    (
        "component/cmp-01-handshake.toml",
        "it sends a wrong handshake digest on purpose; without the secret a capture cannot tell \
         a wrong digest from a right one, so the draft computes a right one",
    ),
];

/// Capture round trip: the run's transcript as captured flows (what a loopback capture
/// holds, the SUT's end written as 127.0.0.2), imported with `--sut 127.0.0.2`, run again.
/// Compared stream by stream ([`per_stream`]).
#[rstest]
fn capture_round_trip(#[files("scenarios/**/*.toml")] path: PathBuf) {
    let catalogue = Catalogue::builtin().expect("the built-in catalogue parses");
    let rt = runtime();
    let target = Target::Bundled;
    let outcomes = rt.block_on(suite::run_file(&path, &target, &catalogue));
    let run = sinks::TargetRun {
        target: &target,
        outcomes: &outcomes,
        exit_code: 0,
        elapsed: std::time::Duration::ZERO,
        version: None,
    };
    let report = sinks::json_report(&run);
    let sut_ip: std::net::IpAddr = std::net::Ipv4Addr::new(127, 0, 0, 2).into();
    let sut = [import::SutAddr {
        ip: sut_ip,
        port: None,
    }];
    let mut problems = Vec::new();
    let listed = CAPTURE_CANNOT
        .iter()
        .find(|(f, _)| path.to_string_lossy().contains(f));
    let mut any_differs = false;
    for (o, jo) in outcomes.iter().zip(&report.outcomes) {
        let name = o.name();
        let cap = through_pcap(import::capture_from_outcome(jo, Some(sut_ip)));
        let trace = match import::trace_from_capture(&cap, "run.pcapng", &sut) {
            Ok(t) => t,
            Err(e) => {
                any_differs = true;
                if listed.is_none() {
                    problems.push(format!("{name}: {e}"));
                }
                continue;
            }
        };
        let text = import::render(&import::draft(&trace));
        let draft = match load::load_str(&text, Path::new("draft.toml"), &catalogue) {
            Ok(d) => d,
            Err(e) => {
                problems.push(format!("{name}: the draft does not load: {e}\n{text}"));
                continue;
            }
        };
        let again = rt.block_on(suite::run_scenario(&draft, &target, &catalogue));
        let before = per_stream(&o.normalised);
        let after = per_stream(&again.normalised);
        let same = again.verdict == o.verdict && before == after;
        any_differs |= !same;
        match (same, listed) {
            (true, _) | (false, Some(_)) => {}
            (false, None) => problems.push(format!(
                "{name}: verdict {} → {}\n{}\n--- original\n{before:#?}\n--- draft run\n{after:#?}\n--- draft\n{text}",
                o.verdict,
                again.verdict,
                again
                    .failure
                    .as_ref()
                    .map(|f| format!("failed at step {}: expected {} got {}", f.step, f.expected, f.got))
                    .or(again.reason.clone())
                    .unwrap_or_default(),
            )),
        }
    }
    if let Some((f, why)) = listed
        && !any_differs
    {
        problems.push(format!(
            "{f} round-trips through a capture now: remove it from CAPTURE_CANNOT ({why})"
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

/// The loader accepts `covers = []` (a fresh draft); the suite's own scenarios must still
/// say what they check.
#[rstest]
fn suite_scenarios_name_requirements(#[files("scenarios/**/*.toml")] path: PathBuf) {
    let catalogue = Catalogue::builtin().expect("the built-in catalogue parses");
    let cells = load::load_file_cells(&path, &catalogue).expect("the scenario loads");
    for c in cells {
        assert!(
            !c.covers.is_empty(),
            "{}: covers = [] outside a draft",
            path.display()
        );
    }
}

// ---- the command line ---------------------------------------------------------------------

fn fedcheck() -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_fedcheck"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

fn run_ok(c: &mut std::process::Command) -> std::process::Output {
    c.output().expect("fedcheck runs")
}

/// A report of two scenarios, one a matrix, written by `fedcheck run --json`.
fn two_scenario_report(dir: &Path) -> PathBuf {
    let json = dir.join("run.json");
    let out = run_ok(
        fedcheck()
            .args(["run", "scenarios/s2s/db-06-receiving-verifies.toml"])
            .arg("scenarios/im/im-05-sip-message-to-xmpp.toml")
            .arg("--json")
            .arg(&json),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    json
}

#[test]
fn import_a_report_outcome_then_run_the_draft() {
    let dir = tempfile::tempdir().expect("tempdir");
    let json = two_scenario_report(dir.path());
    let draft = dir.path().join("draft.toml");
    let out = run_ok(
        fedcheck()
            .arg("import")
            .arg(&json)
            .args(["--scenario", "im-05", "--cell", "transport=tcp", "--out"])
            .arg(&draft),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&draft).expect("the draft was written");
    assert!(text.contains("covers = []"), "{text}");
    assert!(
        text.contains("[sip.alice]\nuri = \"sip:alice@{gw}\"\ntransport = \"tcp\""),
        "{text}"
    );
    let again = run_ok(fedcheck().arg("run").arg(&draft));
    assert_eq!(
        again.status.code(),
        Some(0),
        "{}\n{text}",
        String::from_utf8_lossy(&again.stdout)
    );
}

#[rstest]
#[case::several_outcomes(&[], "3 outcomes match; pick one with --scenario")]
#[case::no_match(&["--scenario", "nope.toml"], "no outcome matches")]
#[case::matrix_without_cell(&["--scenario", "im-05"], "--cell")]
fn an_ambiguous_pick_names_what_the_report_has(#[case] args: &[&str], #[case] want: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let json = two_scenario_report(dir.path());
    let out = run_ok(fedcheck().arg("import").arg(&json).args(args));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("run.json") && err.contains(want), "{err}");
}

/// Bad input: each error names the file and what is missing, exit 2.
#[rstest]
#[case::empty(b"", &["--sut", "127.0.0.2"], "empty")]
#[case::unknown(b"GIF89a....", &["--sut", "127.0.0.2"], "not a pcap, pcapng or fedcheck JSON report")]
#[case::no_sut(&[0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0], &[], "--sut is required")]
#[case::bad_sut(&[0x0a, 0x0d, 0x0d, 0x0a], &["--sut", "sut.test"], "bad --sut address")]
#[case::truncated_pcap(&[0xd4, 0xc3, 0xb2, 0xa1, 2, 0], &["--sut", "127.0.0.2"], "")]
#[case::not_a_report(b"{\"hello\": 1}", &[], "missing: schema_version")]
fn bad_input_names_file_and_problem(
    #[case] bytes: &[u8],
    #[case] args: &[&str],
    #[case] want: &str,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("input.cap");
    std::fs::write(&file, bytes).expect("write");
    let out = run_ok(fedcheck().arg("import").arg(&file).args(args));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("input.cap") && err.contains(want), "{err}");
}

/// A report of a failed run imports as a draft that fails the same way: it ends with the
/// expectation that did not hold, in place of the unit that came instead.
#[test]
fn a_failed_outcome_imports_as_a_draft_that_fails_the_same_way() {
    let catalogue = Catalogue::builtin().expect("the built-in catalogue parses");
    let rt = runtime();
    let target = Target::Bundled;
    let text = r#"title = "expects a header the SUT does not send"
covers = ["STR-02"]

[xmpp.rx]
domain = "remote.test"

[[step]]
connect = "in"
actor = "rx"

[[step]]
send = "in"
xml = """<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' from='{rx}' to='{sut}' version='1.0'>"""

[[step]]
expect = "in"
xml = """<stream:stream from='{sut}' to='{rx}' id='{any}' version='0.9'>"""
"#;
    let s = load::load_str(text, Path::new("wrong.toml"), &catalogue).expect("loads");
    let o = rt.block_on(suite::run_scenario(&s, &target, &catalogue));
    assert_eq!(o.verdict.as_str(), "fail");
    let outcomes = vec![o];
    let run = sinks::TargetRun {
        target: &target,
        outcomes: &outcomes,
        exit_code: 1,
        elapsed: std::time::Duration::ZERO,
        version: None,
    };
    let report = sinks::json_report(&run);
    let jo = report.outcomes.first().expect("one outcome");
    let trace = import::trace_from_report(&report, jo, "run.json", Some(&s)).expect("imports");
    let draft_text = import::render(&import::draft(&trace));
    assert!(draft_text.contains("version='0.9'"), "{draft_text}");
    let draft = load::load_str(&draft_text, Path::new("draft.toml"), &catalogue)
        .unwrap_or_else(|e| panic!("{e}\n{draft_text}"));
    let again = rt.block_on(suite::run_scenario(&draft, &target, &catalogue));
    assert_eq!(again.verdict.as_str(), "fail", "{draft_text}");
    let (a, b) = (
        outcomes.first().and_then(|o| o.failure.as_ref()),
        again.failure.as_ref(),
    );
    assert_eq!(
        a.map(|f| &f.expected),
        b.map(|f| &f.expected),
        "{draft_text}"
    );
    assert_eq!(
        comparable(&outcomes[0].normalised),
        comparable(&again.normalised)
    );
}

/// What `fedcheck run --pcap` will write: each stream a TCP flow between the addresses its
/// `connected` entry names, the opener as initiator, the outcomes one after another.
#[test]
fn a_report_as_captured_flows() {
    use fedcheck::capture::{Payload, Side, Transport};
    let catalogue = Catalogue::builtin().expect("the built-in catalogue parses");
    let rt = runtime();
    let target = Target::Bundled;
    let mut outcomes = Vec::new();
    for f in [
        "scenarios/s2s/db-06-receiving-verifies.toml",
        "scenarios/im/im-05-sip-message-to-xmpp.toml",
    ] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(f);
        outcomes.extend(rt.block_on(suite::run_file(&path, &target, &catalogue)));
    }
    let run = sinks::TargetRun {
        target: &target,
        outcomes: &outcomes,
        exit_code: 0,
        elapsed: std::time::Duration::ZERO,
        version: None,
    };
    let report = sinks::json_report(&run);
    let first = report.outcomes.first().expect("db-06");
    let c = import::capture_from_outcome(first, None);
    // db-06: `in` opened by the actor, `out` by the SUT.
    let kinds: Vec<(Transport, Payload)> =
        c.flows.iter().map(|f| (f.transport, f.payload)).collect();
    assert_eq!(kinds, vec![(Transport::Tcp, Payload::Xmpp); 2]);
    let (inbound, outbound) = (&c.flows[0], &c.flows[1]);
    assert_eq!(
        inbound.chunks.first().map(|ch| ch.from),
        Some(Side::Initiator),
        "the actor speaks first on the stream it opened"
    );
    assert_eq!(
        outbound.chunks.first().map(|ch| ch.from),
        Some(Side::Initiator),
        "the SUT opened `out`"
    );
    assert_ne!(inbound.responder.port(), outbound.responder.port());
    let all = import::capture_from_report(&report);
    // db-06 (2 flows), im-05 udp (SIP + out + out_verify), im-05 tcp (the same).
    assert_eq!(all.flows.len(), 2 + 3 + 3);
    assert_eq!(
        all.flows
            .iter()
            .filter(|f| f.payload == Payload::Sip)
            .count(),
        2
    );
    let starts: Vec<_> = all.flows.iter().map(|f| f.opened_at).collect();
    let db06_last = all.flows[..2]
        .iter()
        .flat_map(|f| f.chunks.iter().map(|c| c.at))
        .max()
        .unwrap_or_default();
    assert!(starts[2..].iter().all(|s| *s > db06_last), "{starts:?}");
}

/// The pcap path end to end, as a support engineer would take it: `fedcheck run --pcap`
/// writes a pcapng of a bundled run, `fedcheck import` names only the SUT's listening port
/// (the streams the SUT dialled from ephemeral ports are found by their headers), and the
/// draft passes when re-run.
#[test]
fn run_pcap_then_import_then_run_the_draft() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pcap = dir.path().join("run.pcapng");
    let json = dir.path().join("run.json");
    let out = run_ok(
        fedcheck()
            .args(["run", "scenarios/s2s/db-18-ping-round-trip.toml", "--pcap"])
            .arg(&pcap)
            .arg("--json")
            .arg(&json),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(&pcap).expect("the pcapng was written");
    assert_eq!(
        bytes.get(..4),
        Some(&[0x0a, 0x0d, 0x0d, 0x0a][..]),
        "pcapng magic"
    );
    // The SUT's S2S port: the peer of the first connection an actor opened.
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("json")).expect("json parses");
    let sut_addr = report["outcomes"][0]["transcript"]
        .as_array()
        .expect("transcript")
        .iter()
        .find(|e| e["kind"] == "connected" && e["dir"] == "to_sut")
        .and_then(|e| e["detail"].as_str())
        .and_then(|d| d.split(" -> ").nth(1))
        .expect("a connection to the SUT")
        .to_string();
    let draft = dir.path().join("draft.toml");
    let out = run_ok(
        fedcheck()
            .arg("import")
            .arg(&pcap)
            .args(["--sut", &sut_addr, "--out"])
            .arg(&draft),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&draft).expect("the draft was written");
    assert!(
        text.starts_with("# Draft scenario imported by `fedcheck import` from "),
        "{text}"
    );
    assert!(
        text.contains(" as remote/out "),
        "the SUT's own stream is taken: {text}"
    );
    let again = run_ok(fedcheck().arg("run").arg(&draft));
    assert_eq!(
        again.status.code(),
        Some(0),
        "{}\n{text}",
        String::from_utf8_lossy(&again.stderr)
    );
}
