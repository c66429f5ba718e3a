//! A test PKI generated at run time (issue 4 fixtures): one CA per test run and leaf
//! certificates for the identity cases RFC 6120 §13.7 and RFC 6125 care about.
//!
//! Everything is made fresh relative to "now", in memory, so no committed certificate can
//! expire and break the suite later. [`TestCa::write_to`] and [`Leaf::write_to`] put PEM
//! files in a directory for external peers (Prosody reads `certificates/<domain>.crt`).
//!
//! ```
//! use fedcheck::tls::pki::TestCa;
//! let ca = TestCa::new("fedcheck test CA").unwrap();
//! let leaf = ca.valid("xmpp.test").unwrap();
//! assert!(leaf.chain_pem.starts_with("-----BEGIN CERTIFICATE-----"));
//! ```
//!
//! Keys are ECDSA P-256 (rcgen's default): fast to generate, accepted by rustls and OpenSSL.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::der::{self, tag};
use super::identity::oid;

/// Errors of the generator.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Extended key usages of a leaf (RFC 5280 §4.2.1.12). XMPP servers use one certificate for
/// both directions, so S2S certificates need both (interop notes: Prosody requires
/// clientAuth on the initiating side; XEP-0178 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Eku {
    #[default]
    ServerAndClient,
    ServerOnly,
    ClientOnly,
    /// No EKU extension at all (RFC 5280: then any usage is allowed).
    Absent,
}

/// What to put in a leaf certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafSpec {
    /// Subject CN; `None` for an empty subject.
    pub common_name: Option<String>,
    /// SAN dNSName entries (DNS-ID, RFC 6125 §6.4).
    pub dns_names: Vec<String>,
    /// SAN SRV-ID entries for `_xmpp-server.<domain>` (RFC 6120 §13.7.1.2.1, RFC 4985): give
    /// the domain only, the `_xmpp-server.` prefix is added.
    pub srv_ids: Vec<String>,
    /// SAN id-on-xmppAddr entries (RFC 6120 §13.7.1.4).
    pub xmpp_addrs: Vec<String>,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    pub eku: Eku,
}

impl LeafSpec {
    /// A certificate valid now (from an hour ago for 30 days), for `domain` as CN and DNS-ID,
    /// with serverAuth and clientAuth.
    pub fn for_domain(domain: &str) -> Self {
        let now = SystemTime::now();
        LeafSpec {
            common_name: Some(domain.to_owned()),
            dns_names: vec![domain.to_owned()],
            srv_ids: Vec::new(),
            xmpp_addrs: Vec::new(),
            not_before: now - HOUR,
            not_after: now + 30 * DAY,
            eku: Eku::ServerAndClient,
        }
    }

    /// The same identity but no SAN dNSName: only SRV-IDs for `domain`.
    pub fn srv_only(domain: &str) -> Self {
        LeafSpec {
            dns_names: Vec::new(),
            srv_ids: vec![domain.to_owned()],
            ..Self::for_domain(domain)
        }
    }
}

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

/// An issued leaf: DER for rustls, PEM for files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaf {
    pub cert_der: Vec<u8>,
    /// PKCS#8.
    pub key_der: Vec<u8>,
    pub cert_pem: String,
    /// PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
    pub key_pem: String,
    /// The leaf then its issuing CA, PEM: what a server presents.
    pub chain_pem: String,
    /// The issuing CA's certificate (DER).
    pub ca_der: Vec<u8>,
}

impl Leaf {
    /// The chain a TLS endpoint presents (leaf, then CA).
    pub fn cert_chain(&self) -> Vec<CertificateDer<'static>> {
        vec![
            CertificateDer::from(self.cert_der.clone()),
            CertificateDer::from(self.ca_der.clone()),
        ]
    }

    pub fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }

    /// Write `<stem>.crt` (the chain) and `<stem>.key` into `dir` (created if missing);
    /// returns both paths. Prosody looks for `<domain>.crt` / `<domain>.key`.
    pub fn write_to(&self, dir: &Path, stem: &str) -> Result<(PathBuf, PathBuf), PkiError> {
        let crt = dir.join(format!("{stem}.crt"));
        let key = dir.join(format!("{stem}.key"));
        write_file(&crt, &self.chain_pem)?;
        write_file(&key, &self.key_pem)?;
        Ok((crt, key))
    }
}

/// A certificate authority made for one test run.
pub struct TestCa {
    name: String,
    cert_der: Vec<u8>,
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").field("name", &self.name).finish()
    }
}

impl TestCa {
    /// A self-signed CA named `name` (its CN), valid from a day ago for a year.
    pub fn new(name: &str) -> Result<Self, PkiError> {
        let now = SystemTime::now();
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = (now - DAY).into();
        params.not_after = (now + 365 * DAY).into();
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        Ok(TestCa {
            name: name.to_owned(),
            cert_der: cert.der().to_vec(),
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA as a trust anchor input for [`crate::tls::TlsSettings`] or webpki.
    pub fn cert(&self) -> CertificateDer<'static> {
        CertificateDer::from(self.cert_der.clone())
    }

    /// Write `ca.crt` into `dir` (created if missing) and return its path.
    pub fn write_to(&self, dir: &Path) -> Result<PathBuf, PkiError> {
        let p = dir.join("ca.crt");
        write_file(&p, &self.cert_pem)?;
        Ok(p)
    }

    /// Issue a leaf as `spec` says.
    pub fn issue(&self, spec: &LeafSpec) -> Result<Leaf, PkiError> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        if let Some(cn) = &spec.common_name {
            dn.push(DnType::CommonName, cn.as_str());
        }
        params.distinguished_name = dn;
        params.not_before = spec.not_before.into();
        params.not_after = spec.not_after.into();
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = match spec.eku {
            Eku::ServerAndClient => vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            Eku::ServerOnly => vec![ExtendedKeyUsagePurpose::ServerAuth],
            Eku::ClientOnly => vec![ExtendedKeyUsagePurpose::ClientAuth],
            Eku::Absent => Vec::new(),
        };
        params.use_authority_key_identifier_extension = true;
        if let Some(san) = san_extension(spec) {
            params.custom_extensions.push(san);
        }
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        let cert_pem = cert.pem();
        Ok(Leaf {
            cert_der: cert.der().to_vec(),
            key_der: key.serialize_der(),
            chain_pem: format!("{cert_pem}{}", self.cert_pem),
            cert_pem,
            key_pem: key.serialize_pem(),
            ca_der: self.cert_der.clone(),
        })
    }

    /// Valid for `domain` (CN and DNS-ID), serverAuth + clientAuth.
    pub fn valid(&self, domain: &str) -> Result<Leaf, PkiError> {
        self.issue(&LeafSpec::for_domain(domain))
    }

    /// Trusted and current, but for another name (`not-<domain>`), CN included.
    pub fn wrong_name(&self, domain: &str) -> Result<Leaf, PkiError> {
        self.issue(&LeafSpec::for_domain(&format!("not-{domain}")))
    }

    /// SAN for another name but CN = `domain` (RFC 6125 §6.4.4: the CN must then be ignored).
    pub fn cn_only_matches(&self, domain: &str) -> Result<Leaf, PkiError> {
        self.issue(&LeafSpec {
            dns_names: vec![format!("not-{domain}")],
            ..LeafSpec::for_domain(domain)
        })
    }

    /// Expired a day ago.
    pub fn expired(&self, domain: &str) -> Result<Leaf, PkiError> {
        let now = SystemTime::now();
        self.issue(&LeafSpec {
            not_before: now - 30 * DAY,
            not_after: now - DAY,
            ..LeafSpec::for_domain(domain)
        })
    }

    /// Valid only from tomorrow.
    pub fn not_yet_valid(&self, domain: &str) -> Result<Leaf, PkiError> {
        let now = SystemTime::now();
        self.issue(&LeafSpec {
            not_before: now + DAY,
            not_after: now + 30 * DAY,
            ..LeafSpec::for_domain(domain)
        })
    }

    /// serverAuth only: fine for a receiving server, not for an initiating one.
    pub fn no_client_auth(&self, domain: &str) -> Result<Leaf, PkiError> {
        self.issue(&LeafSpec {
            eku: Eku::ServerOnly,
            ..LeafSpec::for_domain(domain)
        })
    }

    /// `*.<parent>` as the only DNS-ID (RFC 6125 §6.4.3).
    pub fn wildcard(&self, parent: &str) -> Result<Leaf, PkiError> {
        self.issue(&LeafSpec::for_domain(&format!("*.{parent}")))
    }

    /// Only an SRV-ID `_xmpp-server.<domain>`, no DNS-ID, no CN (CERT-01).
    pub fn srv_id_only(&self, domain: &str) -> Result<Leaf, PkiError> {
        self.issue(&LeafSpec {
            common_name: None,
            ..LeafSpec::srv_only(domain)
        })
    }

    /// Only an XmppAddr `<domain>`, no DNS-ID, no CN (CERT-01, RFC 6120 §13.7.1.4).
    pub fn xmpp_addr_only(&self, domain: &str) -> Result<Leaf, PkiError> {
        self.issue(&LeafSpec {
            common_name: None,
            dns_names: Vec::new(),
            xmpp_addrs: vec![domain.to_owned()],
            ..LeafSpec::for_domain(domain)
        })
    }
}

/// Valid for `domain` in every other respect, but issued by a fresh CA nobody trusts.
pub fn untrusted(domain: &str) -> Result<Leaf, PkiError> {
    TestCa::new("untrusted test CA")?.valid(domain)
}

/// The subjectAltName extension (RFC 5280 §4.2.1.6) written by hand, because SRV-ID is an
/// IA5String otherName (RFC 4985 §2) and rcgen only writes UTF8String ones.
fn san_extension(spec: &LeafSpec) -> Option<CustomExtension> {
    let mut names = Vec::new();
    for d in &spec.dns_names {
        names.extend(der::tlv(tag::CTX2_PRIMITIVE, d.as_bytes()));
    }
    let other_name = |type_id: &[u64], value: Vec<u8>| {
        let mut body = der::tlv(tag::OID, &der::oid_content(type_id));
        body.extend(der::tlv(tag::CTX0_CONSTRUCTED, &value));
        der::tlv(tag::CTX0_CONSTRUCTED, &body)
    };
    for d in &spec.srv_ids {
        let v = der::tlv(tag::IA5_STRING, format!("_xmpp-server.{d}").as_bytes());
        names.extend(other_name(oid::ON_DNS_SRV, v));
    }
    for a in &spec.xmpp_addrs {
        let v = der::tlv(tag::UTF8_STRING, a.as_bytes());
        names.extend(other_name(oid::ON_XMPP_ADDR, v));
    }
    if names.is_empty() {
        return None;
    }
    Some(CustomExtension::from_oid_content(
        oid::SUBJECT_ALT_NAME,
        der::tlv(tag::SEQUENCE, &names),
    ))
}

fn write_file(path: &Path, text: &str) -> Result<(), PkiError> {
    let wrap = |source| PkiError::Write {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(wrap)?;
    }
    std::fs::write(path, text).map_err(wrap)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::identity::parse_cert;

    /// The harness shares one CA across tasks.
    #[test]
    fn ca_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<TestCa>();
        check::<Leaf>();
    }

    #[test]
    fn ca_and_valid_leaf() {
        let ca = TestCa::new("t CA").unwrap();
        assert!(ca.cert_pem().contains("BEGIN CERTIFICATE"));
        let leaf = ca.valid("xmpp.test").unwrap();
        assert!(leaf.key_pem.contains("BEGIN PRIVATE KEY"));
        assert_eq!(leaf.chain_pem.matches("BEGIN CERTIFICATE").count(), 2);
        let info = parse_cert(&leaf.cert_der).unwrap();
        assert_eq!(info.dns_names, ["xmpp.test"]);
        assert_eq!(info.common_name.as_deref(), Some("xmpp.test"));
        assert!(info.eku_server_auth() && info.eku_client_auth());
        let now = SystemTime::now();
        assert!(info.not_before < now && now < info.not_after);
        assert_eq!(leaf.cert_chain().len(), 2);
    }

    #[test]
    fn other_name_identities_are_written() {
        let ca = TestCa::new("t CA").unwrap();
        let info = parse_cert(&ca.srv_id_only("xmpp.test").unwrap().cert_der).unwrap();
        assert!(info.dns_names.is_empty());
        assert_eq!(info.srv_ids, ["_xmpp-server.xmpp.test"]);
        assert_eq!(info.common_name, None);
        let info = parse_cert(&ca.xmpp_addr_only("xmpp.test").unwrap().cert_der).unwrap();
        assert_eq!(info.xmpp_addrs, ["xmpp.test"]);
    }

    #[test]
    fn presets_differ_where_they_should() {
        let ca = TestCa::new("t CA").unwrap();
        let now = SystemTime::now();
        let exp = parse_cert(&ca.expired("a.test").unwrap().cert_der).unwrap();
        assert!(exp.not_after < now);
        let nyv = parse_cert(&ca.not_yet_valid("a.test").unwrap().cert_der).unwrap();
        assert!(nyv.not_before > now);
        let wn = parse_cert(&ca.wrong_name("a.test").unwrap().cert_der).unwrap();
        assert_eq!(wn.dns_names, ["not-a.test"]);
        let nca = parse_cert(&ca.no_client_auth("a.test").unwrap().cert_der).unwrap();
        assert!(nca.eku_server_auth() && !nca.eku_client_auth());
        let wc = parse_cert(&ca.wildcard("a.test").unwrap().cert_der).unwrap();
        assert_eq!(wc.dns_names, ["*.a.test"]);
        let cn = parse_cert(&ca.cn_only_matches("a.test").unwrap().cert_der).unwrap();
        assert_eq!(cn.common_name.as_deref(), Some("a.test"));
        assert_eq!(cn.dns_names, ["not-a.test"]);
        let un = untrusted("a.test").unwrap();
        assert_ne!(un.ca_der, ca.cert_der());
    }

    #[test]
    fn writes_pem_files() {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new("t CA").unwrap();
        let p = ca.write_to(&dir.path().join("pki")).unwrap();
        assert_eq!(std::fs::read_to_string(p).unwrap(), ca.cert_pem());
        let leaf = ca.valid("xmpp.test").unwrap();
        let (crt, key) = leaf.write_to(&dir.path().join("pki"), "xmpp.test").unwrap();
        assert_eq!(std::fs::read_to_string(crt).unwrap(), leaf.chain_pem);
        assert_eq!(std::fs::read_to_string(key).unwrap(), leaf.key_pem);
    }
}
