//! rustls configurations for S2S (RFC 6120 §5, §13.7; RFC 7590; XEP-0178), shared by the
//! proxy's driver and the harness's TLS actors.
//!
//! - TLS 1.2 and 1.3 only (RFC 7590 §3.1), the `ring` provider, ALPN `xmpp-server`.
//! - Certificates are *not* judged inside the handshake: the verifiers here check only the
//!   handshake signatures (proof of key possession) and accept any chain, so that a peer
//!   with a wrong-name or untrusted certificate still gets an encrypted stream and the
//!   XMPP layer decides (dialback over TLS, D-17; TLS-09). The judgement is
//!   [`crate::tls::verify_peer`], run by the driver right after the handshake and handed
//!   to the session as a [`CertVerdict`].
//! - The server requests a client certificate without requiring one (RFC 6120 §5.4.3.1,
//!   TLS-04: mutual authentication SHOULD be requested).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig,
    SignatureScheme,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, TrustAnchor, UnixTime};

use super::identity::{self, CertVerdict, PeerRole};

/// RFC 7590 §3.1 / XEP-0368 §3: the ALPN protocol id of server-to-server XMPP.
pub const ALPN_XMPP_SERVER: &[u8] = b"xmpp-server";

/// Errors building TLS settings.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    #[error("{}: cannot read: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: not valid PEM ({detail})")]
    Pem { what: &'static str, detail: String },
    #[error("{0}: no certificate found")]
    NoCertificate(&'static str),
    #[error("no usable trust anchor among the CA certificates")]
    NoTrustAnchor,
    #[error("TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
}

/// PEM text for one TLS identity and its trust anchors, as files hold it. The proxy's
/// `[tls]` section loads this from paths; embedders (the harness's bundled target) fill it
/// from [`super::pki`] directly.
#[derive(Clone, PartialEq, Eq)]
pub struct TlsMaterial {
    /// Our certificate chain, leaf first.
    pub cert_chain_pem: String,
    /// Our private key (PKCS#8, PKCS#1 or SEC1).
    pub key_pem: String,
    /// CA certificates whose chains we trust for peers.
    pub trust_pem: String,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMaterial")
            .field(
                "cert_chain_pem",
                &format!("{} bytes", self.cert_chain_pem.len()),
            )
            .field("key_pem", &"<redacted>")
            .field("trust_pem", &format!("{} bytes", self.trust_pem.len()))
            .finish()
    }
}

impl TlsMaterial {
    /// Read the three PEM files.
    pub fn from_files(cert: &Path, key: &Path, ca: &Path) -> Result<Self, TlsConfigError> {
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|source| TlsConfigError::Io {
                path: p.to_owned(),
                source,
            })
        };
        Ok(TlsMaterial {
            cert_chain_pem: read(cert)?,
            key_pem: read(key)?,
            trust_pem: read(ca)?,
        })
    }

    /// A generated leaf and the CA to trust for peers.
    pub fn from_leaf(leaf: &super::pki::Leaf, trust_pem: &str) -> Self {
        TlsMaterial {
            cert_chain_pem: leaf.chain_pem.clone(),
            key_pem: leaf.key_pem.clone(),
            trust_pem: trust_pem.to_owned(),
        }
    }
}

fn pem_certs(
    what: &'static str,
    pem: &str,
) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsConfigError::Pem {
            what,
            detail: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsConfigError::NoCertificate(what));
    }
    Ok(certs)
}

/// The crypto provider all configs use (see Cargo.toml: ring, not aws-lc-rs).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Versions allowed: TLS 1.3 and 1.2 (RFC 7590 §3.1; nothing older).
pub const VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// Accepts any client certificate chain after checking the handshake signature; offers
/// client authentication without requiring it. See the module docs for why.
#[derive(Debug)]
pub struct AnyClientCert {
    algs: WebPkiSupportedAlgorithms,
    hints: Vec<DistinguishedName>,
    offer: bool,
}

impl AnyClientCert {
    /// `hints`: CA names sent in the CertificateRequest (help clients pick a certificate);
    /// `offer = false` sends no CertificateRequest at all.
    pub fn new(hints: Vec<DistinguishedName>, offer: bool) -> Self {
        AnyClientCert {
            algs: provider().signature_verification_algorithms,
            hints,
            offer,
        }
    }
}

impl ClientCertVerifier for AnyClientCert {
    fn offer_client_auth(&self) -> bool {
        self.offer
    }
    fn client_auth_mandatory(&self) -> bool {
        false
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }
    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// Accepts any server certificate chain after checking the handshake signature.
#[derive(Debug)]
pub struct AnyServerCert {
    algs: WebPkiSupportedAlgorithms,
}

impl Default for AnyServerCert {
    fn default() -> Self {
        AnyServerCert {
            algs: provider().signature_verification_algorithms,
        }
    }
}

impl ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// A certificate chain and its key.
pub struct TlsIdentity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsIdentity")
            .field("chain", &self.chain.len())
            .finish_non_exhaustive()
    }
}

impl TlsIdentity {
    pub fn from_pem(chain_pem: &str, key_pem: &str) -> Result<Self, TlsConfigError> {
        let chain = pem_certs("certificate", chain_pem)?;
        let key =
            PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| TlsConfigError::Pem {
                what: "private key",
                detail: e.to_string(),
            })?;
        Ok(TlsIdentity { chain, key })
    }

    pub fn from_leaf(leaf: &super::pki::Leaf) -> Self {
        TlsIdentity {
            chain: leaf.cert_chain(),
            key: leaf.private_key(),
        }
    }

    fn clone_key(&self) -> TlsIdentity {
        TlsIdentity {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

/// A receiving server's config: presents `identity`, ALPN `xmpp-server`, and (when
/// `request_client_cert`) asks for a client certificate with `hints` as CA names.
pub fn server_config(
    identity: TlsIdentity,
    request_client_cert: bool,
    hints: Vec<DistinguishedName>,
) -> Result<Arc<ServerConfig>, TlsConfigError> {
    let mut cfg = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)?
        .with_client_cert_verifier(Arc::new(AnyClientCert::new(hints, request_client_cert)))
        .with_single_cert(identity.chain, identity.key)?;
    cfg.alpn_protocols = vec![ALPN_XMPP_SERVER.to_vec()];
    Ok(Arc::new(cfg))
}

/// An initiating server's config: ALPN `xmpp-server`, our certificate as client
/// certificate when we have one (needed for SASL EXTERNAL, XEP-0178 §3).
pub fn client_config(identity: Option<TlsIdentity>) -> Result<Arc<ClientConfig>, TlsConfigError> {
    let b = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServerCert::default()));
    let mut cfg = match identity {
        Some(id) => b.with_client_auth_cert(id.chain, id.key)?,
        None => b.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![ALPN_XMPP_SERVER.to_vec()];
    Ok(Arc::new(cfg))
}

/// Everything a server needs for TLS on S2S: both configs and the trust anchors its
/// verdicts use.
#[derive(Clone)]
pub struct TlsSettings {
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
    anchors: Arc<Vec<TrustAnchor<'static>>>,
}

impl std::fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSettings")
            .field("anchors", &self.anchors.len())
            .finish_non_exhaustive()
    }
}

impl TlsSettings {
    pub fn new(material: &TlsMaterial) -> Result<Self, TlsConfigError> {
        let id = TlsIdentity::from_pem(&material.cert_chain_pem, &material.key_pem)?;
        let trust = pem_certs("CA certificates", &material.trust_pem)?;
        Self::from_parts(id, &trust)
    }

    pub fn from_parts(
        identity: TlsIdentity,
        trust: &[CertificateDer<'static>],
    ) -> Result<Self, TlsConfigError> {
        let (anchors, _bad) = identity::anchors_from(trust);
        if anchors.is_empty() {
            return Err(TlsConfigError::NoTrustAnchor);
        }
        let mut roots = RootCertStore::empty();
        roots.extend(anchors.iter().cloned());
        let server = server_config(identity.clone_key(), true, roots.subjects())?;
        let client = client_config(Some(identity))?;
        Ok(TlsSettings {
            server,
            client,
            anchors: Arc::new(anchors),
        })
    }

    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.server.clone()
    }

    pub fn client_config(&self) -> Arc<ClientConfig> {
        self.client.clone()
    }

    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.server.clone())
    }

    pub fn connector(&self) -> tokio_rustls::TlsConnector {
        tokio_rustls::TlsConnector::from(self.client.clone())
    }

    pub fn anchors(&self) -> &[TrustAnchor<'static>] {
        &self.anchors
    }

    /// The verdict on a chain a peer in `role` presented (`None` when it sent none).
    pub fn verify(
        &self,
        chain: Option<&[CertificateDer<'_>]>,
        now: SystemTime,
        role: PeerRole,
    ) -> Option<CertVerdict> {
        let chain = chain.filter(|c| !c.is_empty())?;
        Some(identity::verify_peer(chain, &self.anchors, now, role))
    }
}

/// What one handshake negotiated, for logs and transcripts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSessionInfo {
    /// e.g. `TLSv1_3`.
    pub version: Option<String>,
    pub cipher_suite: Option<String>,
    pub alpn: Option<String>,
    /// SNI the client sent (server side only).
    pub sni: Option<String>,
    pub peer_chain: Vec<CertificateDer<'static>>,
}

impl TlsSessionInfo {
    fn from_common(c: &rustls::CommonState, sni: Option<&str>) -> Self {
        TlsSessionInfo {
            version: c.protocol_version().map(|v| format!("{v:?}")),
            cipher_suite: c
                .negotiated_cipher_suite()
                .map(|s| format!("{:?}", s.suite())),
            alpn: c
                .alpn_protocol()
                .map(|a| String::from_utf8_lossy(a).into_owned()),
            sni: sni.map(str::to_owned),
            peer_chain: c.peer_certificates().map(<[_]>::to_vec).unwrap_or_default(),
        }
    }

    /// The peer's end-entity certificate as it describes itself (subject CN, SAN
    /// identities, validity), for transcripts; `None` without a certificate or when it
    /// cannot be parsed.
    pub fn peer_cert(&self) -> Option<identity::CertInfo> {
        identity::parse_cert(self.peer_chain.first()?).ok()
    }

    pub fn from_server(c: &rustls::ServerConnection) -> Self {
        Self::from_common(c, c.server_name())
    }

    pub fn from_client(c: &rustls::ClientConnection) -> Self {
        Self::from_common(c, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::pki::TestCa;

    #[test]
    fn settings_from_generated_material() {
        let ca = TestCa::new("cfg CA").unwrap();
        let leaf = ca.valid("a.test").unwrap();
        let m = TlsMaterial::from_leaf(&leaf, ca.cert_pem());
        let s = TlsSettings::new(&m).unwrap();
        assert_eq!(s.anchors().len(), 1);
        assert_eq!(s.server_config().alpn_protocols, [b"xmpp-server".to_vec()]);
        assert!(s.client_config().client_auth_cert_resolver.has_certs());
        let v = s
            .verify(
                Some(&leaf.cert_chain()),
                SystemTime::now(),
                PeerRole::Initiating,
            )
            .unwrap();
        assert!(v.authenticates("a.test"));
        assert_eq!(
            s.verify(Some(&[]), SystemTime::now(), PeerRole::Initiating),
            None
        );
        assert!(!format!("{m:?}").contains("PRIVATE"));
    }

    #[test]
    fn bad_material_is_reported() {
        let ca = TestCa::new("cfg CA").unwrap();
        let leaf = ca.valid("a.test").unwrap();
        let bad_key = TlsMaterial {
            key_pem: "junk".into(),
            ..TlsMaterial::from_leaf(&leaf, ca.cert_pem())
        };
        assert!(matches!(
            TlsSettings::new(&bad_key),
            Err(TlsConfigError::Pem { .. })
        ));
        let no_ca = TlsMaterial {
            trust_pem: String::new(),
            ..TlsMaterial::from_leaf(&leaf, ca.cert_pem())
        };
        assert!(matches!(
            TlsSettings::new(&no_ca),
            Err(TlsConfigError::NoCertificate(_))
        ));
        let e = TlsMaterial::from_files(Path::new("no-such-dir/c"), Path::new("k"), Path::new("a"));
        assert!(matches!(e, Err(TlsConfigError::Io { .. })));
    }

    /// A real handshake in memory: ALPN, TLS 1.3, client certificate requested and sent,
    /// no SNI needed (STARTTLS: the stream `to` names the domain, CERT-07).
    #[tokio::test]
    async fn handshake_in_memory() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let ca = TestCa::new("cfg CA").unwrap();
        let a = TlsSettings::new(&TlsMaterial::from_leaf(
            &ca.valid("a.test").unwrap(),
            ca.cert_pem(),
        ))
        .unwrap();
        let b = TlsSettings::new(&TlsMaterial::from_leaf(
            &ca.valid("b.test").unwrap(),
            ca.cert_pem(),
        ))
        .unwrap();
        let (c, s) = tokio::io::duplex(64 * 1024);
        let server = tokio::spawn(async move {
            let mut tls = b.acceptor().accept(s).await.unwrap();
            let info = TlsSessionInfo::from_server(tls.get_ref().1);
            let v = b.verify(
                Some(&info.peer_chain),
                SystemTime::now(),
                PeerRole::Initiating,
            );
            let mut buf = [0u8; 4];
            tls.read_exact(&mut buf).await.unwrap();
            (info, v, buf)
        });
        let name = ServerName::try_from("b.test").unwrap();
        let mut tls = a.connector().connect(name, c).await.unwrap();
        tls.write_all(b"ping").await.unwrap();
        tls.flush().await.unwrap();
        let cinfo = TlsSessionInfo::from_client(tls.get_ref().1);
        let (sinfo, verdict, buf) = server.await.unwrap();
        assert_eq!(&buf, b"ping");
        assert_eq!(sinfo.alpn.as_deref(), Some("xmpp-server"));
        assert_eq!(sinfo.version.as_deref(), Some("TLSv1_3"));
        assert_eq!(sinfo.sni.as_deref(), Some("b.test"));
        let peer = sinfo.peer_cert().expect("client certificate");
        assert_eq!(peer.common_name.as_deref(), Some("a.test"));
        assert!(verdict.unwrap().authenticates("a.test"));
        let sv = a.verify(
            Some(&cinfo.peer_chain),
            SystemTime::now(),
            PeerRole::Receiving,
        );
        assert!(sv.unwrap().authenticates("b.test"));
    }
}
