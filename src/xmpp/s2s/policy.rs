//! Per-partner negotiation policy, modelled on Lync/Skype for Business XMPP partner settings
//! (MS-06..MS-09, MS-12): TlsNegotiation, SaslNegotiation, SupportDialbackNegotiation and
//! EnableKeepAlive.
//!
//! The sessions never read the table below; they ask three predicates
//! ([`PartnerPolicy::may_tcp_dialback`], [`PartnerPolicy::may_tls_dialback`],
//! [`PartnerPolicy::may_sasl`]). A unit test proves the predicates give exactly the table,
//! which is the MS-09 negotiation matrix written as data.

use std::collections::BTreeMap;

/// Required / Optional / NotSupported, as Lync spells its negotiation settings
/// (configuration files say `required`, `optional`, `not_supported`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Negotiation {
    Required,
    Optional,
    NotSupported,
}

impl Negotiation {
    /// The config spelling (`"required"`, `"optional"`, `"not_supported"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Negotiation::Required => "required",
            Negotiation::Optional => "optional",
            Negotiation::NotSupported => "not_supported",
        }
    }
}

/// A way a partner's stream gets authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// SASL EXTERNAL over TLS (RFC 6120 §6, XEP-0178).
    SaslOverTls,
    /// Server Dialback inside TLS (XEP-0220 over RFC 6120 §5).
    TlsDialback,
    /// Server Dialback on plain TCP.
    TcpDialback,
}

/// A configuration rule a partner policy breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PolicyRule {
    /// MS-07, SASL-01: SASL needs TLS.
    #[error("SASL is enabled but TLS is not_supported (SASL EXTERNAL needs TLS)")]
    SaslWithoutTls,
    /// MS-08, MS-09: at least one authentication method must remain.
    #[error("no usable authentication method (enable dialback, or SASL with TLS)")]
    NoUsableMethod,
}

/// What we do with one partner domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PartnerPolicy {
    pub tls: Negotiation,
    pub sasl: Negotiation,
    /// SupportDialbackNegotiation.
    pub dialback: bool,
    /// EnableKeepAlive: the partner is expected to send keepalives; a stream silent for
    /// [`super::Timeouts::keepalive_expect`] is closed with `connection-timeout` (MS-10).
    pub keepalive: bool,
}

impl Default for PartnerPolicy {
    /// TLS and SASL when both sides can, dialback otherwise: what works with every peer.
    fn default() -> Self {
        PartnerPolicy {
            tls: Negotiation::Optional,
            sasl: Negotiation::Optional,
            dialback: true,
            keepalive: false,
        }
    }
}

impl PartnerPolicy {
    /// The MS-12 "Google Talk" profile: plain TCP, dialback only, no keepalives expected.
    pub const DIALBACK_ONLY: PartnerPolicy = PartnerPolicy {
        tls: Negotiation::NotSupported,
        sasl: Negotiation::NotSupported,
        dialback: true,
        keepalive: false,
    };

    /// Lync's defaults (MS-06..MS-08): TLS required, SASL required, dialback allowed.
    pub const LYNC_DEFAULT: PartnerPolicy = PartnerPolicy {
        tls: Negotiation::Required,
        sasl: Negotiation::Required,
        dialback: true,
        keepalive: true,
    };

    /// Dialback on an unencrypted stream is acceptable (DB-14: not when TLS is required).
    pub fn may_tcp_dialback(&self) -> bool {
        self.dialback && self.tls != Negotiation::Required && self.sasl != Negotiation::Required
    }

    /// Dialback inside TLS is acceptable (MS-08: not when SASL is required).
    pub fn may_tls_dialback(&self) -> bool {
        self.dialback && self.tls != Negotiation::NotSupported && self.sasl != Negotiation::Required
    }

    /// Dialback is acceptable on a stream that is (`encrypted`) or is not under TLS.
    pub fn may_dialback(&self, encrypted: bool) -> bool {
        if encrypted {
            self.may_tls_dialback()
        } else {
            self.may_tcp_dialback()
        }
    }

    /// SASL EXTERNAL may be used (it always runs over TLS).
    pub fn may_sasl(&self) -> bool {
        self.sasl != Negotiation::NotSupported && self.tls != Negotiation::NotSupported
    }

    /// TLS may be negotiated with this partner.
    pub fn may_tls(&self) -> bool {
        self.tls != Negotiation::NotSupported
    }

    /// The methods this policy allows, in order of preference.
    pub fn methods(&self) -> Vec<Method> {
        let mut m = Vec::new();
        if self.may_sasl() {
            m.push(Method::SaslOverTls);
        }
        if self.may_tls_dialback() {
            m.push(Method::TlsDialback);
        }
        if self.may_tcp_dialback() {
            m.push(Method::TcpDialback);
        }
        m
    }

    /// Reject the combinations Lync rejects (MS-07, MS-08, MS-09).
    pub fn check(&self) -> Result<(), PolicyRule> {
        if self.sasl != Negotiation::NotSupported && self.tls == Negotiation::NotSupported {
            return Err(PolicyRule::SaslWithoutTls);
        }
        if self.methods().is_empty() {
            return Err(PolicyRule::NoUsableMethod);
        }
        Ok(())
    }
}

use Method::{SaslOverTls as S, TcpDialback as Tcp, TlsDialback as Tls};
use Negotiation::{NotSupported as NS, Optional as O, Required as R};

/// One row of [`MS09_MATRIX`]: TLS, SASL, dialback → methods or the rule broken.
pub type MatrixRow = (
    Negotiation,
    Negotiation,
    bool,
    Result<&'static [Method], PolicyRule>,
);

/// The MS-09 negotiation matrix: (TLS, SASL, dialback) → methods that may authenticate a
/// stream, best first, or the rule that makes the combination invalid.
///
/// ```text
/// TLS      SASL     DB    methods
/// Req      Req      on    SASL over TLS                 (dialback does not run, MS-08)
/// Req      Opt      on    SASL over TLS, else TLS dialback
/// Opt      Opt      on    SASL over TLS, TLS dialback or TCP dialback, depending on the peer
/// Opt      NotSup   on    TLS or TCP dialback
/// NotSup   NotSup   on    TCP dialback only            (the Google Talk profile, MS-12)
/// any case with no usable method, or SASL with TLS NotSup: invalid
/// ```
pub const MS09_MATRIX: &[MatrixRow] = &[
    (R, R, true, Ok(&[S])),
    (R, R, false, Ok(&[S])),
    (R, O, true, Ok(&[S, Tls])),
    (R, O, false, Ok(&[S])),
    (R, NS, true, Ok(&[Tls])),
    (R, NS, false, Err(PolicyRule::NoUsableMethod)),
    (O, R, true, Ok(&[S])),
    (O, R, false, Ok(&[S])),
    (O, O, true, Ok(&[S, Tls, Tcp])),
    (O, O, false, Ok(&[S])),
    (O, NS, true, Ok(&[Tls, Tcp])),
    (O, NS, false, Err(PolicyRule::NoUsableMethod)),
    (NS, R, true, Err(PolicyRule::SaslWithoutTls)),
    (NS, R, false, Err(PolicyRule::SaslWithoutTls)),
    (NS, O, true, Err(PolicyRule::SaslWithoutTls)),
    (NS, O, false, Err(PolicyRule::SaslWithoutTls)),
    (NS, NS, true, Ok(&[Tcp])),
    (NS, NS, false, Err(PolicyRule::NoUsableMethod)),
];

/// The policy for each partner domain, with a default for the rest.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Policies {
    pub default: PartnerPolicy,
    /// Keys are lowercase domains.
    pub partners: BTreeMap<String, PartnerPolicy>,
}

impl Policies {
    /// Every partner gets `p`.
    pub fn uniform(p: PartnerPolicy) -> Self {
        Policies {
            default: p,
            partners: BTreeMap::new(),
        }
    }

    /// The policy for `domain` (case-insensitive), or the default one.
    pub fn for_domain(&self, domain: &str) -> &PartnerPolicy {
        // Asked on every read of a stream: no hashing when there are no partner rules, and
        // a lowercased copy only for a name that has capitals (DESIGN §6).
        if self.partners.is_empty() {
            return &self.default;
        }
        self.partners
            .get(domain)
            .or_else(|| {
                domain
                    .bytes()
                    .any(|b| b.is_ascii_uppercase())
                    .then(|| self.partners.get(&domain.to_ascii_lowercase()))
                    .flatten()
            })
            .unwrap_or(&self.default)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predicates_agree_with_the_ms09_table() {
        assert_eq!(MS09_MATRIX.len(), 18, "3 × 3 × 2 combinations");
        for &(tls, sasl, dialback, want) in MS09_MATRIX {
            let p = PartnerPolicy {
                tls,
                sasl,
                dialback,
                keepalive: false,
            };
            match want {
                Ok(methods) => {
                    assert_eq!(p.check(), Ok(()), "{p:?}");
                    assert_eq!(p.methods(), methods, "{p:?}");
                }
                Err(rule) => assert_eq!(p.check(), Err(rule), "{p:?}"),
            }
        }
    }

    #[test]
    fn presets_are_valid() {
        assert_eq!(PartnerPolicy::DIALBACK_ONLY.check(), Ok(()));
        assert_eq!(PartnerPolicy::LYNC_DEFAULT.check(), Ok(()));
        assert_eq!(PartnerPolicy::default().check(), Ok(()));
        assert_eq!(
            PartnerPolicy::DIALBACK_ONLY.methods(),
            [Method::TcpDialback]
        );
    }

    #[test]
    fn lookup_is_case_insensitive_with_default() {
        let mut p = Policies::uniform(PartnerPolicy::DIALBACK_ONLY);
        p.partners
            .insert("b.test".into(), PartnerPolicy::LYNC_DEFAULT);
        assert_eq!(p.for_domain("B.Test"), &PartnerPolicy::LYNC_DEFAULT);
        assert_eq!(p.for_domain("c.test"), &PartnerPolicy::DIALBACK_ONLY);
    }
}
