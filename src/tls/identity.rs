//! Certificate checks for S2S peers, pure and clock-free (the caller passes `now`):
//!
//! - the chain to a configured trust anchor, the validity window and the EKU, with webpki
//!   (RFC 6120 §13.7.2; RFC 5280 §6);
//! - the identities the certificate presents, read from its subjectAltName (RFC 6120
//!   §13.7.1.2.1, §13.7.1.4) and matched against a reference domain under RFC 6125 §6.
//!
//! The result is a [`CertVerdict`]: the sessions offer SASL EXTERNAL only when it
//! [`authenticates`](CertVerdict::authenticates) the stream's `from` (SASL-02, XEP-0178 §3),
//! and fall back to dialback over TLS otherwise when policy allows (D-17).
//!
//! ```text
//! RFC 6120 §13.7.1.2.1 / RFC 6125 §6.4     identifier          matched as
//! SAN dNSName                               DNS-ID              domain, one left-most wildcard label
//! SAN otherName id-on-dnsSRV (RFC 4985)     SRV-ID              "_xmpp-server." + domain, exact
//! SAN otherName id-on-xmppAddr              XmppAddr            domain, exact (§13.7.1.4, backward compat.)
//! subject CN                                CN-ID               like a DNS-ID, only if none of the above
//!                                                               nor any URI-ID is present (RFC 6125 §6.4.4)
//! ```
//! All comparisons are ASCII case-insensitive (RFC 6125 §6.4.1); U-labels are not converted
//! to A-labels here (CERT-05: names on the wire and in test certificates are ASCII).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls_pki_types::{CertificateDer, TrustAnchor, UnixTime};

use super::der::{DerError, Reader, tag};

/// Object identifiers: arcs for writing (test PKI), DER content bytes for reading.
pub mod oid {
    /// id-ce-subjectAltName 2.5.29.17 (RFC 5280 §4.2.1.6).
    pub const SUBJECT_ALT_NAME: &[u64] = &[2, 5, 29, 17];
    /// id-on-dnsSRV 1.3.6.1.5.5.7.8.7 (RFC 4985 §2): SRV-ID.
    pub const ON_DNS_SRV: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 8, 7];
    /// id-on-xmppAddr 1.3.6.1.5.5.7.8.5 (RFC 6120 §13.7.1.4).
    pub const ON_XMPP_ADDR: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 8, 5];

    pub(crate) const SAN_DER: &[u8] = &[0x55, 0x1d, 0x11];
    pub(crate) const EKU_DER: &[u8] = &[0x55, 0x1d, 0x25];
    pub(crate) const CN_DER: &[u8] = &[0x55, 0x04, 0x03];
    pub(crate) const ON_DNS_SRV_DER: &[u8] = &[0x2b, 6, 1, 5, 5, 7, 8, 7];
    pub(crate) const ON_XMPP_ADDR_DER: &[u8] = &[0x2b, 6, 1, 5, 5, 7, 8, 5];
    pub(crate) const KP_SERVER_AUTH_DER: &[u8] = &[0x2b, 6, 1, 5, 5, 7, 3, 1];
    pub(crate) const KP_CLIENT_AUTH_DER: &[u8] = &[0x2b, 6, 1, 5, 5, 7, 3, 2];
    pub(crate) const ANY_EKU_DER: &[u8] = &[0x55, 0x1d, 0x25, 0x00];
}

/// What a certificate says about itself (no trust implied).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// Subject CN, if any (the first one).
    pub common_name: Option<String>,
    pub dns_names: Vec<String>,
    /// SRV-IDs as written, e.g. `_xmpp-server.xmpp.test`.
    pub srv_ids: Vec<String>,
    pub xmpp_addrs: Vec<String>,
    /// URI-IDs: only their presence matters here (RFC 6125 §6.4.4 CN fallback).
    pub uris: Vec<String>,
    /// EKU OIDs (DER content); `None` when the extension is absent (any usage allowed,
    /// RFC 5280 §4.2.1.12).
    pub ekus: Option<Vec<Vec<u8>>>,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

impl CertInfo {
    fn eku_allows(&self, kp: &[u8]) -> bool {
        match &self.ekus {
            None => true,
            Some(list) => list
                .iter()
                .any(|o| o.as_slice() == kp || o.as_slice() == oid::ANY_EKU_DER),
        }
    }
    pub fn eku_server_auth(&self) -> bool {
        self.eku_allows(oid::KP_SERVER_AUTH_DER)
    }
    pub fn eku_client_auth(&self) -> bool {
        self.eku_allows(oid::KP_CLIENT_AUTH_DER)
    }
}

/// Read the fields [`CertInfo`] holds from a DER certificate (RFC 5280 §4.1).
pub fn parse_cert(der: &[u8]) -> Result<CertInfo, DerError> {
    let cert = Reader::new(der).read(tag::SEQUENCE)?;
    let tbs = Reader::new(cert).read(tag::SEQUENCE)?;
    let mut r = Reader::new(tbs);
    r.read_optional(tag::CTX0_CONSTRUCTED)?; // version
    r.read(tag::INTEGER)?; // serialNumber
    r.read(tag::SEQUENCE)?; // signature
    r.read(tag::SEQUENCE)?; // issuer
    let mut validity = Reader::new(r.read(tag::SEQUENCE)?);
    let not_before = read_time(&mut validity)?;
    let not_after = read_time(&mut validity)?;
    let subject = r.read(tag::SEQUENCE)?;
    r.read(tag::SEQUENCE)?; // subjectPublicKeyInfo
    let mut info = CertInfo {
        common_name: subject_cn(subject)?,
        dns_names: Vec::new(),
        srv_ids: Vec::new(),
        xmpp_addrs: Vec::new(),
        uris: Vec::new(),
        ekus: None,
        not_before,
        not_after,
    };
    while !r.is_empty() {
        let (t, content) = r.read_any()?;
        if t != tag::CTX3_CONSTRUCTED {
            continue; // issuerUniqueID / subjectUniqueID
        }
        let mut exts = Reader::new(Reader::new(content).read(tag::SEQUENCE)?);
        while !exts.is_empty() {
            let mut ext = Reader::new(exts.read(tag::SEQUENCE)?);
            let id = ext.read(tag::OID)?;
            ext.read_optional(tag::BOOLEAN)?; // critical
            let value = ext.read(tag::OCTET_STRING)?;
            if id == oid::SAN_DER {
                read_san(value, &mut info)?;
            } else if id == oid::EKU_DER {
                let mut list = Reader::new(Reader::new(value).read(tag::SEQUENCE)?);
                let mut ekus = Vec::new();
                while !list.is_empty() {
                    ekus.push(list.read(tag::OID)?.to_vec());
                }
                info.ekus = Some(ekus);
            }
        }
    }
    Ok(info)
}

fn text(b: &[u8]) -> Option<String> {
    std::str::from_utf8(b).ok().map(str::to_owned)
}

/// GeneralNames (RFC 5280 §4.2.1.6): dNSName `[2]`, URI `[6]`, otherName `[0]`.
fn read_san(value: &[u8], info: &mut CertInfo) -> Result<(), DerError> {
    let mut names = Reader::new(Reader::new(value).read(tag::SEQUENCE)?);
    while !names.is_empty() {
        let (t, c) = names.read_any()?;
        match t {
            tag::CTX2_PRIMITIVE => info.dns_names.extend(text(c)),
            0x86 => info.uris.extend(text(c)),
            tag::CTX0_CONSTRUCTED => {
                let mut on = Reader::new(c);
                let type_id = on.read(tag::OID)?;
                let mut v = Reader::new(on.read(tag::CTX0_CONSTRUCTED)?);
                let (_, s) = v.read_any()?;
                if type_id == oid::ON_DNS_SRV_DER {
                    info.srv_ids.extend(text(s));
                } else if type_id == oid::ON_XMPP_ADDR_DER {
                    info.xmpp_addrs.extend(text(s));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// The first CN in a Name (RFC 5280 §4.1.2.4: SEQUENCE OF SET OF AttributeTypeAndValue).
fn subject_cn(name: &[u8]) -> Result<Option<String>, DerError> {
    let mut rdns = Reader::new(name);
    while !rdns.is_empty() {
        let mut set = Reader::new(rdns.read(tag::SET)?);
        while !set.is_empty() {
            let mut atv = Reader::new(set.read(tag::SEQUENCE)?);
            if atv.read(tag::OID)? == oid::CN_DER {
                let (_, v) = atv.read_any()?;
                return Ok(text(v));
            }
        }
    }
    Ok(None)
}

/// UTCTime `YYMMDDHHMMSSZ` or GeneralizedTime `YYYYMMDDHHMMSSZ` (RFC 5280 §4.1.2.5).
fn read_time(r: &mut Reader<'_>) -> Result<SystemTime, DerError> {
    let (t, c) = r.read_any()?;
    let s = std::str::from_utf8(c).map_err(|_| DerError::Truncated)?;
    let digits = s.strip_suffix('Z').ok_or(DerError::Truncated)?;
    let num = |a: usize, b: usize| -> Result<i64, DerError> {
        digits
            .get(a..b)
            .filter(|x| x.bytes().all(|c| c.is_ascii_digit()))
            .and_then(|x| x.parse().ok())
            .ok_or(DerError::Truncated)
    };
    let (year, off) = match (t, digits.len()) {
        (tag::UTC_TIME, 12) => {
            let yy = num(0, 2)?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, 2)
        }
        (tag::GENERALIZED_TIME, 14) => (num(0, 4)?, 4),
        (found, _) => {
            return Err(DerError::UnexpectedTag {
                wanted: tag::UTC_TIME,
                found,
            });
        }
    };
    let (mo, d) = (num(off, off + 2)?, num(off + 2, off + 4)?);
    let (h, mi, se) = (
        num(off + 4, off + 6)?,
        num(off + 6, off + 8)?,
        num(off + 8, off + 10)?,
    );
    let secs = days_from_civil(year, mo, d) * 86_400 + h * 3600 + mi * 60 + se;
    let t = if secs >= 0 {
        UNIX_EPOCH.checked_add(Duration::from_secs(secs.unsigned_abs()))
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_secs(secs.unsigned_abs()))
    };
    t.ok_or(DerError::Truncated)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Which side of the TLS connection the certificate's owner is, which fixes the EKU it
/// needs (RFC 5280 §4.2.1.12; XEP-0178 §3; interop notes: Prosody checks clientAuth on the
/// initiating server's certificate).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerRole {
    /// The peer opened the connection (TLS client): needs clientAuth.
    Initiating,
    /// The peer accepted our connection (TLS server): needs serverAuth.
    Receiving,
}

/// One thing wrong with a peer certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The peer presented no certificate.
    NoCertificate,
    /// The end-entity certificate could not be parsed.
    Malformed(DerError),
    /// No path to a configured trust anchor (RFC 6120 §13.7.2.1).
    UnknownIssuer,
    Expired,
    NotYetValid,
    /// The EKU does not allow this role.
    MissingEku(PeerRole),
    /// Any other chain failure (signature, constraints…), as webpki reports it.
    Chain(webpki::Error),
    /// Trust anchors could not be used.
    NoTrustAnchors,
}

/// The kind of a presented identifier (RFC 6125 §1.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    DnsId,
    SrvId,
    XmppAddr,
    /// Subject CN, listed only when no DNS-ID, SRV-ID, URI-ID or XmppAddr exists (CERT-02).
    CommonName,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub kind: IdKind,
    pub value: String,
}

/// The outcome of checking one peer certificate chain. Built by [`verify_peer`] (the
/// driver, which knows the clock and the trust anchors), carried into the sans-IO session
/// in [`crate::xmpp::s2s::Input::TlsEstablished`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertVerdict {
    /// The chain leads to a trust anchor, is within its validity window and the EKU fits
    /// the role: `problems` is empty.
    pub trusted: bool,
    /// Identities usable for matching (CN only as the RFC 6125 §6.4.4 last resort).
    pub identities: Vec<Identity>,
    pub problems: Vec<Problem>,
    /// Subject CN, for logs and transcripts.
    pub subject: Option<String>,
}

impl CertVerdict {
    /// The verdict when the peer sent no certificate.
    pub fn none() -> Self {
        CertVerdict {
            trusted: false,
            identities: Vec::new(),
            problems: vec![Problem::NoCertificate],
            subject: None,
        }
    }

    /// Does any presented identity match `domain` (RFC 6125 §6; trust not considered)?
    pub fn matches(&self, domain: &str) -> bool {
        let domain = domain.strip_suffix('.').unwrap_or(domain);
        if domain.is_empty() {
            return false;
        }
        self.identities.iter().any(|id| match id.kind {
            IdKind::DnsId | IdKind::CommonName => dns_id_matches(&id.value, domain),
            IdKind::SrvId => {
                id.value
                    .get(..13)
                    .is_some_and(|p| p.eq_ignore_ascii_case("_xmpp-server."))
                    && id
                        .value
                        .get(13..)
                        .is_some_and(|d| d.eq_ignore_ascii_case(domain))
            }
            IdKind::XmppAddr => id.value.eq_ignore_ascii_case(domain),
        })
    }

    /// Trusted and matching `domain`: what SASL EXTERNAL needs (RFC 6120 §13.7.2, SASL-02).
    pub fn authenticates(&self, domain: &str) -> bool {
        self.trusted && self.matches(domain)
    }
}

/// DNS-ID matching (RFC 6125 §6.4.1, §6.4.3): case-insensitive; a wildcard only as the
/// whole left-most label, matching exactly one label, and never directly under a single
/// label (`*.test` would cover a whole top-level zone).
pub fn dns_id_matches(presented: &str, reference: &str) -> bool {
    let presented = presented.strip_suffix('.').unwrap_or(presented);
    if let Some(parent) = presented.strip_prefix("*.") {
        if !parent.contains('.') || parent.contains('*') {
            return false;
        }
        match reference.split_once('.') {
            Some((first, rest)) => {
                !first.is_empty() && !first.contains('*') && rest.eq_ignore_ascii_case(parent)
            }
            None => false,
        }
    } else {
        !presented.contains('*') && presented.eq_ignore_ascii_case(reference)
    }
}

/// Check `chain` (end entity first) presented by a peer in `role` against `anchors` at
/// `now`. Never fails: everything wrong is a [`Problem`] in the verdict.
pub fn verify_peer(
    chain: &[CertificateDer<'_>],
    anchors: &[TrustAnchor<'_>],
    now: SystemTime,
    role: PeerRole,
) -> CertVerdict {
    let Some((ee, intermediates)) = chain.split_first() else {
        return CertVerdict::none();
    };
    let mut problems = Vec::new();
    let info = match parse_cert(ee) {
        Ok(i) => i,
        Err(e) => {
            return CertVerdict {
                trusted: false,
                identities: Vec::new(),
                problems: vec![Problem::Malformed(e)],
                subject: None,
            };
        }
    };
    // Our own reading first, so that every problem is listed (webpki stops at the first).
    if now > info.not_after {
        problems.push(Problem::Expired);
    }
    if now < info.not_before {
        problems.push(Problem::NotYetValid);
    }
    let eku_ok = match role {
        PeerRole::Initiating => info.eku_client_auth(),
        PeerRole::Receiving => info.eku_server_auth(),
    };
    if !eku_ok {
        problems.push(Problem::MissingEku(role));
    }
    if anchors.is_empty() {
        problems.push(Problem::NoTrustAnchors);
    } else {
        let time = UnixTime::since_unix_epoch(now.duration_since(UNIX_EPOCH).unwrap_or_default());
        let usage = match role {
            PeerRole::Initiating => webpki::KeyUsage::client_auth(),
            PeerRole::Receiving => webpki::KeyUsage::server_auth(),
        };
        let res = webpki::EndEntityCert::try_from(ee).and_then(|cert| {
            cert.verify_for_usage(
                webpki::ALL_VERIFICATION_ALGS,
                anchors,
                intermediates,
                time,
                usage,
                None,
                None,
            )
            .map(|_| ())
        });
        if let Err(e) = res {
            let p = match e {
                webpki::Error::UnknownIssuer => Problem::UnknownIssuer,
                webpki::Error::CertExpired { .. } => Problem::Expired,
                webpki::Error::CertNotValidYet { .. } => Problem::NotYetValid,
                webpki::Error::RequiredEkuNotFoundContext(_) => Problem::MissingEku(role),
                other => Problem::Chain(other),
            };
            if !problems.contains(&p) {
                problems.push(p);
            }
        }
    }
    CertVerdict {
        trusted: problems.is_empty(),
        identities: identities_of(&info),
        problems,
        subject: info.common_name.clone(),
    }
}

/// The identities to match, in RFC 6125 order; the CN only when no SAN identifier exists.
pub fn identities_of(info: &CertInfo) -> Vec<Identity> {
    let id = |kind, v: &String| Identity {
        kind,
        value: v.clone(),
    };
    let mut out: Vec<Identity> = info
        .dns_names
        .iter()
        .map(|v| id(IdKind::DnsId, v))
        .collect();
    out.extend(info.srv_ids.iter().map(|v| id(IdKind::SrvId, v)));
    out.extend(info.xmpp_addrs.iter().map(|v| id(IdKind::XmppAddr, v)));
    if out.is_empty() && info.uris.is_empty() {
        out.extend(info.common_name.iter().map(|v| id(IdKind::CommonName, v)));
    }
    out
}

/// Trust anchors from CA certificates (DER); unusable ones are skipped and counted.
pub fn anchors_from(cas: &[CertificateDer<'_>]) -> (Vec<TrustAnchor<'static>>, usize) {
    let mut bad = 0;
    let mut out = Vec::new();
    for c in cas {
        match webpki::anchor_from_trusted_cert(c) {
            Ok(a) => out.push(a.to_owned()),
            Err(_) => bad += 1,
        }
    }
    (out, bad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::pki::{self, Leaf, TestCa};
    use rstest::rstest;
    use std::sync::OnceLock;

    fn ca() -> &'static TestCa {
        static CA: OnceLock<TestCa> = OnceLock::new();
        CA.get_or_init(|| TestCa::new("identity tests CA").unwrap())
    }

    fn verdict(leaf: &Leaf, role: PeerRole) -> CertVerdict {
        let (anchors, bad) = anchors_from(&[ca().cert()]);
        assert_eq!(bad, 0);
        verify_peer(&leaf.cert_chain(), &anchors, SystemTime::now(), role)
    }

    #[rstest]
    #[case("xmpp.test", "xmpp.test", true)]
    #[case("XMPP.Test", "xmpp.test", true)]
    #[case("xmpp.test.", "xmpp.test", true)]
    #[case("*.xmpp.test", "conf.xmpp.test", true)]
    #[case("*.xmpp.test", "xmpp.test", false)]
    #[case("*.xmpp.test", "a.b.xmpp.test", false)]
    #[case("*.test", "xmpp.test", false)]
    #[case("f*.xmpp.test", "foo.xmpp.test", false)]
    #[case("a.*.test", "a.b.test", false)]
    #[case("other.test", "xmpp.test", false)]
    fn dns_ids(#[case] presented: &str, #[case] reference: &str, #[case] want: bool) {
        assert_eq!(dns_id_matches(presented, reference), want);
    }

    /// The preset table: trust, match for `a.test`, and the problems, per role.
    #[rstest]
    #[case::valid("valid", PeerRole::Initiating, true, true, vec![])]
    #[case::valid_receiving("valid", PeerRole::Receiving, true, true, vec![])]
    #[case::wrong_name("wrong_name", PeerRole::Initiating, true, false, vec![])]
    #[case::cn_only("cn_only", PeerRole::Initiating, true, false, vec![])]
    #[case::expired("expired", PeerRole::Initiating, false, true, vec![Problem::Expired])]
    #[case::not_yet("not_yet_valid", PeerRole::Initiating, false, true, vec![Problem::NotYetValid])]
    #[case::untrusted("untrusted", PeerRole::Initiating, false, true, vec![Problem::UnknownIssuer])]
    #[case::no_client("no_client_auth", PeerRole::Initiating, false, true,
        vec![Problem::MissingEku(PeerRole::Initiating)])]
    #[case::no_client_as_server("no_client_auth", PeerRole::Receiving, true, true, vec![])]
    #[case::srv_id("srv_id_only", PeerRole::Initiating, true, true, vec![])]
    #[case::xmpp_addr("xmpp_addr_only", PeerRole::Initiating, true, true, vec![])]
    fn presets(
        #[case] preset: &str,
        #[case] role: PeerRole,
        #[case] trusted: bool,
        #[case] matches: bool,
        #[case] problems: Vec<Problem>,
    ) {
        let d = "a.test";
        let leaf = match preset {
            "valid" => ca().valid(d),
            "wrong_name" => ca().wrong_name(d),
            "cn_only" => ca().cn_only_matches(d),
            "expired" => ca().expired(d),
            "not_yet_valid" => ca().not_yet_valid(d),
            "untrusted" => pki::untrusted(d),
            "no_client_auth" => ca().no_client_auth(d),
            "srv_id_only" => ca().srv_id_only(d),
            "xmpp_addr_only" => ca().xmpp_addr_only(d),
            other => panic!("unknown preset {other}"),
        }
        .unwrap();
        let v = verdict(&leaf, role);
        assert_eq!(v.problems, problems, "{preset}");
        assert_eq!(v.trusted, trusted, "{preset}");
        assert_eq!(v.matches(d), matches, "{preset}");
        assert_eq!(v.authenticates(d), trusted && matches, "{preset}");
        assert!(!v.matches("other.test"));
    }

    #[test]
    fn wildcard_preset() {
        let v = verdict(&ca().wildcard("a.test").unwrap(), PeerRole::Initiating);
        assert!(v.trusted);
        assert!(v.matches("conf.a.test"));
        assert!(!v.matches("a.test"));
        assert!(!v.matches("x.conf.a.test"));
    }

    #[test]
    fn cn_is_a_last_resort_only() {
        let v = verdict(
            &ca().cn_only_matches("a.test").unwrap(),
            PeerRole::Receiving,
        );
        assert_eq!(v.subject.as_deref(), Some("a.test"));
        assert!(v.identities.iter().all(|i| i.kind != IdKind::CommonName));
        let info = CertInfo {
            common_name: Some("a.test".into()),
            dns_names: vec![],
            srv_ids: vec![],
            xmpp_addrs: vec![],
            uris: vec![],
            ekus: None,
            not_before: UNIX_EPOCH,
            not_after: UNIX_EPOCH,
        };
        assert_eq!(identities_of(&info)[0].kind, IdKind::CommonName);
        let with_uri = CertInfo {
            uris: vec!["xmpp:a.test".into()],
            ..info
        };
        assert!(identities_of(&with_uri).is_empty());
    }

    #[test]
    fn no_chain_no_anchors_and_garbage() {
        let (anchors, _) = anchors_from(&[ca().cert()]);
        let v = verify_peer(&[], &anchors, SystemTime::now(), PeerRole::Initiating);
        assert_eq!(v, CertVerdict::none());
        let leaf = ca().valid("a.test").unwrap();
        let v = verify_peer(
            &leaf.cert_chain(),
            &[],
            SystemTime::now(),
            PeerRole::Initiating,
        );
        assert_eq!(v.problems, [Problem::NoTrustAnchors]);
        assert!(v.matches("a.test") && !v.authenticates("a.test"));
        // Every truncation of a real certificate is handled without panicking.
        for cut in 0..leaf.cert_der.len() {
            let der = CertificateDer::from(&leaf.cert_der[..cut]);
            let v = verify_peer(&[der], &anchors, SystemTime::now(), PeerRole::Initiating);
            assert!(!v.trusted);
        }
        let (a, bad) = anchors_from(&[CertificateDer::from(&b"junk"[..])]);
        assert!(a.is_empty() && bad == 1);
    }

    #[test]
    fn verdict_uses_the_time_given() {
        let (anchors, _) = anchors_from(&[ca().cert()]);
        let leaf = ca().valid("a.test").unwrap();
        let later = SystemTime::now() + Duration::from_secs(40 * 86_400);
        let v = verify_peer(&leaf.cert_chain(), &anchors, later, PeerRole::Initiating);
        assert_eq!(v.problems, [Problem::Expired]);
    }

    #[rstest]
    #[case(1970, 1, 1, 0)]
    #[case(2000, 3, 1, 11_017)]
    #[case(2026, 12, 1, 20_788)]
    fn civil_days(#[case] y: i64, #[case] m: i64, #[case] d: i64, #[case] want: i64) {
        assert_eq!(days_from_civil(y, m, d), want);
    }
}
