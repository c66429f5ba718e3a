//! The command line as a user meets it.

use std::path::Path;
use std::process::Command;

fn fedcheck() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fedcheck"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

#[test]
fn the_shipped_proxy_config_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/proxy.toml");
    let cfg = fedcheck::proxy::ProxyConfig::from_file(&path).expect("fixtures/proxy.toml loads");
    assert_eq!(cfg.domains, vec!["xmpp.example.test".to_string()]);
    assert_eq!(cfg.components.len(), 1);
}

#[test]
fn a_bad_proxy_config_names_file_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "domains = [\"a.test\"]\nlisten = \"not an address\"\ndialback_secret = \"s\"\n",
    )
    .expect("write");
    let out = fedcheck()
        .arg("proxy")
        .arg("--config")
        .arg(&path)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml:2"), "{err}");
}

#[test]
fn list_shows_every_scenario_with_its_requirements() {
    let out = fedcheck().arg("list").output().expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("scenarios/s2s/db-06-receiving-verifies.toml"),
        "{stdout}"
    );
    assert!(stdout.contains("covers: DB-06 DB-08 DB-07"), "{stdout}");
}

#[test]
fn coverage_counts_covered_requirements() {
    let out = fedcheck()
        .args(["coverage", "--missing"])
        .output()
        .expect("run");
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("requirements covered by at least one scenario"),
        "{stdout}"
    );
    assert!(
        !stdout.lines().any(|l| l.starts_with("DB-06 ")),
        "DB-06 is covered: {stdout}"
    );
}

#[test]
fn the_shipped_gateway_config_is_valid_and_a_bad_one_names_its_line() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/gateway.toml");
    fedcheck::gateway::GatewayConfig::from_file(&path).expect("fixtures/gateway.toml loads");
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("gw.toml");
    std::fs::write(
        &bad,
        "component_domain = \"sip.example.test\"\nnot_a_key = 1\n",
    )
    .expect("write");
    let out = fedcheck()
        .arg("gateway")
        .arg("--config")
        .arg(&bad)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("gw.toml:"), "{err}");
}
