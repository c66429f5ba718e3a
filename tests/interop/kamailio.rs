//! Kamailio 5.6 (Debian packages `kamailio` and `kamailio-xmpp-modules`) with its `xmpp`
//! module as the system under test, through the shipped target files: the whole suite runs
//! against each and must end with exit 0 — every deviation waived, nothing failing,
//! erroring or passing unexpectedly — and the unpatched target must show the module's crash.
//!
//! The targets compile their preload shims (fixtures/kamailio/*.c) with `cc` at each start,
//! so the tests need a C compiler as well as Kamailio (`cc` is there wherever cargo links).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::require_peer;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// What running the Kamailio targets needs: the `kamailio` binary, its `xmpp` module and a
/// C compiler for the shims. `FEDCHECK_KAMAILIO` names the binary explicitly.
fn find_kamailio() -> Option<PathBuf> {
    let bin = match std::env::var_os("FEDCHECK_KAMAILIO").map(PathBuf::from) {
        Some(p) => p.is_file().then_some(p)?,
        None => on_path("kamailio", &["/usr/sbin", "/usr/local/sbin"])?,
    };
    // The module directory is per architecture on Debian (`kamailio -I` does not print it).
    let module = std::fs::read_dir("/usr/lib")
        .ok()?
        .filter_map(Result::ok)
        .map(|d| d.path().join("kamailio/modules/xmpp.so"))
        .chain([PathBuf::from("/usr/lib/kamailio/modules/xmpp.so")])
        .any(|p| p.is_file());
    let cc = on_path(
        &std::env::var("CC").unwrap_or_else(|_| "cc".into()),
        &["/usr/bin"],
    );
    (module && cc.is_some()).then_some(bin)
}

fn on_path(name: &str, extra: &[&str]) -> Option<PathBuf> {
    let dirs = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    dirs.into_iter()
        .chain(extra.iter().map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// [`find_kamailio`] under the interop policy: fails the test under `CI=true`, otherwise
/// prints a skip message and returns `None`.
pub fn require_kamailio() -> Option<PathBuf> {
    require_peer(
        find_kamailio(),
        "Kamailio with its xmpp module (`kamailio`, xmpp.so) and a C compiler (`cc`)",
        "apt-get install kamailio kamailio-xmpp-modules gcc, or set FEDCHECK_KAMAILIO",
    )
}

/// `fedcheck run scenarios --target FILE --json …`: the exit code, the JSON report and the
/// console output.
fn run_suite(target: &str) -> (Option<i32>, serde_json::Value, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("report.json");
    let out = Command::new(env!("CARGO_BIN_EXE_fedcheck"))
        .current_dir(root())
        .args(["run", "scenarios", "--target", target, "--json"])
        .arg(&json)
        .output()
        .expect("fedcheck runs");
    let stdout =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let report = std::fs::read(&json)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_else(|| panic!("no JSON report from {target}:\n{stdout}"));
    (out.status.code(), report, stdout)
}

/// The outcomes of one scenario file (every matrix cell).
fn outcomes<'a>(report: &'a serde_json::Value, scenario: &str) -> Vec<&'a serde_json::Value> {
    report["outcomes"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|o| {
                    o["scenario"]
                        .as_str()
                        .is_some_and(|s| s.ends_with(scenario))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Exit 0, and nothing failed, errored or passed unexpectedly: the waivers cover exactly the
/// deviations. Returns the summary for further checks.
fn assert_clean(target: &str, code: Option<i32>, report: &serde_json::Value, stdout: &str) {
    let summary = &report["summary"];
    for k in ["fail", "error", "xpass", "warn"] {
        assert_eq!(summary[k], 0, "{target}: {k} in {summary}\n{stdout}");
    }
    assert_eq!(code, Some(0), "{target}: {summary}\n{stdout}");
    assert!(
        summary["xfail"].as_u64().is_some_and(|n| n > 0),
        "{target}: {summary}"
    );
}

/// The unpatched module: the whole suite is waived, and the waived failures are the crash —
/// the verdict names Kamailio's exit, the log tail the signal of the XMPP process.
#[test]
fn the_unpatched_kamailio_target_shows_the_crash() {
    if require_kamailio().is_none() {
        return;
    }
    let target = "fixtures/targets/kamailio.toml";
    let (code, report, stdout) = run_suite(target);
    assert_clean(target, code, &report, &stdout);
    assert_eq!(report["target"]["name"], "kamailio");
    for scenario in [
        "s2s/str-02-response-header.toml",
        "s2s/db-06-receiving-verifies.toml",
    ] {
        let o = outcomes(&report, scenario);
        let o = o.first().unwrap_or_else(|| panic!("{scenario} ran"));
        assert_eq!(o["verdict"], "xfail", "{o}");
        let reason = o["reason"].as_str().unwrap_or_default();
        assert!(
            reason.contains("the SUT process exited with code 1 during the scenario"),
            "{reason}"
        );
        let log = o["sut_log"].as_str().unwrap_or_default();
        assert!(log.contains("exited by a signal 11"), "{log}");
        assert!(
            o["waiver"]["reason"]
                .as_str()
                .is_some_and(|r| r.contains("SIGSEGV")),
            "{o}"
        );
    }
}

/// With the expat workaround the module answers: the header arrives (without `to`), which is
/// the deviation the scenario now stops at, and the log shows the workaround was active.
#[test]
fn the_kamailio_workaround_target_gets_past_the_crash() {
    if require_kamailio().is_none() {
        return;
    }
    let target = "fixtures/targets/kamailio-workaround.toml";
    let (code, report, stdout) = run_suite(target);
    assert_clean(target, code, &report, &stdout);
    assert_eq!(report["target"]["name"], "kamailio-workaround");
    let o = outcomes(&report, "s2s/str-02-response-header.toml");
    let o = o.first().expect("str-02 ran");
    assert_eq!(o["verdict"], "xfail", "{o}");
    let got = o["failure"]["got"].as_str().unwrap_or_default();
    assert!(got.contains("<stream:stream from='kamailio.test'"), "{o}");
    assert!(got.contains("found no attribute"), "{got}");
    let log = o["sut_log"].as_str().unwrap_or_default();
    assert!(log.contains("expat-attrs-workaround"), "{log}");
    assert!(!log.contains("exited by a signal"), "{log}");
    // A SIP MESSAGE addressed as RFC 7247 has it crashes the module for a reason of its own
    // (no '*' in the Request-URI's user part): accepted with 200, then the XMPP process dies
    // (Kamailio's main process logs it at once; its exit may come after the scenario).
    for o in outcomes(&report, "im/im-05-sip-message-to-xmpp.toml") {
        assert_eq!(o["verdict"], "xfail", "{o}");
        let log = o["sut_log"].as_str().unwrap_or_default();
        assert!(log.contains("exited by a signal 11"), "{log}");
        assert!(
            o["normalised"]
                .as_str()
                .is_some_and(|t| t.contains("SIP/2.0 200 Accepted")),
            "{o}"
        );
    }
    // The SUT dialled the simulated server through the routes shim, on loopback.
    let o = outcomes(&report, "s2s/db-18-ping-round-trip.toml");
    let log = o
        .first()
        .and_then(|o| o["sut_log"].as_str())
        .unwrap_or_default();
    assert!(
        log.contains("fedcheck-routes: connecting to remote.test at 127.0.0.1:"),
        "{log}"
    );
}

/// Kamailio as Prosody's component: both processes start per scenario, the component link is
/// up before the scenario, and the S2S scenarios see Prosody.
#[test]
fn the_kamailio_component_target_runs_behind_prosody() {
    if require_kamailio().is_none() || super::prosody::require_prosody().is_none() {
        return;
    }
    let target = "fixtures/targets/kamailio-component.toml";
    let (code, report, stdout) = run_suite(target);
    assert_clean(target, code, &report, &stdout);
    assert!(
        report["summary"]["pass"].as_u64().is_some_and(|n| n > 0),
        "{}",
        report["summary"]
    );
    let o = outcomes(&report, "s2s/db-18-ping-round-trip.toml");
    let o = o.first().expect("db-18 ran");
    assert_eq!(o["verdict"], "pass", "{o}");
    // The scenario only started once Prosody had logged the component's handshake (the
    // target's ready file); Kamailio's log shows the workaround that made it possible.
    let log = o["sut_log"].as_str().unwrap_or_default();
    assert!(log.contains("expat-attrs-workaround"), "{log}");
    assert!(!log.contains("exited by a signal"), "{log}");
    // XMPP→SIP crosses the component: the MESSAGE arrives, with the module's address mapping
    // (the deviation the waiver names), at the scenario's SIP actor (the outbound proxy).
    for o in outcomes(&report, "im/im-01-xmpp-message-to-sip.toml") {
        assert_eq!(o["verdict"], "xfail", "{o}");
        let got = o["failure"]["got"].as_str().unwrap_or_default();
        assert!(got.starts_with("MESSAGE sip:alice SIP/2.0"), "{got}");
        assert!(got.contains("juliet*remote.test@sip.prosody.test"), "{got}");
    }
}
