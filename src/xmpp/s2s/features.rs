//! Stream features, STARTTLS and SASL EXTERNAL elements for S2S (RFC 6120 §4.3.2, §5, §6;
//! XEP-0178; XEP-0220 §2.4.2), and the base64 SASL data uses (RFC 6120 §6.4.2, RFC 4648 §4).

use crate::xmpp::element::Element;
use crate::xmpp::ns;

/// XEP-0288 bidirectional S2S feature namespace (tolerated, never used).
pub const BIDI_FEATURE: &str = "urn:xmpp:features:bidi";

/// What we advertise in one `<stream:features/>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Offer {
    /// `Some(required)`: `<starttls/>`, with `<required/>` when mandatory (RFC 6120 §5.3.1).
    pub starttls: Option<bool>,
    /// `<mechanisms><mechanism>EXTERNAL</mechanism></mechanisms>` (RFC 6120 §6.4.1).
    pub external: bool,
    /// `<dialback><errors/></dialback>` (XEP-0220 §2.4.2).
    pub dialback: bool,
}

impl Offer {
    /// Serialise inside a stream whose header bound `stream:` (our headers do).
    pub fn to_xml(&self) -> String {
        if *self == Offer::default() {
            // SASL-07: after SASL success the features are typically empty.
            return "<stream:features/>".to_string();
        }
        let mut s = String::from("<stream:features>");
        match self.starttls {
            Some(true) => s.push_str(
                "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>",
            ),
            Some(false) => s.push_str("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"),
            None => {}
        }
        // RFC 6120 §6.4.1: mechanisms listed in order of preference; EXTERNAL first
        // (XEP-0178 §3). No empty <mechanisms/>: it is omitted when nothing is offered.
        if self.external {
            s.push_str("<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>EXTERNAL</mechanism></mechanisms>");
        }
        if self.dialback {
            s.push_str("<dialback xmlns='urn:xmpp:features:dialback'><errors/></dialback>");
        }
        s.push_str("</stream:features>");
        s
    }
}

/// What a peer advertised (unknown features are ignored: XEP-0288 `<bidi/>`, XEP-0368
/// hints and the like are tolerated, never required).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PeerFeatures {
    /// `Some(required)` when `<starttls/>` was offered.
    pub starttls: Option<bool>,
    /// SASL mechanism names, upper-cased, in the peer's order.
    pub mechanisms: Vec<String>,
    pub dialback: bool,
    pub bidi: bool,
}

impl PeerFeatures {
    pub fn parse(features: &Element) -> Self {
        let starttls = features
            .child(ns::TLS, "starttls")
            .map(|t| t.child(ns::TLS, "required").is_some());
        let mechanisms = features
            .child(ns::SASL, "mechanisms")
            .map(|m| {
                m.elements()
                    .filter(|e| e.is(ns::SASL, "mechanism"))
                    .map(|e| e.text().trim().to_ascii_uppercase())
                    .collect()
            })
            .unwrap_or_default();
        PeerFeatures {
            starttls,
            mechanisms,
            dialback: features.child(ns::DIALBACK_FEATURE, "dialback").is_some(),
            bidi: features.child(BIDI_FEATURE, "bidi").is_some(),
        }
    }

    pub fn offers_external(&self) -> bool {
        self.mechanisms.iter().any(|m| m == "EXTERNAL")
    }
}

/// RFC 6120 §6.5 SASL failure conditions, as one table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SaslCondition {
    Aborted,
    AccountDisabled,
    CredentialsExpired,
    EncryptionRequired,
    IncorrectEncoding,
    InvalidAuthzid,
    InvalidMechanism,
    MalformedRequest,
    MechanismTooWeak,
    NotAuthorized,
    TemporaryAuthFailure,
}

const SASL_CONDITIONS: &[(SaslCondition, &str)] = &[
    (SaslCondition::Aborted, "aborted"),
    (SaslCondition::AccountDisabled, "account-disabled"),
    (SaslCondition::CredentialsExpired, "credentials-expired"),
    (SaslCondition::EncryptionRequired, "encryption-required"),
    (SaslCondition::IncorrectEncoding, "incorrect-encoding"),
    (SaslCondition::InvalidAuthzid, "invalid-authzid"),
    (SaslCondition::InvalidMechanism, "invalid-mechanism"),
    (SaslCondition::MalformedRequest, "malformed-request"),
    (SaslCondition::MechanismTooWeak, "mechanism-too-weak"),
    (SaslCondition::NotAuthorized, "not-authorized"),
    (
        SaslCondition::TemporaryAuthFailure,
        "temporary-auth-failure",
    ),
];

impl SaslCondition {
    pub fn as_str(self) -> &'static str {
        SASL_CONDITIONS
            .iter()
            .find(|(c, _)| *c == self)
            .map_or("not-authorized", |(_, n)| n)
    }

    pub fn from_name(s: &str) -> Option<Self> {
        SASL_CONDITIONS
            .iter()
            .find(|(_, n)| *n == s)
            .map(|(c, _)| *c)
    }

    /// The condition inside a received `<failure/>`.
    pub fn from_failure(failure: &Element) -> Option<Self> {
        failure
            .elements()
            .find(|e| e.ns == ns::SASL)
            .and_then(|e| Self::from_name(&e.name))
    }
}

impl std::fmt::Display for SaslCondition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><cond/></failure>` (RFC 6120 §6.4.5).
pub fn sasl_failure_xml(c: SaslCondition) -> String {
    format!(
        "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><{}/></failure>",
        c.as_str()
    )
}

pub const PROCEED_XML: &str = "<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>";
pub const TLS_FAILURE_XML: &str = "<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>";
pub const STARTTLS_XML: &str = "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>";
pub const SASL_SUCCESS_XML: &str = "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>";

/// `<auth mechanism='EXTERNAL'>` carrying base64(authzid), or `=` for none (RFC 6120
/// §6.4.2; XEP-0178 §3 asks initiators to include the domain, D-06).
pub fn external_auth_xml(authzid: Option<&str>) -> String {
    let data = match authzid {
        Some(a) if !a.is_empty() => base64_encode(a.as_bytes()),
        _ => "=".to_string(),
    };
    format!("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>{data}</auth>")
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (RFC 4648 §4).
pub fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                let idx = ((n >> (18 - 6 * i)) & 0x3f) as usize;
                out.push(char::from(B64.get(idx).copied().unwrap_or(b'A')));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Strict base64 decoding (RFC 6120 §6.4.2: bad data is `<incorrect-encoding/>`): no
/// whitespace, correct padding, length a multiple of 4.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.as_bytes();
    if !s.len().is_multiple_of(4) {
        return None;
    }
    let val = |c: u8| B64.iter().position(|&x| x == c).map(|p| p as u32);
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let chunks = s.len() / 4;
    for (i, q) in s.chunks(4).enumerate() {
        let last = i + 1 == chunks;
        let pad = q.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return None;
        }
        let mut n = 0u32;
        for (j, &c) in q.iter().enumerate() {
            let v = if j >= 4 - pad { 0 } else { val(c)? };
            n = (n << 6) | v;
        }
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(bytes.get(..3 - pad)?);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xmpp::codec::parse_element;
    use crate::xmpp::element::NsContext;
    use rstest::rstest;

    #[rstest]
    #[case("", "")]
    #[case("f", "Zg==")]
    #[case("fo", "Zm8=")]
    #[case("foo", "Zm9v")]
    #[case("xmpp.test", "eG1wcC50ZXN0")]
    fn base64_vectors(#[case] plain: &str, #[case] enc: &str) {
        // RFC 4648 §10 test vectors, and the XEP-0178 style authzid.
        assert_eq!(base64_encode(plain.as_bytes()), enc);
        assert_eq!(base64_decode(enc).as_deref(), Some(plain.as_bytes()));
    }

    #[rstest]
    #[case("Zg=")]
    #[case("Z===")]
    #[case("Zg==Zg==")]
    #[case("Zm9v\n")]
    #[case("Zm9*")]
    fn base64_rejects(#[case] bad: &str) {
        assert_eq!(base64_decode(bad), None);
    }

    #[test]
    fn sasl_conditions_round_trip() {
        for (c, n) in SASL_CONDITIONS {
            assert_eq!(c.as_str(), *n);
            assert_eq!(SaslCondition::from_name(n), Some(*c));
        }
        let f = parse_element(
            &sasl_failure_xml(SaslCondition::InvalidAuthzid),
            &NsContext::new(ns::SERVER),
        )
        .unwrap();
        assert_eq!(
            SaslCondition::from_failure(&f),
            Some(SaslCondition::InvalidAuthzid)
        );
    }

    #[test]
    fn peer_features_parse_and_tolerate_extras() {
        let ctx = NsContext::new(ns::SERVER).with_prefix("stream", ns::STREAM);
        let el = parse_element(
            "<stream:features xmlns:stream='http://etherx.jabber.org/streams'>\
             <starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>\
             <mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>external</mechanism></mechanisms>\
             <bidi xmlns='urn:xmpp:features:bidi'/><sm xmlns='urn:xmpp:sm:3'/></stream:features>",
            &ctx,
        )
        .unwrap();
        let f = PeerFeatures::parse(&el);
        assert_eq!(f.starttls, Some(true));
        assert!(f.offers_external() && f.bidi && !f.dialback);
    }

    #[test]
    fn offer_xml() {
        let o = Offer {
            starttls: Some(true),
            external: false,
            dialback: false,
        };
        assert_eq!(
            o.to_xml(),
            "<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls></stream:features>"
        );
        assert_eq!(Offer::default().to_xml(), "<stream:features/>");
        assert!(external_auth_xml(Some("a.test")).contains(">YS50ZXN0</auth>"));
        assert!(external_auth_xml(None).contains(">=</auth>"));
    }
}
