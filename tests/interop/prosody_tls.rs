//! Prosody 0.12 federating with the bundled proxy over STARTTLS and SASL
//! EXTERNAL (RFC 6120 §5, §6; XEP-0178), with certificates from a CA made
//! for the run (`fedcheck::tls::pki`), and refusing a certificate that does
//! not name the proxy's domain (RFC 6120 §13.7.1.2, RFC 6125 §6).
//!
//! Prosody runs with `s2s_secure_auth = true`: it authenticates a peer only
//! by a valid certificate for the peer's name, never by dialback alone. The
//! proxy's partner policy for Prosody's domain is TLS required, SASL
//! required, dialback off (MS-06..MS-08), so certificates are the only way
//! in on both sides.

use std::path::{Path, PathBuf};

use fedcheck::harness::peers::prosody::{
    Direction, Prosody, ProsodyConfig, ProsodyError, ProsodyTls, S2sSession,
};
use fedcheck::proxy::{self, PartnerConfig, ProxyConfig, RunningProxy};
use fedcheck::tls::{Leaf, TestCa, TlsMaterial};
use fedcheck::xmpp::s2s::Negotiation;

use super::prosody::require_prosody;

const PROSODY_DOMAIN: &str = "prosody.test";
const OUR_DOMAIN: &str = "fedcheck.test";

/// Proxy logs go to the test's captured output (shown on failure);
/// `RUST_LOG` overrides the default filter.
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("fedcheck=debug"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .with_ansi(false)
        .try_init();
}

/// Prosody's certificate folder (`<domain>.crt` / `<domain>.key`) and the
/// CA file, written under `dir`.
fn prosody_tls_files(ca: &TestCa, dir: &Path) -> ProsodyTls {
    let cert_dir = dir.join("certs");
    let leaf = ca
        .valid(PROSODY_DOMAIN)
        .unwrap_or_else(|e| panic!("issuing {PROSODY_DOMAIN}: {e}"));
    leaf.write_to(&cert_dir, PROSODY_DOMAIN)
        .unwrap_or_else(|e| panic!("writing {PROSODY_DOMAIN} certificate: {e}"));
    let ca_file: PathBuf = ca
        .write_to(dir)
        .unwrap_or_else(|e| panic!("writing the CA: {e}"));
    ProsodyTls::strict(cert_dir, ca_file)
}

/// The bundled proxy for `fedcheck.test`, presenting `leaf`, trusting `ca`,
/// routed to `prosody_addr`, with Prosody as a certificates-only partner.
async fn start_proxy(ca: &TestCa, leaf: &Leaf, prosody_addr: std::net::SocketAddr) -> RunningProxy {
    let mut cfg = ProxyConfig::new(OUR_DOMAIN, "interop-test-tls-secret");
    cfg.routes
        .insert(PROSODY_DOMAIN.to_owned(), prosody_addr.to_string());
    cfg.tls_material = Some(TlsMaterial::from_leaf(leaf, ca.cert_pem()));
    cfg.partners.insert(
        PROSODY_DOMAIN.to_owned(),
        PartnerConfig {
            tls: Some(Negotiation::Required),
            sasl: Some(Negotiation::Required),
            dialback: Some(false),
            keepalive: Some(false),
        },
    );
    let proxy = proxy::start(cfg)
        .await
        .unwrap_or_else(|e| panic!("starting the proxy: {e}"));
    assert!(proxy.s2s_addr.ip().is_loopback());
    proxy
}

fn session_with(sessions: &[S2sSession], direction: Direction) -> Option<&S2sSession> {
    sessions
        .iter()
        .find(|s| s.direction == direction && s.host == PROSODY_DOMAIN && s.remote == OUR_DOMAIN)
}

/// Issue 4 item 10: Prosody (`prosody.test`, `s2s_secure_auth = true`)
/// pings the proxy (`fedcheck.test`) and the pong comes back, both streams
/// over STARTTLS and authenticated by SASL EXTERNAL with certificates from
/// the run's CA.
///
/// Prosody's outgoing stream carries the ping: the proxy offers EXTERNAL
/// after TLS because Prosody's client certificate names `prosody.test`, and
/// Prosody authenticates with it (SASL column `Succeeded`). The pong
/// travels on the proxy's own outgoing stream, which Prosody accepts only
/// because the proxy's certificate is valid for `fedcheck.test` (secure
/// auth; Certificate column `Valid`). No stream used dialback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prosody_federates_over_starttls_and_sasl_external() {
    let Some(bin) = require_prosody() else {
        return;
    };
    init_tracing();
    let scratch = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let ca = TestCa::new("fedcheck interop CA").unwrap_or_else(|e| panic!("CA: {e}"));
    let tls = prosody_tls_files(&ca, scratch.path());
    let our_leaf = ca
        .valid(OUR_DOMAIN)
        .unwrap_or_else(|e| panic!("issuing {OUR_DOMAIN}: {e}"));

    let pcfg = ProsodyConfig::new(PROSODY_DOMAIN)
        .unwrap_or_else(|e| panic!("{e}"))
        .with_tls(tls);
    let proxy = start_proxy(&ca, &our_leaf, pcfg.s2s_addr).await;
    let prosody = Prosody::start(&bin, pcfg.route(OUR_DOMAIN, proxy.s2s_addr))
        .await
        .unwrap_or_else(|e| panic!("starting prosody: {e}"));
    let fail = |what: &dyn std::fmt::Display| -> ! {
        panic!("{what}\n--- prosody log tail ---\n{}", prosody.log_tail(80))
    };

    let pong = match prosody.ping(OUR_DOMAIN).await {
        Ok(p) => p,
        Err(e) => fail(&e),
    };
    assert!(pong.starts_with("pong from fedcheck.test"), "{pong}");

    let sessions = match prosody.s2s_sessions().await {
        Ok(s) => s,
        Err(e) => fail(&e),
    };
    println!("Prosody's S2S sessions: {sessions:#?}");
    let Some(outgoing) = session_with(&sessions, Direction::Outgoing) else {
        fail(&format!(
            "no stream from Prosody to the proxy: {sessions:?}"
        ))
    };
    let Some(incoming) = session_with(&sessions, Direction::Incoming) else {
        fail(&format!(
            "no stream from the proxy to Prosody: {sessions:?}"
        ))
    };
    for (name, s) in [("outgoing", outgoing), ("incoming", incoming)] {
        if !s.is_tls() {
            fail(&format!("the {name} stream is not encrypted: {s:?}"));
        }
        if !s.is_certificate_authenticated() {
            fail(&format!(
                "the {name} stream is not authenticated by certificate: {s:?}"
            ));
        }
    }
    // Prosody authenticated its own stream with SASL EXTERNAL (XEP-0178 §3).
    if outgoing.sasl != "Succeeded" {
        fail(&format!(
            "SASL EXTERNAL did not succeed outbound: {outgoing:?}"
        ));
    }
    // …and the proxy did the same on its stream (XEP-0178 §4: Prosody, as
    // receiving server, answered the proxy's <auth mechanism='EXTERNAL'/>).
    if prosody
        .log_lines_with(&[
            "Sending[s2sin",
            "<success",
            "urn:ietf:params:xml:ns:xmpp-sasl",
        ])
        .is_empty()
    {
        fail(&"Prosody never sent <success/> to the proxy's SASL EXTERNAL");
    }
    // No dialback anywhere (XEP-0220 §2.1): Prosody logs sending its key in
    // words, other sent dialback elements with the `db:` prefix, and what it
    // receives with the namespace spelt out.
    let mut dialback = prosody.log_lines_with(&["sent dialback key"]);
    dialback.extend(prosody.log_lines_with(&["<db:result"]));
    dialback.extend(prosody.log_lines_with(&["<db:verify"]));
    dialback.extend(prosody.log_lines_with(&["<result", "jabber:server:dialback"]));
    dialback.extend(prosody.log_lines_with(&["<verify", "jabber:server:dialback"]));
    if !dialback.is_empty() {
        fail(&format!("dialback was used: {dialback:#?}"));
    }
    if prosody
        .log_lines_with(&[
            "Received[s2sin]",
            "<iq ",
            "type='result'",
            "from='fedcheck.test'",
        ])
        .is_empty()
    {
        fail(&"the pong did not arrive on the proxy's own stream");
    }

    prosody.stop().await.unwrap_or_else(|e| panic!("{e}"));
    proxy.shutdown().await;
}

/// Issue 4 item 10, the refusal: the proxy presents a certificate from the
/// trusted CA but for `not-fedcheck.test`. Prosody, with secure auth, must
/// not accept it as `fedcheck.test` (RFC 6120 §13.7.1.2, RFC 6125 §6.4):
/// the ping fails and Prosody's log says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prosody_refuses_a_wrong_name_certificate() {
    let Some(bin) = require_prosody() else {
        return;
    };
    init_tracing();
    let scratch = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let ca = TestCa::new("fedcheck interop CA").unwrap_or_else(|e| panic!("CA: {e}"));
    let tls = prosody_tls_files(&ca, scratch.path());
    let wrong = ca
        .wrong_name(OUR_DOMAIN)
        .unwrap_or_else(|e| panic!("issuing the wrong-name leaf: {e}"));

    let pcfg = ProsodyConfig::new(PROSODY_DOMAIN)
        .unwrap_or_else(|e| panic!("{e}"))
        .with_tls(tls);
    let proxy = start_proxy(&ca, &wrong, pcfg.s2s_addr).await;
    let prosody = Prosody::start(&bin, pcfg.route(OUR_DOMAIN, proxy.s2s_addr))
        .await
        .unwrap_or_else(|e| panic!("starting prosody: {e}"));

    let ping = prosody.ping(OUR_DOMAIN).await;
    let error = match &ping {
        Ok(pong) => panic!(
            "Prosody accepted a certificate for not-{OUR_DOMAIN} as {OUR_DOMAIN}: {pong}\n{}",
            prosody.log_tail(80)
        ),
        Err(ProsodyError::Shell { output, .. }) => output.stderr.trim().to_owned(),
        Err(e) => e.to_string(),
    };
    println!("ping failed: {error}");
    let reasons = prosody.log_lines_with(&["not valid for this name"]);
    println!("Prosody's reason(s):\n{}", reasons.join("\n"));
    let tail = || prosody.log_tail(120);
    assert!(
        error.contains("certificate is not valid for this name"),
        "the ping failed for another reason: {error}\n--- prosody log tail ---\n{}",
        tail()
    );
    // Prosody closes its stream with <not-authorized/> (RFC 6120 §4.9.3.12)
    // and says why in the stream error's text.
    assert!(
        reasons
            .iter()
            .any(|l| l.contains("<not-authorized") && l.contains("not valid for this name")),
        "no <not-authorized/> stream error naming the certificate\n--- prosody log tail ---\n{}",
        tail()
    );
    let sessions = prosody.s2s_sessions().await.unwrap_or_default();
    println!("Prosody's S2S sessions after the refusal: {sessions:#?}");
    assert!(
        !sessions
            .iter()
            .any(|s| s.remote == OUR_DOMAIN && s.is_certificate_authenticated()),
        "a stream with the wrong-name certificate counts as authenticated: {sessions:?}"
    );

    prosody.stop().await.unwrap_or_else(|e| panic!("{e}"));
    proxy.shutdown().await;
}
