//! TLS for the harness's simulated servers (RFC 6120 §5, RFC 7590).
//!
//! The harness is a tester, not a relying party: it completes a handshake with whatever
//! certificate the SUT presents (the any-certificate verifiers of [`crate::tls::config`],
//! which still check handshake signatures) and *records* what it saw (version, ALPN, the chain and how
//! it verifies against the run's test CA) in the transcript, so scenarios and reports can
//! judge it. Its own side presents the actor's certificate from the run's test PKI.

use std::time::{Duration, SystemTime};

use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;

use crate::tls::config::{self as tls_config, TlsIdentity};
use crate::tls::identity::{PeerRole, anchors_from};
use crate::tls::{CertVerdict, Leaf, TestCa, verify_peer};

#[derive(Debug, thiserror::Error)]
pub enum TlsIoError {
    #[error("TLS configuration: {0}")]
    Config(#[from] tls_config::TlsConfigError),
    #[error("TLS handshake: {0}")]
    Handshake(std::io::Error),
    #[error("TLS handshake did not finish within {0:?}")]
    Timeout(Duration),
    #[error("invalid server name {0:?}")]
    ServerName(String),
}

/// What the harness saw of one handshake.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsSummary {
    pub version: String,
    pub alpn: Option<String>,
    pub cipher: String,
    /// The SUT's chain, end entity first (empty when it sent none).
    pub peer_chain: Vec<Vec<u8>>,
    /// The SUT's certificate checked against the run's CA for the role it played.
    pub verdict: CertVerdict,
}

fn summary(
    conn: &rustls::CommonState,
    chain: Option<&[CertificateDer<'static>]>,
    ca: &TestCa,
    role: PeerRole,
) -> TlsSummary {
    let chain: Vec<CertificateDer<'static>> = chain.map(|c| c.to_vec()).unwrap_or_default();
    let ca_cert = ca.cert();
    let (anchors, _) = anchors_from(std::slice::from_ref(&ca_cert));
    let verdict = verify_peer(&chain, &anchors, SystemTime::now(), role);
    TlsSummary {
        version: conn
            .protocol_version()
            .map(|v| format!("{v:?}"))
            .unwrap_or_else(|| "?".into()),
        alpn: conn
            .alpn_protocol()
            .map(|a| String::from_utf8_lossy(a).into_owned()),
        cipher: conn
            .negotiated_cipher_suite()
            .map(|c| format!("{:?}", c.suite()))
            .unwrap_or_default(),
        peer_chain: chain.iter().map(|c| c.to_vec()).collect(),
        verdict,
    }
}

/// The actor as TLS client (it initiated the stream): presents `leaf` if any, SNI = the
/// domain it is talking to.
pub async fn connect(
    tcp: TcpStream,
    server_domain: &str,
    leaf: Option<&Leaf>,
    ca: &TestCa,
    timeout: Duration,
) -> Result<(tokio_rustls::TlsStream<TcpStream>, TlsSummary), TlsIoError> {
    let cfg = tls_config::client_config(leaf.map(TlsIdentity::from_leaf))?;
    let name = ServerName::try_from(server_domain.to_string())
        .map_err(|_| TlsIoError::ServerName(server_domain.to_string()))?;
    let connector = tokio_rustls::TlsConnector::from(cfg);
    let tls = match tokio::time::timeout(timeout, connector.connect(name, tcp)).await {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => return Err(TlsIoError::Handshake(e)),
        Err(_) => return Err(TlsIoError::Timeout(timeout)),
    };
    let (_, conn) = tls.get_ref();
    let s = summary(conn, conn.peer_certificates(), ca, PeerRole::Receiving);
    Ok((tokio_rustls::TlsStream::Client(tls), s))
}

/// The actor as TLS server (the SUT initiated the stream): presents `leaf`, asks for (but
/// does not require) a client certificate.
pub async fn accept(
    tcp: TcpStream,
    leaf: &Leaf,
    ca: &TestCa,
    timeout: Duration,
) -> Result<(tokio_rustls::TlsStream<TcpStream>, TlsSummary), TlsIoError> {
    let cfg = tls_config::server_config(TlsIdentity::from_leaf(leaf), true, Vec::new())?;
    let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
    let tls = match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => return Err(TlsIoError::Handshake(e)),
        Err(_) => return Err(TlsIoError::Timeout(timeout)),
    };
    let (_, conn) = tls.get_ref();
    let s = summary(conn, conn.peer_certificates(), ca, PeerRole::Initiating);
    Ok((tokio_rustls::TlsStream::Server(tls), s))
}

/// The certificate presets a scenario can give an actor (`cert = "…"`).
pub const CERT_PRESETS: &[&str] = &[
    "valid",
    "wrong_name",
    "expired",
    "not_yet_valid",
    "untrusted",
    "no_client_auth",
    // RFC 6125 identifier variants (CERT-01..CERT-03).
    "srv_id_only",
    "xmpp_addr_only",
    "cn_only_matches",
    "wildcard",
    "none",
];

/// Issue the actor's certificate for `domain` from preset `preset` (`None` for "none").
pub fn issue(
    ca: &TestCa,
    preset: &str,
    domain: &str,
) -> Result<Option<Leaf>, crate::tls::PkiError> {
    Ok(Some(match preset {
        "valid" => ca.valid(domain)?,
        "wrong_name" => ca.wrong_name(domain)?,
        "expired" => ca.expired(domain)?,
        "not_yet_valid" => ca.not_yet_valid(domain)?,
        "untrusted" => crate::tls::pki::untrusted(domain)?,
        "no_client_auth" => ca.no_client_auth(domain)?,
        "srv_id_only" => ca.srv_id_only(domain)?,
        "xmpp_addr_only" => ca.xmpp_addr_only(domain)?,
        "cn_only_matches" => ca.cn_only_matches(domain)?,
        // `*.parent` for `label.parent`: matches exactly one label (RFC 6125 §6.4.3).
        "wildcard" => ca.wildcard(domain.split_once('.').map_or(domain, |(_, p)| p))?,
        _ => return Ok(None),
    }))
}

/// The certificates of one run: a fresh test CA, each XMPP actor's certificate (by its
/// preset) and the bundled SUT's own, for its domain.
pub struct RunPki {
    pub ca: TestCa,
    pub actors: std::collections::HashMap<String, Option<Leaf>>,
    pub sut: Leaf,
}

impl RunPki {
    pub fn for_scenario(
        s: &crate::harness::load::Scenario,
        sut_domain: &str,
    ) -> Result<Self, crate::tls::PkiError> {
        let ca = TestCa::new("fedcheck test CA")?;
        let mut actors = std::collections::HashMap::new();
        for a in &s.actors {
            if let crate::harness::load::ActorKind::Xmpp { domain, .. } = &a.kind {
                actors.insert(a.name.clone(), issue(&ca, &a.cert, domain)?);
            }
        }
        let sut = ca.valid(sut_domain)?;
        Ok(RunPki { ca, actors, sut })
    }
}

/// One line describing what the harness made of the SUT's certificate.
pub fn describe_verdict(v: &CertVerdict) -> String {
    let trust = if v.trusted {
        "trusted".to_string()
    } else if v.problems.is_empty() {
        "untrusted".to_string()
    } else {
        let p: Vec<String> = v.problems.iter().map(|p| format!("{p:?}")).collect();
        format!("untrusted ({})", p.join(", "))
    };
    let ids: Vec<String> = v
        .identities
        .iter()
        .map(|i| format!("{:?}:{}", i.kind, i.value))
        .collect();
    if ids.is_empty() {
        trust
    } else {
        format!("{trust}; {}", ids.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::IdKind;

    /// Both ends of the harness's TLS over loopback: the handshake completes whatever the
    /// certificates, and each side's summary says how the other's checks out.
    async fn handshake(
        server: &Leaf,
        client: Option<&Leaf>,
        ca: &TestCa,
    ) -> (TlsSummary, TlsSummary) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = l.local_addr().expect("addr");
        let t = Duration::from_secs(5);
        let (srv, cli) = tokio::join!(
            async {
                let (tcp, _) = l.accept().await.expect("accept");
                accept(tcp, server, ca, t).await.expect("server handshake")
            },
            async {
                let tcp = TcpStream::connect(addr).await.expect("connect");
                connect(tcp, "sut.test", client, ca, t)
                    .await
                    .expect("client handshake")
            }
        );
        (srv.1, cli.1)
    }

    #[tokio::test]
    async fn records_versions_alpn_and_verdicts() {
        let ca = TestCa::new("test CA").expect("ca");
        let server = ca.valid("sut.test").expect("leaf");
        let client = ca.valid("remote.test").expect("leaf");
        let (srv, cli) = handshake(&server, Some(&client), &ca).await;
        assert_eq!(cli.alpn.as_deref(), Some("xmpp-server"));
        assert!(cli.version.contains("TLS"), "{}", cli.version);
        assert!(cli.verdict.authenticates("sut.test"), "{cli:?}");
        assert!(srv.verdict.authenticates("remote.test"), "{srv:?}");
        assert!(
            srv.verdict
                .identities
                .iter()
                .any(|i| i.kind == IdKind::DnsId && i.value == "remote.test")
        );
        assert_eq!(describe_verdict(&cli.verdict), "trusted; DnsId:sut.test");
    }

    #[tokio::test]
    async fn a_bad_certificate_is_recorded_not_refused() {
        let ca = TestCa::new("test CA").expect("ca");
        let server = ca.wrong_name("sut.test").expect("leaf");
        let client = crate::tls::pki::untrusted("remote.test").expect("leaf");
        let (srv, cli) = handshake(&server, Some(&client), &ca).await;
        assert!(!cli.verdict.matches("sut.test"), "{cli:?}");
        assert!(!srv.verdict.trusted, "{srv:?}");
        assert!(
            describe_verdict(&srv.verdict).starts_with("untrusted ("),
            "{}",
            describe_verdict(&srv.verdict)
        );
    }

    #[tokio::test]
    async fn no_client_certificate_is_recorded_as_none() {
        let ca = TestCa::new("test CA").expect("ca");
        let server = ca.valid("sut.test").expect("leaf");
        let (srv, _) = handshake(&server, None, &ca).await;
        assert!(srv.peer_chain.is_empty());
        assert!(!srv.verdict.trusted);
    }

    #[test]
    fn every_preset_issues() {
        let ca = TestCa::new("test CA").expect("ca");
        for p in CERT_PRESETS {
            let leaf = issue(&ca, p, "remote.test").expect("issues");
            assert_eq!(leaf.is_none(), *p == "none", "{p}");
        }
    }
}
