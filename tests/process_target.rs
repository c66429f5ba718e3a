//! The `process` target: the harness starts the SUT itself, from a target file. Tested with
//! our own proxy binary as the process (always available), with processes that crash, with
//! waivers, and with real Prosody (skipped with a message when it is not installed, a
//! failure under `CI=true`).

use std::path::{Path, PathBuf};
use std::process::Command;

use fedcheck::harness::catalogue::Catalogue;
use fedcheck::harness::suite;
use fedcheck::harness::target::Target;
use fedcheck::harness::verdict::{Outcome, Verdict};

use crate::interop::prosody::require_prosody;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// The fedcheck proxy's config as a TOML template: the harness fills in the domain, the
/// port it chose and the routes to the simulated servers.
const PROXY_TEMPLATE: &str = r#"domains = [@DOMAIN@]
listen = "127.0.0.1:@PORT_S2S@"
dialback_secret = "process-target-test"
routes = @ROUTES@
[timeouts]
connect = "2s"
dialback = "3s"
establish = "5s"
"#;

/// A target file running `command` (with the proxy template rendered to `proxy.toml` in
/// the scratch dir), plus `extra` TOML appended.
fn write_target(dir: &Path, command: &str, extra: &str) -> PathBuf {
    write_target_with(dir, command, "", extra)
}

/// As [`write_target`], with `process_extra` added to the `[process]` table.
fn write_target_with(dir: &Path, command: &str, process_extra: &str, extra: &str) -> PathBuf {
    std::fs::write(dir.join("proxy.toml.in"), PROXY_TEMPLATE).expect("template");
    let file = format!(
        r#"name = "proxy as a process"
kind = "process"
capabilities = ["dialback", "s2s-in", "s2s-out"]
scenario_root = "{scenarios}"

[xmpp]
domain = "px.example.test"
s2s = "127.0.0.1:{{port:s2s}}"

[process]
command = {command}
ports = ["s2s"]
ready_timeout = "5s"
stop_timeout = "1s"
env = {{ FEDCHECK_BIN = "{bin}" }}
{process_extra}

[[process.config]]
template = "proxy.toml.in"
output = "proxy.toml"
syntax = "toml"

[routes]
"remote.test" = "auto"
{extra}"#,
        scenarios = root().join("scenarios").display(),
        bin = env!("CARGO_BIN_EXE_fedcheck"),
    );
    let path = dir.join("target.toml");
    std::fs::write(&path, file).expect("target file");
    path
}

const RUN_PROXY: &str = r#"["sh", "-c", "exec \"$FEDCHECK_BIN\" proxy --config proxy.toml"]"#;

fn run(target: &Target, scenario: &Path) -> Vec<Outcome> {
    let cat = Catalogue::builtin().expect("catalogue");
    rt().block_on(suite::run_file(scenario, target, &cat))
}

fn details(o: &Outcome) -> String {
    let cat = Catalogue::builtin().expect("catalogue");
    fedcheck::harness::report::details(o, &cat)
}

#[test]
fn our_proxy_started_as_a_process_passes_the_dialback_scenarios() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = Target::from_file(&write_target(dir.path(), RUN_PROXY, "")).expect("target");
    for s in [
        "scenarios/s2s/db-06-receiving-verifies.toml",
        "scenarios/s2s/db-18-ping-round-trip.toml",
    ] {
        let o = run(&target, &root().join(s)).remove(0);
        assert_eq!(o.verdict, Verdict::Pass, "{s}: {}", details(&o));
        assert!(o.normalised.contains("{sut}"), "{}", o.normalised);
        assert!(
            !o.normalised.contains("px.example.test"),
            "{}",
            o.normalised
        );
    }
}

/// `lifecycle = "run"`: one SUT serves every scenario of the run (its `auto` routes are
/// chosen once), and it is stopped when the run ends.
#[test]
fn a_run_lifecycle_process_serves_every_scenario() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = std::sync::Arc::new(
        Target::from_file(&write_target_with(
            dir.path(),
            RUN_PROXY,
            "lifecycle = \"run\"",
            "",
        ))
        .expect("target"),
    );
    assert!(!target.parallel_safe());
    let cat = std::sync::Arc::new(Catalogue::builtin().expect("catalogue"));
    let files = vec![
        root().join("scenarios/s2s/db-06-receiving-verifies.toml"),
        root().join("scenarios/s2s/db-18-ping-round-trip.toml"),
        root().join("scenarios/s2s/str-09-host-unknown.toml"),
    ];
    let outcomes = rt().block_on(suite::run_all(files, target.clone(), cat, 4, |_| {}));
    assert_eq!(outcomes.len(), 3);
    for o in &outcomes {
        assert_eq!(o.verdict, Verdict::Pass, "{}", details(o));
    }
}

#[test]
fn a_process_that_exits_before_ready_is_a_fail_with_its_exit_code_and_output() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = Target::from_file(&write_target(
        dir.path(),
        r#"["sh", "-c", "echo 'fatal: cannot load module' >&2; exit 3"]"#,
        "",
    ))
    .expect("target");
    let started = std::time::Instant::now();
    let o = run(
        &target,
        &root().join("scenarios/s2s/db-06-receiving-verifies.toml"),
    )
    .remove(0);
    assert_eq!(o.verdict, Verdict::Fail, "{}", details(&o));
    let reason = o.reason.clone().unwrap_or_default();
    assert!(reason.contains("exited with code 3"), "{reason}");
    assert!(reason.contains("fatal: cannot load module"), "{reason}");
    assert!(o.sut_log.contains("stderr.log"), "{}", o.sut_log);
    assert!(started.elapsed().as_secs() < 10, "bounded");
}

/// The SUT becomes ready, then kills itself with SIGSEGV while the scenario waits: the
/// scenario fails naming the signal, within its own bounded steps.
#[test]
fn a_process_killed_mid_scenario_is_a_fail_naming_the_signal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = Target::from_file(&write_target(
        dir.path(),
        r#"["sh", "-c", "\"$FEDCHECK_BIN\" proxy --config proxy.toml & sleep 0.5; echo 'about to crash'; kill -SEGV $$"]"#,
        "",
    ))
    .expect("target");
    let scenario = dir.path().join("slow.toml");
    std::fs::write(
        &scenario,
        r#"title = "open a stream and wait"
covers = ["STR-02"]

[xmpp.rx]
domain = "remote.test"

[[step]]
connect = "in"
actor = "rx"

[[step]]
expect_none = "in"
window = "1500ms"
"#,
    )
    .expect("scenario");
    let o = run(&target, &scenario).remove(0);
    assert_eq!(o.verdict, Verdict::Fail, "{}", details(&o));
    let reason = o.reason.clone().unwrap_or_default();
    assert!(
        reason.contains("was killed by signal 11 (SIGSEGV) during the scenario"),
        "{reason}"
    );
    assert!(reason.contains("about to crash"), "{reason}");
}

#[test]
fn waivers_turn_fail_into_xfail_and_pass_into_xpass() {
    let dir = tempfile::tempdir().expect("tempdir");
    let waiver = r#"
[[expected_failure]]
scenario = "s2s/db-06-receiving-verifies.toml"
reason = "known"
link = "interop-notes: test"
"#;
    // The proxy passes db-06: a waived pass is an xpass, which fails the run.
    let passing = Target::from_file(&write_target(dir.path(), RUN_PROXY, waiver)).expect("target");
    let o = run(
        &passing,
        &root().join("scenarios/s2s/db-06-receiving-verifies.toml"),
    );
    assert_eq!(o[0].verdict, Verdict::XPass, "{}", details(&o[0]));
    assert_eq!(fedcheck::harness::report::exit_code(&o, false), 1);
    // A SUT that dies fails db-06: waived, that is an xfail and the run holds.
    let crashing = Target::from_file(&write_target(
        dir.path(),
        r#"["sh", "-c", "exit 4"]"#,
        waiver,
    ))
    .expect("target");
    let o = run(
        &crashing,
        &root().join("scenarios/s2s/db-06-receiving-verifies.toml"),
    );
    assert_eq!(o[0].verdict, Verdict::XFail, "{}", details(&o[0]));
    assert_eq!(
        o[0].waiver.as_ref().map(|w| w.reason.as_str()),
        Some("known")
    );
    assert_eq!(fedcheck::harness::report::exit_code(&o, false), 0);
    // An unwaived scenario is untouched.
    let o = run(
        &crashing,
        &root().join("scenarios/s2s/db-18-ping-round-trip.toml"),
    );
    assert_eq!(o[0].verdict, Verdict::Fail);
}

#[test]
fn a_waiver_for_an_unknown_scenario_is_an_error_at_load() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_target(
        dir.path(),
        RUN_PROXY,
        r#"
[[expected_failure]]
scenario = "s2s/no-such-scenario.toml"
reason = "r"
link = "l"
"#,
    );
    let err = Target::from_file(&path).expect_err("unknown scenario");
    assert!(err.to_string().contains("no-such-scenario"), "{err}");
    let path = write_target(
        dir.path(),
        RUN_PROXY,
        r#"
[[expected_failure]]
scenario = "s2s/db-06-receiving-verifies.toml"
reason = "r"
"#,
    );
    let err = Target::from_file(&path).expect_err("link is mandatory");
    assert!(err.to_string().contains("link"), "{err}");
}

/// The shipped Prosody target: real Prosody 0.12 started per scenario. Scenarios it passes
/// pass, a listed deviation is an xfail, and its domain reads `{sut}` in transcripts.
#[test]
fn the_prosody_target_runs_real_prosody() {
    if require_prosody().is_none() {
        return;
    }
    let target = Target::from_file(&root().join("fixtures/targets/prosody.toml"))
        .expect("fixtures/targets/prosody.toml loads");
    assert_eq!(target.kind(), "process");
    let o = run(
        &target,
        &root().join("scenarios/s2s/str-09-host-unknown.toml"),
    )
    .remove(0);
    assert_eq!(o.verdict, Verdict::Pass, "{}", details(&o));
    assert!(o.sut_log.contains("prosody.log"), "{}", o.sut_log);
    let o = run(
        &target,
        &root().join("scenarios/s2s/db-16-fresh-stream-ids.toml"),
    )
    .remove(0);
    assert_eq!(o.verdict, Verdict::Pass, "{}", details(&o));
    assert!(o.normalised.contains("from='{sut}'"), "{}", o.normalised);
    assert!(!o.normalised.contains("prosody.test"), "{}", o.normalised);
    // Prosody verifies an inbound stream over its own outbound one, whose db:result the
    // `dialback` helper answers; the scenario's later `accept_dialback` on that stream is
    // then a no-op and the ping's answer is the next unit on it.
    let o = run(
        &target,
        &root().join("scenarios/s2s/db-18-ping-round-trip.toml"),
    )
    .remove(0);
    assert_eq!(o.verdict, Verdict::Pass, "{}", details(&o));
    assert!(
        o.normalised.contains("out is already authorized"),
        "{}",
        o.normalised
    );
    // Its verification stream starts with its own db:result: `if_requested` plays along.
    let o = run(
        &target,
        &root().join("scenarios/s2s/db-06-receiving-verifies.toml"),
    )
    .remove(0);
    assert_eq!(o.verdict, Verdict::Pass, "{}", details(&o));
    assert!(
        o.normalised.contains("accept dialback on out"),
        "{}",
        o.normalised
    );
    let o = run(
        &target,
        &root().join("scenarios/s2s/db-09-unknown-target-domain.toml"),
    )
    .remove(0);
    assert_eq!(o.verdict, Verdict::XFail, "{}", details(&o));
    // Prosody's allowed orders, expressed as branches: a stanza error on its outbound
    // stream passes; its db:result already answered during the inbound dialback passes
    // db-02 and leaves db-05 unobservable.
    for (s, want, says) in [
        (
            "scenarios/s2s/addrs-01-malformed-to.toml",
            Verdict::Pass,
            "the branch on in_verify matched",
        ),
        (
            "scenarios/s2s/db-02-initiator-request.toml",
            Verdict::Pass,
            "the branch on out matched",
        ),
        (
            "scenarios/s2s/db-05-unsolicited-result-ignored.toml",
            Verdict::Inconclusive,
            "the branch on out matched",
        ),
    ] {
        let o = run(&target, &root().join(s)).remove(0);
        assert_eq!(o.verdict, want, "{s}: {}", details(&o));
        assert!(o.normalised.contains(says), "{}", o.normalised);
    }
}

/// The CLI end to end with the Prosody target: exit 0 (every deviation is waived), and the
/// reports it writes parse.
#[test]
fn fedcheck_run_against_prosody_writes_reports() {
    if require_prosody().is_none() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_fedcheck"))
        .current_dir(root())
        .args([
            "run",
            "scenarios/s2s/str-09-host-unknown.toml",
            "scenarios/s2s/str-02-response-header.toml",
            "--target",
            "fixtures/targets/prosody.toml",
            "--junit",
        ])
        .arg(dir.path().join("junit.xml"))
        .arg("--json")
        .arg(dir.path().join("report.json"))
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("xfail"), "{stdout}");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("report.json")).expect("json"))
            .expect("JSON parses");
    assert_eq!(json["target"]["name"], "prosody");
    assert_eq!(json["summary"]["xfail"], 1);
    let junit = std::fs::read_to_string(dir.path().join("junit.xml")).expect("junit");
    crate::reports::check_junit_shape(&junit);
    assert!(
        junit.contains("<skipped message=\"expected failure:"),
        "{junit}"
    );
}

/// The proxy's config with a component port and the gateway's component, and the
/// gateway's config with its SIP next hops from `@SIP_ROUTES@` (TOML syntax: the
/// reference gateway's own `sip_routes` format).
const PROXY_WITH_GW_TEMPLATE: &str = r#"domains = [@DOMAIN@]
listen = "127.0.0.1:@PORT_S2S@"
component_listen = "127.0.0.1:@PORT_COMPONENT@"
dialback_secret = "process-target-test"
routes = @ROUTES@
[[component]]
domain = @SIP_DOMAIN@
secret = "process-target-gw"
[timeouts]
connect = "2s"
dialback = "3s"
establish = "5s"
"#;

const GATEWAY_TEMPLATE: &str = r#"component_domain = @SIP_DOMAIN@
component_secret = "process-target-gw"
proxy_component_addr = "127.0.0.1:@PORT_COMPONENT@"
sip_listen_udp = "127.0.0.1:@PORT_SIP@"
sip_listen_tcp = "127.0.0.1:@PORT_SIP@"
sip_routes = @SIP_ROUTES@
[timers]
reconnect_min = "50ms"
reconnect_max = "200ms"
"#;

/// A process target with a SIP side: our proxy and gateway, `process_section` being the
/// `[process]` table's own keys, plus `extra` TOML.
fn write_sip_target(dir: &Path, process_section: &str, extra: &str) -> PathBuf {
    std::fs::write(dir.join("proxy.toml.in"), PROXY_WITH_GW_TEMPLATE).expect("template");
    std::fs::write(dir.join("gateway.toml.in"), GATEWAY_TEMPLATE).expect("template");
    let file = format!(
        r#"name = "proxy and gateway as processes"
kind = "process"
capabilities = ["dialback", "s2s-in", "s2s-out", "sip"]
scenario_root = "{scenarios}"

[xmpp]
domain = "px.example.test"
s2s = "127.0.0.1:{{port:s2s}}"

[sip]
domain = "sip.px.example.test"
udp = "127.0.0.1:{{port:sip}}"
tcp = "127.0.0.1:{{port:sip}}"

[process]
ports = ["s2s", "component", "sip"]
ready_timeout = "5s"
stop_timeout = "1s"
env = {{ FEDCHECK_BIN = "{bin}" }}
{process_section}

[[process.config]]
template = "proxy.toml.in"
output = "proxy.toml"
syntax = "toml"

[[process.config]]
template = "gateway.toml.in"
output = "gateway.toml"
syntax = "toml"

[routes]
"remote.test" = "auto"
{extra}"#,
        scenarios = root().join("scenarios").display(),
        bin = env!("CARGO_BIN_EXE_fedcheck"),
    );
    let path = dir.join("target.toml");
    std::fs::write(&path, file).expect("target file");
    path
}

/// The gateway as a `[[process.service]]` of the proxy: started with `{fedcheck}` once the
/// proxy is ready, ready itself once its component link is up; the harness renders
/// `@SIP_ROUTES@` with the SIP actors' sockets, and the scenarios reach the gateway at
/// `[sip]` udp/tcp.
const GATEWAY_SERVICE: &str = r#"
[[process.service]]
name = "gateway"
command = ["{fedcheck}", "gateway", "--config", "{dir}/gateway.toml"]
ready = ["127.0.0.1:{port:sip}"]
ready_log = ["component link ready"]

[[process.service.config]]
template = "gateway.toml.in"
output = "gateway.toml"
syntax = "toml"
"#;

#[test]
fn sip_scenarios_run_against_a_process_target_with_a_gateway_service() {
    fedcheck::harness::process::set_fedcheck_bin(env!("CARGO_BIN_EXE_fedcheck"));
    let dir = tempfile::tempdir().expect("tempdir");
    let target = Target::from_file(&write_sip_target(
        dir.path(),
        r#"command = ["{fedcheck}", "proxy", "--config", "proxy.toml"]
ready = ["127.0.0.1:{port:s2s}", "127.0.0.1:{port:component}"]"#,
        GATEWAY_SERVICE,
    ))
    .expect("target");
    assert_eq!(
        target.gateway_domain().as_deref(),
        Some("sip.px.example.test")
    );
    for s in [
        "scenarios/im/im-01-xmpp-message-to-sip.toml",
        "scenarios/im/im-05-sip-message-to-xmpp.toml",
    ] {
        for o in run(&target, &root().join(s)) {
            assert_eq!(o.verdict, Verdict::Pass, "{s}: {}", details(&o));
            assert!(o.normalised.contains("@{gw}"), "{}", o.normalised);
            assert!(!o.normalised.contains("example.test"), "{}", o.normalised);
            assert!(o.sut_log.contains("gateway.stderr.log"), "{}", o.sut_log);
        }
    }
}

/// A service that dies while a scenario runs is the SUT dying: the scenario fails naming
/// the service, its signal and its last log lines.
#[test]
fn a_service_killed_mid_scenario_is_a_fail_naming_it() {
    fedcheck::harness::process::set_fedcheck_bin(env!("CARGO_BIN_EXE_fedcheck"));
    let dir = tempfile::tempdir().expect("tempdir");
    let target = Target::from_file(&write_sip_target(
        dir.path(),
        r#"command = ["{fedcheck}", "proxy", "--config", "proxy.toml"]"#,
        r#"
[[process.service]]
name = "gateway"
command = ["sh", "-c", "\"$GW\" gateway --config gateway.toml & sleep 0.5; echo 'gateway about to crash' >&2; kill -SEGV $$"]
env = { GW = "{fedcheck}" }

[[process.service.config]]
template = "gateway.toml.in"
output = "gateway.toml"
syntax = "toml"
"#,
    ))
    .expect("target");
    let scenario = dir.path().join("slow.toml");
    std::fs::write(
        &scenario,
        r#"title = "open a stream and wait"
covers = ["STR-02"]

[xmpp.rx]
domain = "remote.test"

[[step]]
connect = "in"
actor = "rx"

[[step]]
expect_none = "in"
window = "1500ms"
"#,
    )
    .expect("scenario");
    let o = run(&target, &scenario).remove(0);
    assert_eq!(o.verdict, Verdict::Fail, "{}", details(&o));
    let reason = o.reason.clone().unwrap_or_default();
    assert!(
        reason.contains(
            "the SUT process `gateway` was killed by signal 11 (SIGSEGV) during the scenario"
        ),
        "{reason}"
    );
    assert!(reason.contains("gateway about to crash"), "{reason}");
}

#[test]
fn bad_services_are_errors_at_load_naming_the_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (service, want) in [
        ("name = \"a b\"\ncommand = [\"x\"]", "letters, digits"),
        ("name = \"gw\"\ncommand = []", "must name a program"),
        ("name = \"gw\"\ncommand = [\"{nope}\"]", "unknown variable"),
        (
            "name = \"gw\"\ncommand = [\"x\"]\n[[process.service]]\nname = \"gw\"\ncommand = [\"y\"]",
            "declared twice",
        ),
    ] {
        let path = write_target(
            dir.path(),
            RUN_PROXY,
            &format!("[[process.service]]\n{service}\n"),
        );
        let err = Target::from_file(&path).expect_err(service).to_string();
        assert!(err.contains(want), "{service}: {err}");
        // file:line:col, the line being the service's `name`.
        let line: usize = err
            .split("target.toml:")
            .nth(1)
            .and_then(|r| r.split(':').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no file:line in {err}"));
        let text = std::fs::read_to_string(&path).expect("target file");
        let at = text.lines().nth(line - 1).unwrap_or_default();
        assert!(
            at.starts_with("name = "),
            "{service}: line {line} is {at:?}"
        );
    }
}

/// The shipped Prosody-with-our-gateway target over the whole suite: every SIP scenario
/// passes through real Prosody's S2S and component port, every known Prosody deviation is
/// a waived `xfail`, and nothing fails, errors or passes unexpectedly (exit 0).
#[test]
fn the_whole_suite_against_prosody_with_our_gateway_as_its_component() {
    if require_prosody().is_none() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_fedcheck"))
        .current_dir(root())
        .args([
            "run",
            "--target",
            "fixtures/targets/prosody-component.toml",
            "--json",
        ])
        .arg(dir.path().join("report.json"))
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("report.json")).expect("json"))
            .expect("JSON parses");
    let summary = &json["summary"];
    let bad: Vec<String> = json["outcomes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|o| matches!(o["verdict"].as_str(), Some("fail" | "error" | "xpass")))
        .map(|o| {
            format!(
                "{} {} {}: {} {}",
                o["verdict"], o["scenario"], o["cell"], o["reason"], o["failure"]
            )
        })
        .collect();
    assert!(bad.is_empty(), "{}\n{stdout}", bad.join("\n"));
    assert_eq!(out.status.code(), Some(0), "{summary}\n{stdout}");
    assert!(summary["xfail"].as_u64().unwrap_or(0) > 0, "{summary}");
    // The SIP side ran and held: every SIP scenario passes.
    let sip: Vec<&serde_json::Value> = json["outcomes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|o| {
            let s = o["scenario"].as_str().unwrap_or_default();
            ["/im/", "/presence/", "/errors/", "/addr/"]
                .iter()
                .any(|d| s.contains(d))
        })
        .collect();
    assert!(sip.len() >= 40, "{}", sip.len());
    // Real STARTTLS and SASL EXTERNAL with the run's test CA (`pki = true`): the cell of
    // the negotiation matrix whose policy this Prosody configuration has.
    let tls = json["outcomes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|o| {
            o["scenario"] == "scenarios/tls/ms-09-negotiation-matrix.toml"
                && o["cell"] == "dialback=true,peer=cert,sasl=optional,tls=optional"
        })
        .expect("the ms-09 cell ran");
    assert_eq!(tls["verdict"], "pass", "{}", tls["reason"]);
    let n = tls["normalised"].as_str().unwrap_or_default();
    assert!(n.contains("peer certificate: trusted"), "{n}");
    assert!(
        n.contains("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>"),
        "{n}"
    );
    for o in sip {
        assert_eq!(o["verdict"], "pass", "{}", o["scenario"]);
        let n = o["normalised"].as_str().unwrap_or_default();
        assert!(!n.contains("prosody.test"), "{n}");
    }
}

#[test]
fn pki_needs_a_fresh_sut_per_scenario() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_target_with(dir.path(), RUN_PROXY, "lifecycle = \"run\"\npki = true", "");
    let err = Target::from_file(&path).expect_err("pki with run lifecycle");
    assert!(
        err.to_string().contains("process.pki needs lifecycle"),
        "{err}"
    );
    let path = write_target_with(dir.path(), RUN_PROXY, "pki = true", "");
    assert!(Target::from_file(&path).is_ok());
}
