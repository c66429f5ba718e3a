//! The `remote` target: the same scenarios against a SUT the harness did not start, reached
//! only through the addresses and capabilities a target file declares.

use std::path::Path;

use fedcheck::harness::catalogue::Catalogue;
use fedcheck::harness::suite;
use fedcheck::harness::target::Target;
use fedcheck::harness::verdict::Verdict;
use fedcheck::proxy::{self, ProxyConfig};

fn scenario(rel: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// A free loopback port for the simulated server the SUT is configured to dial.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Start a proxy "somewhere else" and describe it the way an operator would.
async fn remote_proxy(capabilities: &str) -> (proxy::RunningProxy, Target) {
    let rx_port = free_port();
    let mut cfg = ProxyConfig::new("gw.example.test", "an operator's secret");
    cfg.routes
        .insert("remote.test".into(), format!("127.0.0.1:{rx_port}"));
    let running = proxy::start(cfg).await.expect("proxy starts");
    let file = format!(
        r#"
name = "a proxy started by the test"
kind = "remote"
capabilities = [{capabilities}]

[xmpp]
domain = "gw.example.test"
s2s = "{}"

[routes]
"remote.test" = "127.0.0.1:{rx_port}"
"#,
        running.s2s_addr
    );
    let target =
        Target::from_str(&file, Path::new("remote-target.toml")).expect("target file parses");
    (running, target)
}

#[test]
fn scenarios_run_unchanged_against_a_remote_target() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let (running, target) = remote_proxy(r#""dialback", "s2s-in", "s2s-out""#).await;
        let cat = Catalogue::builtin().expect("catalogue");
        for s in [
            "scenarios/s2s/db-06-receiving-verifies.toml",
            "scenarios/s2s/db-18-ping-round-trip.toml",
        ] {
            let o = suite::run_file(&scenario(s), &target, &cat).await.remove(0);
            assert_eq!(
                o.verdict,
                Verdict::Pass,
                "{s}: {}",
                fedcheck::harness::report::details(&o, &cat)
            );
            // The SUT's own domain is normalised away: the transcript reads as for any target.
            assert!(
                !o.normalised.contains("gw.example.test"),
                "{}",
                o.normalised
            );
            assert!(o.normalised.contains("{sut}"));
        }
        running.shutdown().await;
    });
}

#[test]
fn a_capability_the_target_does_not_claim_is_inconclusive() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let (running, target) = remote_proxy(r#""dialback""#).await;
        let cat = Catalogue::builtin().expect("catalogue");
        let o = suite::run_file(
            &scenario("scenarios/component/cmp-01-handshake.toml"),
            &target,
            &cat,
        )
        .await
        .remove(0);
        assert_eq!(o.verdict, Verdict::Inconclusive);
        assert!(
            o.reason.as_deref().unwrap_or("").contains("component"),
            "{:?}",
            o.reason
        );
        assert!(
            o.transcript.entries.is_empty(),
            "nothing is sent to a SUT that lacks the capability"
        );
        running.shutdown().await;
    });
}

#[test]
fn a_bad_target_file_names_file_line_and_rule() {
    let err = Target::from_str(
        "name = \"x\"\nkind = \"remote\"\n[xmpp]\ndomain = \"d\"\ns2s = 5\n",
        Path::new("t.toml"),
    )
    .expect_err("s2s must be a string");
    assert!(err.to_string().starts_with("t.toml:5:"), "{err}");
    let err = Target::from_str(
        "name = \"x\"\nkind = \"remote\"\n[xmpp]\ndomain = \"d\"\ns2s = \"127.0.0.1:5269\"\n[routes]\n\"r.test\" = \"10.0.0.1:5269\"\n",
        Path::new("t.toml"),
    )
    .expect_err("routes stay on loopback");
    assert!(err.to_string().contains("loopback"), "{err}");
}
