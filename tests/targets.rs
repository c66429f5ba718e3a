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

/// A proxy and its gateway started "somewhere else" under another gateway domain, described
/// by a remote target file with a `[sip]` section: the SIP scenarios run unchanged (`{gw}`
/// is bound to the target's domain), and transcripts read `{gw}`, never the real domain.
#[test]
fn sip_scenarios_run_against_a_remote_gateway() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let rx_port = free_port();
        let ua_port = free_port();
        let mut cfg = ProxyConfig::new("xmpp.example.test", "an operator's secret");
        cfg.routes
            .insert("remote.test".into(), format!("127.0.0.1:{rx_port}"));
        cfg.component_listen = Some("127.0.0.1:0".parse().expect("addr"));
        cfg.components.push(proxy::ComponentConfig {
            domain: "sip.example.test".into(),
            secret: "gw secret".into(),
        });
        let running = proxy::start(cfg).await.expect("proxy starts");
        let mut gcfg = fedcheck::gateway::GatewayConfig::new(
            "sip.example.test",
            "gw secret",
            running.component_addr.expect("component port"),
        );
        gcfg.sip_routes.insert(
            "sip.example.test".into(),
            format!("127.0.0.1:{ua_port};transport=udp"),
        );
        let gw = fedcheck::gateway::start(gcfg)
            .await
            .expect("gateway starts");
        assert!(gw.wait_linked(std::time::Duration::from_secs(5)).await);
        let file = format!(
            r#"
name = "a proxy and gateway started by the test"
kind = "remote"
capabilities = ["dialback", "s2s-in", "s2s-out", "sip"]

[xmpp]
domain = "xmpp.example.test"
s2s = "{}"

[sip]
domain = "sip.example.test"
udp = "{}"
tcp = "{}"

[sip.routes]
"sip.example.test" = "127.0.0.1:{ua_port}"

[routes]
"remote.test" = "127.0.0.1:{rx_port}"
"#,
            running.s2s_addr, gw.sip_udp_addr, gw.sip_tcp_addr
        );
        let target =
            Target::from_str(&file, Path::new("remote-sip.toml")).expect("target file parses");
        assert_eq!(target.gateway_domain().as_deref(), Some("sip.example.test"));
        let cat = Catalogue::builtin().expect("catalogue");
        let outcomes = suite::run_file(
            &scenario("scenarios/im/im-01-xmpp-message-to-sip.toml"),
            &target,
            &cat,
        )
        .await;
        // The udp cell reaches the UA at the fixed route; the gateway's route is UDP, so
        // the tcp cell's actor (bound on TCP there) never gets the MESSAGE.
        let udp = outcomes
            .iter()
            .find(|o| o.cell.as_deref() == Some("transport=udp"))
            .expect("udp cell");
        assert_eq!(
            udp.verdict,
            Verdict::Pass,
            "{}",
            fedcheck::harness::report::details(udp, &cat)
        );
        assert!(
            udp.normalised.contains("MESSAGE sip:alice@{gw} SIP/2.0"),
            "{}",
            udp.normalised
        );
        assert!(udp.normalised.contains("to='{gw}'"), "{}", udp.normalised);
        assert!(
            !udp.normalised.contains("example.test"),
            "{}",
            udp.normalised
        );
        let o = suite::run_file(
            &scenario("scenarios/im/im-05-sip-message-to-xmpp.toml"),
            &target,
            &cat,
        )
        .await;
        for o in &o {
            if o.cell.as_deref() == Some("transport=udp") {
                assert_eq!(
                    o.verdict,
                    Verdict::Pass,
                    "{}",
                    fedcheck::harness::report::details(o, &cat)
                );
            }
        }
        gw.shutdown().await;
        running.shutdown().await;
    });
}

#[test]
fn bad_sip_sections_name_file_line_and_rule() {
    let head = "name = \"x\"\nkind = \"remote\"\ncapabilities = [\"sip\"]\n[xmpp]\ndomain = \"d.test\"\ns2s = \"127.0.0.1:5269\"\n";
    let cases = [
        (
            "[sip]\ndomain = \"bad domain\"\nudp = \"127.0.0.1:5060\"\n",
            "t.toml:8:",
            "not a domain name",
        ),
        (
            "[sip]\ndomain = \"gw.test\"\n",
            "t.toml:8:",
            "udp` and/or `tcp",
        ),
        (
            "[sip]\ndomain = \"gw.test\"\nudp = \"localhost:5060\"\n",
            "t.toml:9:",
            "not an IP:port",
        ),
        (
            "[sip]\ndomain = \"gw.test\"\nudp = \"127.0.0.1:5060\"\n[sip.routes]\n\"gw.test\" = \"10.1.1.1:5070\"\n",
            "t.toml:11:",
            "loopback",
        ),
        (
            "[sip]\ndomain = \"gw.test\"\nudp = \"127.0.0.1:5060\"\n[sip.routes]\n\"gw.test\" = \"auto\"\n",
            "t.toml:11:",
            "only a process target",
        ),
        (
            "[sip]\ndomain = \"gw.test\"\nudp = \"127.0.0.1:5060\"\n[sip.routes]\n\"gw.test\" = \"127.0.0.1:5070;transport=sctp\"\n",
            "t.toml:11:",
            "unknown parameter",
        ),
        ("", "t.toml:3:", "needs a [sip] section"),
    ];
    for (tail, at, msg) in cases {
        let err = Target::from_str(&format!("{head}{tail}"), Path::new("t.toml")).expect_err(tail);
        let e = err.to_string();
        assert!(e.starts_with(at) && e.contains(msg), "{tail}: {e}");
    }
    let ok = Target::from_str(
        &format!("{head}[sip]\ndomain = \"GW.test\"\ntcp = \"127.0.0.1:5060\"\n[sip.routes]\n\"gw.test\" = \"127.0.0.1:5070;transport=tcp\"\n"),
        Path::new("t.toml"),
    )
    .expect("valid");
    assert_eq!(ok.gateway_domain().as_deref(), Some("gw.test"));
    let err = Target::from_str(
        "name = \"x\"\nkind = \"bundled\"\n[sip]\ndomain = \"gw.test\"\nudp = \"127.0.0.1:1\"\n",
        Path::new("t.toml"),
    )
    .expect_err("bundled has its own");
    assert!(err.to_string().contains("built in"), "{err}");
}

/// `branch` on another stream: the ping's answer comes on `out` while the step waits on
/// `in`; what the branch says decides how the scenario goes on.
#[test]
fn branches_on_another_stream_decide_the_scenario() {
    let steps = |branch: &str, after: &str| {
        format!(
            r#"title = "a branch on another stream"
covers = ["DB-18"]

[xmpp.rx]
domain = "remote.test"

[[step]]
dialback = "in"
actor = "rx"
verify_stream = "out"

[[step]]
send = "in"
xml = """<iq type='get' id='ping1' from='{{rx}}' to='{{sut}}'><ping xmlns='urn:xmpp:ping'/></iq>"""

[[step]]
accept_dialback = "out"
actor = "rx"

[[step]]
expect = "in"
xml = "<message/>"
branch = [{branch}]
{after}"#
        )
    };
    let iq = r#"xml = "<iq type='result' id='ping1' from='{sut}' to='{rx}'/>""#;
    let cases = [
        (
            format!(r#"{{ stream = "out", {iq}, end = "pass", note = "n" }}"#),
            "[[step]]\nexpect = \"in\"\nxml = \"<never/>\"\ntimeout = \"200ms\"",
            Verdict::Pass,
        ),
        (
            format!(
                r#"{{ stream = "out", {iq}, end = "inconclusive", note = "unobservable here" }}"#
            ),
            "",
            Verdict::Inconclusive,
        ),
        // Without `end` the scenario goes on with the next step.
        (
            format!(r#"{{ stream = "out", {iq} }}"#),
            "[[step]]\nexpect_none = \"out\"\nwindow = \"100ms\"",
            Verdict::Pass,
        ),
        // The first unit on the branch's stream does not match: a fail naming it.
        (
            r#"{ stream = "out", xml = "<iq type='error'/>" }"#.to_string(),
            "",
            Verdict::Fail,
        ),
    ];
    let dir = tempfile::tempdir().expect("tempdir");
    let cat = Catalogue::builtin().expect("catalogue");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    for (i, (branch, after, want)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("b{i}.toml"));
        std::fs::write(&path, steps(branch, after)).expect("scenario");
        let o = rt
            .block_on(suite::run_file(&path, &Target::Bundled, &cat))
            .remove(0);
        let details = fedcheck::harness::report::details(&o, &cat);
        assert_eq!(o.verdict, *want, "case {i}: {details}\n{}", o.normalised);
        match want {
            Verdict::Inconclusive => {
                assert!(
                    o.reason
                        .as_deref()
                        .unwrap_or("")
                        .contains("unobservable here"),
                    "{:?}",
                    o.reason
                );
            }
            Verdict::Fail => {
                assert_eq!(o.failure.as_ref().map(|f| f.stream.as_str()), Some("out"));
            }
            _ => assert!(
                o.normalised.contains("the branch on out matched"),
                "{}",
                o.normalised
            ),
        }
    }
}

/// `kind = "container"`: the file loads like a process target with an image instead of a
/// command. Built without the `containers` feature, starting it is an `error` (the harness
/// cannot run it), never a `fail` of the SUT.
#[test]
fn a_container_target_loads_and_needs_the_feature_to_start() {
    let file = r#"
name = "prosody in a container"
kind = "container"
capabilities = ["dialback", "s2s-in", "s2s-out"]

[xmpp]
domain = "prosody.test"
s2s = "127.0.0.1:{port:s2s}"

[container]
image = "prosody/prosody"
tag = "0.12"
env = { PROSODY_CONFIG = "/etc/prosody/prosody.cfg.lua" }
mounts = { "prosody.cfg.lua" = "/etc/prosody/prosody.cfg.lua" }

[process]
ports = ["s2s"]
ready_timeout = "30s"
"#;
    let target = Target::from_str(file, Path::new("container.toml")).expect("loads");
    assert_eq!(target.kind(), "container");
    let bad = file.replace("[process]\n", "[process]\ncommand = [\"prosody\"]\n");
    let err = Target::from_str(&bad, Path::new("container.toml")).expect_err("command");
    assert!(err.to_string().contains("container.command"), "{err}");
    let bad = file.replace("image = \"prosody/prosody\"", "image = \"\"");
    assert!(Target::from_str(&bad, Path::new("container.toml")).is_err());
    if cfg!(feature = "containers") {
        return;
    }
    let cat = Catalogue::builtin().expect("catalogue");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let o = rt
        .block_on(suite::run_file(
            &scenario("scenarios/s2s/db-06-receiving-verifies.toml"),
            &target,
            &cat,
        ))
        .remove(0);
    assert_eq!(o.verdict, Verdict::Error, "{:?}", o.reason);
    assert!(
        o.reason
            .as_deref()
            .unwrap_or("")
            .contains("--features containers"),
        "{:?}",
        o.reason
    );
}
