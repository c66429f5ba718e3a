//! TLS for the harness's simulated servers (RFC 6120 §5, RFC 7590).
//!
//! The harness is a tester, not a relying party: it completes a handshake with whatever
//! certificate the SUT presents and *records* what it saw (version, ALPN, the chain and how
//! it verifies against the run's test CA) in the transcript, so scenarios and reports can
//! judge it. Its own side presents the actor's certificate from the run's test PKI.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use tokio::net::TcpStream;

use crate::tls::identity::{PeerRole, anchors_from};
use crate::tls::{CertVerdict, Leaf, TestCa, verify_peer};

/// ALPN for XMPP server-to-server (XEP-0368 §3; also sent on STARTTLS as Prosody does).
pub const ALPN_XMPP_SERVER: &[u8] = b"xmpp-server";

#[derive(Debug, thiserror::Error)]
pub enum TlsIoError {
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
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

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Accepts any certificate: the verdict is computed and recorded separately.
#[derive(Debug)]
struct Recorder {
    algs: WebPkiSupportedAlgorithms,
}

/// Handshake signatures are still checked (the peer must hold the key of the certificate
/// it presents); only the certificate's standing is left to the recorded verdict.
macro_rules! signature_checks {
    () => {
        fn verify_tls12_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(m, c, d, &self.algs)
        }
        fn verify_tls13_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(m, c, d, &self.algs)
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.algs.supported_schemes()
        }
    };
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        _ee: &CertificateDer<'_>,
        _im: &[CertificateDer<'_>],
        _name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    signature_checks!();
}

impl ClientCertVerifier for Recorder {
    fn offer_client_auth(&self) -> bool {
        true
    }
    fn client_auth_mandatory(&self) -> bool {
        false
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }
    fn verify_client_cert(
        &self,
        _ee: &CertificateDer<'_>,
        _im: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }
    signature_checks!();
}

fn recorder() -> Arc<Recorder> {
    Arc::new(Recorder {
        algs: provider().signature_verification_algorithms,
    })
}

/// TLS 1.2 and 1.3 only (RFC 7590 §3.1.1 forbids older).
const VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

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
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)?
        .dangerous()
        .with_custom_certificate_verifier(recorder());
    let mut cfg = match leaf {
        Some(l) => builder.with_client_auth_cert(l.cert_chain(), l.private_key())?,
        None => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![ALPN_XMPP_SERVER.to_vec()];
    let name = ServerName::try_from(server_domain.to_string())
        .map_err(|_| TlsIoError::ServerName(server_domain.to_string()))?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
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
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)?
        .with_client_cert_verifier(recorder())
        .with_single_cert(leaf.cert_chain(), leaf.private_key())?;
    cfg.alpn_protocols = vec![ALPN_XMPP_SERVER.to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
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
