//! Error mapping between XMPP stanza errors and SIP response codes (RFC 7247 §7).
//!
//! Both tables are written once, as data ([`XMPP_TO_SIP`], [`SIP_TO_XMPP`]), next to the
//! RFC text they encode. RFC 7247 §7 itself calls this mapping "more art than science"
//! (D-04), so where the RFC offers a choice the choice made here is documented per row.

use crate::xmpp::conditions::{StanzaCondition, StanzaError};
use crate::xmpp::element::{Element, Node};
use crate::xmpp::ns;

/// How one XMPP condition becomes a SIP code (RFC 7247 §7.1, Table 2 and its notes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SipCodeRule {
    /// A single code.
    Code(u16),
    /// Notes 1–2: the 4xx code when the error concerns a full JID (one endpoint), the
    /// 6xx/5xx code when it concerns a bare JID (the user everywhere).
    ByAddress {
        /// Code for an error about a full JID (4xx).
        full_jid: u16,
        /// Code for an error about a bare JID (6xx, or 501).
        bare_jid: u16,
    },
    /// Note 3: 301 when `<gone/>` carries a new address, 410 when it does not.
    ByGoneTarget {
        /// Code when a new address is known (301).
        with_target: u16,
        /// Code without one (410).
        without_target: u16,
    },
    /// Note 4: 404 when the domain does not exist, 408 when it could not be reached.
    ByReachability {
        /// Code when the domain does not exist (404).
        no_such_domain: u16,
        /// Code when it cannot be reached (408).
        unreachable: u16,
    },
    /// The RFC offers alternatives; `chosen` is what this implementation sends.
    Choice {
        /// The code sent.
        chosen: u16,
        /// Every code the RFC allows.
        alternatives: &'static [u16],
    },
    /// Table 2's code cannot be sent as RFC 3261 requires it, so another is (documented
    /// at the row). Table 2 is a SHOULD ("the mapping ... SHOULD be as described"), the
    /// base protocol's rule a MUST.
    Deviation {
        /// What Table 2 lists.
        table: u16,
        /// What this implementation sends instead.
        sent: u16,
    },
}

/// RFC 7247 §7.1, Table 2 ("Mapping of XMPP Error Conditions to SIP Response Codes"),
/// as paraphrased by the requirement catalogue (ERR-01..ERR-04):
///
/// ```text
/// +----------------------------+---------------------+
/// | XMPP Error Condition       | SIP Response Code   |
/// +----------------------------+---------------------+
/// | <bad-request/>             | 400                 |
/// | <conflict/>                | 400                 |
/// | <feature-not-implemented/> | 405 or 501 (1)      |
/// | <forbidden/>               | 403 or 603 (2)      |
/// | <gone/>                    | 301 or 410 (3)      |
/// | <internal-server-error/>   | 500                 |
/// | <item-not-found/>          | 404 or 604 (2)      |
/// | <jid-malformed/>           | 400                 |
/// | <not-acceptable/>          | 406 or 606 (2)      |
/// | <not-allowed/>             | 403                 |
/// | <not-authorized/>          | 401                 |
/// | <policy-violation/>        | 403                 |
/// | <recipient-unavailable/>   | 480 or 600 (2)      |
/// | <redirect/>                | 302                 |
/// | <registration-required/>   | 407                 |
/// | <remote-server-not-found/> | 404 or 408 (4)      |
/// | <remote-server-timeout/>   | 408                 |
/// | <resource-constraint/>     | 500                 |
/// | <service-unavailable/>     | see note (5)        |
/// | <subscription-required/>   | 400                 |
/// | <undefined-condition/>     | 400                 |
/// | <unexpected-request/>      | 491 or 400          |
/// +----------------------------+---------------------+
/// (1) 405 if the error concerns a full JID, 501 if a bare JID.
/// (2) the 4xx code for a full JID, the 6xx code for a bare JID.
/// (3) 301 if <gone/> includes a new address, else 410.
/// (4) 404 if the domain does not exist, 408 if it cannot be resolved or reached.
/// (5) no direct mapping; not 503 (the SIP side would treat the whole server as
///     down); 403 or 405 is closest.
/// ```
///
/// Choices: `service-unavailable` → **403**, because 405 obliges an `Allow` header
/// (RFC 3261 §21.4.6) that a translator cannot fill truthfully. `unexpected-request`
/// → **491**, which keeps the two tables symmetric (Table 3 maps 491 back).
///
/// Deviation: `not-authorized` → **403**, not Table 2's 401. A 401 is a challenge: RFC
/// 3261 §21.4.2 says "the response MUST include a WWW-Authenticate header field
/// containing a challenge applicable to the requested resource" (also §20.44, §22.1),
/// and a client answers it by retrying with credentials (§22.2). A gateway has no
/// challenge to give — the XMPP side refused the *sender*, at a server whose
/// credentials the SIP user does not have and the gateway could not check — so a
/// made-up challenge would only make the client retry in vain, and a 401 without one
/// breaks a MUST. 403 (§21.4.4: "Authorization will not help, and the request SHOULD
/// NOT be repeated") is what the SIP client can act on. The XMPP `<text/>`, if any,
/// still travels as a Warning (ERR-08). Table 3 keeps 401 → `not-authorized`.
///
/// `<gone/>` and `<redirect/>` carry the new address as an XMPP URI (RFC 6120
/// §8.3.3.5, §8.3.3.14); [`redirect_contact`] turns it into the Contact a 301/302 needs
/// (RFC 3261 §21.3.2, §21.3.3). A `<gone/>` whose address cannot be mapped counts as one
/// without an address (410): a 301 with no Contact tells the client nothing.
pub const XMPP_TO_SIP: &[(StanzaCondition, SipCodeRule)] = {
    use SipCodeRule::*;
    use StanzaCondition as C;
    &[
        (C::BadRequest, Code(400)),
        (C::Conflict, Code(400)),
        (
            C::FeatureNotImplemented,
            ByAddress {
                full_jid: 405,
                bare_jid: 501,
            },
        ),
        (
            C::Forbidden,
            ByAddress {
                full_jid: 403,
                bare_jid: 603,
            },
        ),
        (
            C::Gone,
            ByGoneTarget {
                with_target: 301,
                without_target: 410,
            },
        ),
        (C::InternalServerError, Code(500)),
        (
            C::ItemNotFound,
            ByAddress {
                full_jid: 404,
                bare_jid: 604,
            },
        ),
        (C::JidMalformed, Code(400)),
        (
            C::NotAcceptable,
            ByAddress {
                full_jid: 406,
                bare_jid: 606,
            },
        ),
        (C::NotAllowed, Code(403)),
        (
            C::NotAuthorized,
            Deviation {
                table: 401,
                sent: 403,
            },
        ),
        (C::PolicyViolation, Code(403)),
        (
            C::RecipientUnavailable,
            ByAddress {
                full_jid: 480,
                bare_jid: 600,
            },
        ),
        (C::Redirect, Code(302)),
        (C::RegistrationRequired, Code(407)),
        (
            C::RemoteServerNotFound,
            ByReachability {
                no_such_domain: 404,
                unreachable: 408,
            },
        ),
        (C::RemoteServerTimeout, Code(408)),
        (C::ResourceConstraint, Code(500)),
        (
            C::ServiceUnavailable,
            Choice {
                chosen: 403,
                alternatives: &[403, 405],
            },
        ),
        (C::SubscriptionRequired, Code(400)),
        (C::UndefinedCondition, Code(400)),
        (
            C::UnexpectedRequest,
            Choice {
                chosen: 491,
                alternatives: &[491, 400],
            },
        ),
    ]
};

/// RFC 7247 §7.2, Table 3 ("Mapping of SIP Response Codes to XMPP Error Conditions"),
/// as paraphrased by the requirement catalogue (ERR-05..ERR-07):
///
/// ```text
/// 3xx (300, 302, 305)          <redirect/>
/// 301                          <gone/> carrying the new address (note 1)
/// 380                          <not-acceptable/>
/// 400, 402, 493                <bad-request/>
/// 401                          <not-authorized/>
/// 403                          <forbidden/>
/// 404, 481, 484, 485, 604      <item-not-found/>
/// 405, 420, 439, 501           <feature-not-implemented/>
/// 406, 415, 416, 421, 482,
///   483, 488, 505, 606         <not-acceptable/>
/// 407                          <registration-required/>
/// 408, 504                     <remote-server-timeout/>
/// 410                          <gone/> without character data (note 1)
/// 413, 414, 440, 489, 513      <policy-violation/>
/// 423                          <resource-constraint/>
/// 430, 480, 486, 487, 600, 603 <recipient-unavailable/>
/// 491                          <unexpected-request/>
/// 500, 503                     <internal-server-error/>
/// 502                          <remote-server-not-found/>
/// other 3xx / 4xx / 5xx / 6xx  redirect / bad-request / internal-server-error /
///                              recipient-unavailable (class fallback, ERR-06)
/// ```
pub const SIP_TO_XMPP: &[(u16, StanzaCondition)] = {
    use StanzaCondition as C;
    &[
        (300, C::Redirect),
        (301, C::Gone),
        (302, C::Redirect),
        (305, C::Redirect),
        (380, C::NotAcceptable),
        (400, C::BadRequest),
        (401, C::NotAuthorized),
        (402, C::BadRequest),
        (403, C::Forbidden),
        (404, C::ItemNotFound),
        (405, C::FeatureNotImplemented),
        (406, C::NotAcceptable),
        (407, C::RegistrationRequired),
        (408, C::RemoteServerTimeout),
        (410, C::Gone),
        (413, C::PolicyViolation),
        (414, C::PolicyViolation),
        (415, C::NotAcceptable),
        (416, C::NotAcceptable),
        (420, C::FeatureNotImplemented),
        (421, C::NotAcceptable),
        (423, C::ResourceConstraint),
        (430, C::RecipientUnavailable),
        (439, C::FeatureNotImplemented),
        (440, C::PolicyViolation),
        (480, C::RecipientUnavailable),
        (481, C::ItemNotFound),
        (482, C::NotAcceptable),
        (483, C::NotAcceptable),
        (484, C::ItemNotFound),
        (485, C::ItemNotFound),
        (486, C::RecipientUnavailable),
        (487, C::RecipientUnavailable),
        (488, C::NotAcceptable),
        (489, C::PolicyViolation),
        (491, C::UnexpectedRequest),
        (493, C::BadRequest),
        (500, C::InternalServerError),
        (501, C::FeatureNotImplemented),
        (502, C::RemoteServerNotFound),
        (503, C::InternalServerError),
        (504, C::RemoteServerTimeout),
        (505, C::NotAcceptable),
        (513, C::PolicyViolation),
        (600, C::RecipientUnavailable),
        (603, C::RecipientUnavailable),
        (604, C::ItemNotFound),
        (606, C::NotAcceptable),
    ]
};

/// RFC 7247 §7.2: fallback by response class for codes Table 3 does not list (ERR-06).
pub const SIP_CLASS_FALLBACK: [(u16, StanzaCondition); 4] = [
    (3, StanzaCondition::Redirect),
    (4, StanzaCondition::BadRequest),
    (5, StanzaCondition::InternalServerError),
    (6, StanzaCondition::RecipientUnavailable),
];

/// What the gateway knows about the failed XMPP delivery, beyond the condition.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct XmppErrorContext<'a> {
    /// The failed stanza was addressed to a full JID (RFC 7247 §7.1 notes 1–2).
    pub addressed_full_jid: bool,
    /// The character data of `<gone/>`, i.e. the entity's new address (note 3).
    pub gone_target: Option<&'a str>,
    /// For `remote-server-not-found`: the domain exists but could not be resolved or
    /// reached (note 4, ERR-11), giving 408 instead of 404.
    pub remote_unreachable: bool,
}

/// The SIP response code for an XMPP stanza error (RFC 7247 §7.1, Table 2; ERR-01..04).
///
/// `remote-server-not-found` gives 404 here (RFC 6120 §10.4.3: a DNS failure); use
/// [`xmpp_to_sip_with`] to report an unreachable domain as 408.
pub fn xmpp_to_sip(
    cond: StanzaCondition,
    addressed_full_jid: bool,
    gone_target: Option<&str>,
) -> u16 {
    xmpp_to_sip_with(
        cond,
        &XmppErrorContext {
            addressed_full_jid,
            gone_target,
            remote_unreachable: false,
        },
    )
}

/// [`xmpp_to_sip`] with the full context of RFC 7247 §7.1 notes 1–5.
pub fn xmpp_to_sip_with(cond: StanzaCondition, ctx: &XmppErrorContext<'_>) -> u16 {
    let rule = XMPP_TO_SIP
        .iter()
        .find(|(c, _)| *c == cond)
        .map(|(_, r)| *r)
        // Every condition has a row (tested); undefined-condition is the safe default.
        .unwrap_or(SipCodeRule::Code(400));
    match rule {
        SipCodeRule::Code(c) => c,
        SipCodeRule::ByAddress { full_jid, bare_jid } => {
            if ctx.addressed_full_jid {
                full_jid
            } else {
                bare_jid
            }
        }
        SipCodeRule::ByGoneTarget {
            with_target,
            without_target,
        } => match ctx.gone_target.map(str::trim) {
            Some(t) if !t.is_empty() => with_target,
            _ => without_target,
        },
        SipCodeRule::ByReachability {
            no_such_domain,
            unreachable,
        } => {
            if ctx.remote_unreachable {
                unreachable
            } else {
                no_such_domain
            }
        }
        SipCodeRule::Choice { chosen, .. } => chosen,
        SipCodeRule::Deviation { sent, .. } => sent,
    }
}

/// The Contact header value (`<uri>`) for the new address in a `<gone/>` or
/// `<redirect/>` (RFC 6120 §8.3.3.5, §8.3.3.14), which a 301 or 302 must carry for the
/// client to retry there (RFC 3261 §21.3.2, §21.3.3, §8.1.3.4).
///
/// - An XMPP URI (RFC 5122 §2.2: `xmpp:` [`//` authority `/`] JID [`?`query]
///   [`#`fragment]) is percent-decoded to the JID and mapped by RFC 7247 §6.5
///   ([`jid_to_sip`]): `xmpp:romeo@example.net` → `<sip:romeo@example.net>`.
/// - A `sip:`/`sips:` URI is used as it is.
/// - Anything else (another scheme, a bare word, a URI that does not map) gives `None`.
///
/// [`jid_to_sip`]: crate::translate::address::jid_to_sip
pub fn redirect_contact(target: &str) -> Option<String> {
    use crate::translate::address::{JidParts, Scheme, jid_to_sip, percent_decode};
    let t = target.trim();
    if t.is_empty()
        || t.chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>')
    {
        return None;
    }
    let (scheme, rest) = t.split_once(':')?;
    if scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips") {
        return (!rest.is_empty()).then(|| format!("<{t}>"));
    }
    if !scheme.eq_ignore_ascii_case("xmpp") {
        return None;
    }
    // RFC 5122 §2.2: an authority component names the account to act as, not the target.
    let path = match rest.strip_prefix("//") {
        Some(auth_and_path) => auth_and_path.split_once('/').map(|(_, p)| p)?,
        None => rest,
    };
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let jid = JidParts::parse(&percent_decode(path, "localpart").ok()?).ok()?;
    jid.local.as_ref()?;
    jid_to_sip(&jid, Scheme::Sip).ok().map(|u| format!("<{u}>"))
}

/// The new address carried by a `<gone/>` (or `<redirect/>`) condition inside an
/// `<error/>` element (RFC 6120 §8.3.3.5, §8.3.3.14), to feed [`xmpp_to_sip`].
pub fn condition_text(error: &Element) -> Option<String> {
    error
        .elements()
        .find(|c| c.ns == ns::STANZAS_ERR && c.name != "text")
        .map(|c| c.text().trim().to_owned())
        .filter(|t| !t.is_empty())
}

/// The XMPP condition for a SIP final response code (RFC 7247 §7.2, Table 3; ERR-05,
/// ERR-06, ERR-07). Codes below 300 carry no error (ERR-08); they and codes beyond 699
/// give `undefined-condition` so the function stays total; prefer
/// [`sip_to_xmpp_error`], which returns `None` for them.
pub fn sip_to_xmpp(code: u16) -> StanzaCondition {
    if let Some((_, c)) = SIP_TO_XMPP.iter().find(|(k, _)| *k == code) {
        return *c;
    }
    SIP_CLASS_FALLBACK
        .iter()
        .find(|(class, _)| *class == code / 100)
        .map(|(_, c)| *c)
        .unwrap_or(StanzaCondition::UndefinedCondition)
}

/// A translated XMPP error: the stanza error plus the condition's own character data
/// (the new address of `<gone/>`/`<redirect/>`, RFC 6120 §8.3.3.5), which
/// [`StanzaError`] itself does not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappedXmppError {
    /// Type, condition and optional `<text/>` (RFC 6120 §8.3.2).
    pub error: StanzaError,
    /// Character data of the condition element.
    pub condition_text: Option<String>,
}

impl MappedXmppError {
    /// `<error type='…'><cond>new-address</cond>[<text/>]</error>` (RFC 6120 §8.3.2).
    pub fn to_element(&self, content_ns: &str) -> Element {
        let mut e = self.error.to_element(content_ns);
        if let Some(t) = &self.condition_text
            && let Some(Node::Element(cond)) = e.children.first_mut()
        {
            cond.children.push(Node::Text(t.clone()));
        }
        e
    }
}

/// Translate a SIP final response into an XMPP error (RFC 7247 §7.2).
///
/// `None` for 1xx/2xx (no error mapping, ERR-08) and for codes above 699. For 301 the
/// new address (the caller's mapping of the Contact, ideally an `xmpp:` URI) goes into
/// `<gone/>`; 410 gives an empty `<gone/>` (note 1, ERR-07). A 3xx's Contact likewise
/// fills `<redirect/>`. The Reason-Phrase may be carried as `<text/>` (ERR-08, MAY).
pub fn sip_to_xmpp_error(
    code: u16,
    new_address: Option<&str>,
    reason_phrase: Option<&str>,
) -> Option<MappedXmppError> {
    if !(300..=699).contains(&code) {
        return None;
    }
    let condition = sip_to_xmpp(code);
    let mut error = StanzaError::new(condition);
    error.text = reason_phrase
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(str::to_owned);
    let condition_text = match (code, condition) {
        (410, _) => None,
        (_, StanzaCondition::Gone | StanzaCondition::Redirect) => {
            new_address.map(str::to_owned).filter(|a| !a.is_empty())
        }
        _ => None,
    };
    Some(MappedXmppError {
        error,
        condition_text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use StanzaCondition as C;
    use rstest::rstest;

    // Every row of Table 2, both address families (ERR-01, ERR-02, ERR-04).
    #[rstest]
    #[case(C::BadRequest, 400, 400)]
    #[case(C::Conflict, 400, 400)]
    #[case(C::FeatureNotImplemented, 405, 501)]
    #[case(C::Forbidden, 403, 603)]
    #[case(C::Gone, 410, 410)]
    #[case(C::InternalServerError, 500, 500)]
    #[case(C::ItemNotFound, 404, 604)]
    #[case(C::JidMalformed, 400, 400)]
    #[case(C::NotAcceptable, 406, 606)]
    #[case(C::NotAllowed, 403, 403)]
    #[case(C::NotAuthorized, 403, 403)]
    #[case(C::PolicyViolation, 403, 403)]
    #[case(C::RecipientUnavailable, 480, 600)]
    #[case(C::Redirect, 302, 302)]
    #[case(C::RegistrationRequired, 407, 407)]
    #[case(C::RemoteServerNotFound, 404, 404)]
    #[case(C::RemoteServerTimeout, 408, 408)]
    #[case(C::ResourceConstraint, 500, 500)]
    #[case(C::ServiceUnavailable, 403, 403)]
    #[case(C::SubscriptionRequired, 400, 400)]
    #[case(C::UndefinedCondition, 400, 400)]
    #[case(C::UnexpectedRequest, 491, 491)]
    fn table2_every_row(#[case] cond: C, #[case] full: u16, #[case] bare: u16) {
        assert_eq!(xmpp_to_sip(cond, true, None), full, "{cond} full JID");
        assert_eq!(xmpp_to_sip(cond, false, None), bare, "{cond} bare JID");
    }

    #[test]
    fn table2_covers_every_condition_once() {
        for c in C::ALL {
            let n = XMPP_TO_SIP.iter().filter(|(k, _)| k == c).count();
            assert_eq!(n, 1, "{c} must have exactly one row");
        }
        assert_eq!(XMPP_TO_SIP.len(), C::ALL.len());
    }

    #[test]
    fn not_authorized_deviates_from_table_2_to_403() {
        // RFC 3261 §21.4.2: a 401 must carry a challenge the gateway cannot give.
        let rule = XMPP_TO_SIP
            .iter()
            .find(|(c, _)| *c == C::NotAuthorized)
            .map(|(_, r)| *r);
        assert_eq!(
            rule,
            Some(SipCodeRule::Deviation {
                table: 401,
                sent: 403
            })
        );
        for full in [true, false] {
            assert_eq!(xmpp_to_sip(C::NotAuthorized, full, None), 403);
        }
        // The reverse direction keeps Table 3.
        assert_eq!(sip_to_xmpp(401), C::NotAuthorized);
    }

    #[rstest]
    #[case::xmpp("xmpp:romeo@example.net", Some("<sip:romeo@example.net>"))]
    #[case::xmpp_resource(
        "xmpp:romeo@example.net/orchard",
        Some("<sip:romeo@example.net;gr=orchard>")
    )]
    #[case::xmpp_authority(
        "xmpp://guest@example.com/romeo@example.net",
        Some("<sip:romeo@example.net>")
    )]
    #[case::xmpp_query(
        "xmpp:romeo@example.net?message;body=hi",
        Some("<sip:romeo@example.net>")
    )]
    #[case::xmpp_fragment("xmpp:romeo@example.net#x", Some("<sip:romeo@example.net>"))]
    #[case::xmpp_percent("xmpp:r%C3%B6meo@example.net", Some("<sip:r%C3%B6meo@example.net>"))]
    #[case::xmpp_escaped("xmpp:o\\27malley@example.net", Some("<sip:o'malley@example.net>"))]
    #[case::xmpp_upper_scheme("XMPP:romeo@example.net", Some("<sip:romeo@example.net>"))]
    #[case::padded("  xmpp:romeo@example.net \n", Some("<sip:romeo@example.net>"))]
    #[case::sip("sip:romeo@sip.example.net", Some("<sip:romeo@sip.example.net>"))]
    #[case::sips("sips:romeo@sip.example.net", Some("<sips:romeo@sip.example.net>"))]
    #[case::domain_only("xmpp:example.net", None)]
    #[case::http("https://example.net/romeo", None)]
    #[case::bare_jid("romeo@example.net", None)]
    #[case::empty("", None)]
    #[case::angle("sip:a@b>x", None)]
    #[case::space("sip:a@b c", None)]
    #[case::bad_percent("xmpp:r%ZZ@example.net", None)]
    #[case::authority_only("xmpp://guest@example.com", None)]
    fn contact_for_a_new_address(#[case] target: &str, #[case] want: Option<&str>) {
        assert_eq!(redirect_contact(target).as_deref(), want);
    }

    #[test]
    fn service_unavailable_is_never_503() {
        // RFC 7247 §7.1 note 5 (ERR-04).
        for full in [true, false] {
            let code = xmpp_to_sip(C::ServiceUnavailable, full, None);
            assert_ne!(code, 503);
            assert!([403, 405].contains(&code));
        }
    }

    #[rstest]
    #[case(Some("xmpp:new@x.test"), 301)]
    #[case(Some("  "), 410)]
    #[case(None, 410)]
    fn gone_with_and_without_target(#[case] target: Option<&str>, #[case] code: u16) {
        // RFC 7247 §7.1 note 3 (ERR-03).
        assert_eq!(xmpp_to_sip(C::Gone, true, target), code);
        assert_eq!(xmpp_to_sip(C::Gone, false, target), code);
    }

    #[test]
    fn remote_server_not_found_by_reachability() {
        // RFC 7247 §7.1 note 4; RFC 6120 §10.4.3 (ERR-03, ERR-11).
        let mut ctx = XmppErrorContext::default();
        assert_eq!(xmpp_to_sip_with(C::RemoteServerNotFound, &ctx), 404);
        ctx.remote_unreachable = true;
        assert_eq!(xmpp_to_sip_with(C::RemoteServerNotFound, &ctx), 408);
    }

    #[test]
    fn gone_target_is_read_from_the_condition_element() {
        let e = Element::new(ns::SERVER, "error")
            .with_attr("type", "cancel")
            .with_child(Element::new(ns::STANZAS_ERR, "gone").with_text("xmpp:new@x.test"))
            .with_child(Element::new(ns::STANZAS_ERR, "text").with_text("moved"));
        assert_eq!(condition_text(&e).as_deref(), Some("xmpp:new@x.test"));
        let empty =
            Element::new(ns::SERVER, "error").with_child(Element::new(ns::STANZAS_ERR, "gone"));
        assert_eq!(condition_text(&empty), None);
    }

    // Every row of Table 3 (ERR-05, ERR-07).
    #[rstest]
    #[case(300, C::Redirect)]
    #[case(301, C::Gone)]
    #[case(302, C::Redirect)]
    #[case(305, C::Redirect)]
    #[case(380, C::NotAcceptable)]
    #[case(400, C::BadRequest)]
    #[case(401, C::NotAuthorized)]
    #[case(402, C::BadRequest)]
    #[case(403, C::Forbidden)]
    #[case(404, C::ItemNotFound)]
    #[case(405, C::FeatureNotImplemented)]
    #[case(406, C::NotAcceptable)]
    #[case(407, C::RegistrationRequired)]
    #[case(408, C::RemoteServerTimeout)]
    #[case(410, C::Gone)]
    #[case(413, C::PolicyViolation)]
    #[case(414, C::PolicyViolation)]
    #[case(415, C::NotAcceptable)]
    #[case(416, C::NotAcceptable)]
    #[case(420, C::FeatureNotImplemented)]
    #[case(421, C::NotAcceptable)]
    #[case(423, C::ResourceConstraint)]
    #[case(430, C::RecipientUnavailable)]
    #[case(439, C::FeatureNotImplemented)]
    #[case(440, C::PolicyViolation)]
    #[case(480, C::RecipientUnavailable)]
    #[case(481, C::ItemNotFound)]
    #[case(482, C::NotAcceptable)]
    #[case(483, C::NotAcceptable)]
    #[case(484, C::ItemNotFound)]
    #[case(485, C::ItemNotFound)]
    #[case(486, C::RecipientUnavailable)]
    #[case(487, C::RecipientUnavailable)]
    #[case(488, C::NotAcceptable)]
    #[case(489, C::PolicyViolation)]
    #[case(491, C::UnexpectedRequest)]
    #[case(493, C::BadRequest)]
    #[case(500, C::InternalServerError)]
    #[case(501, C::FeatureNotImplemented)]
    #[case(502, C::RemoteServerNotFound)]
    #[case(503, C::InternalServerError)]
    #[case(504, C::RemoteServerTimeout)]
    #[case(505, C::NotAcceptable)]
    #[case(513, C::PolicyViolation)]
    #[case(600, C::RecipientUnavailable)]
    #[case(603, C::RecipientUnavailable)]
    #[case(604, C::ItemNotFound)]
    #[case(606, C::NotAcceptable)]
    fn table3_every_row(#[case] code: u16, #[case] cond: C) {
        assert_eq!(sip_to_xmpp(code), cond);
    }

    #[test]
    fn table3_has_no_duplicate_codes() {
        for (code, _) in SIP_TO_XMPP {
            assert_eq!(
                SIP_TO_XMPP.iter().filter(|(c, _)| c == code).count(),
                1,
                "{code}"
            );
        }
        assert_eq!(SIP_TO_XMPP.len(), 48);
    }

    // ERR-06 class fallback.
    #[rstest]
    #[case(399, C::Redirect)]
    #[case(409, C::BadRequest)]
    #[case(499, C::BadRequest)]
    #[case(599, C::InternalServerError)]
    #[case(699, C::RecipientUnavailable)]
    #[case(200, C::UndefinedCondition)]
    #[case(700, C::UndefinedCondition)]
    fn table3_class_fallback(#[case] code: u16, #[case] cond: C) {
        assert_eq!(sip_to_xmpp(code), cond);
    }

    #[test]
    fn moved_and_gone_responses() {
        // RFC 7247 §7.2 note 1 (ERR-07).
        let moved = sip_to_xmpp_error(301, Some("xmpp:new@x.test"), Some("Moved")).expect("301");
        assert_eq!(moved.error.condition, C::Gone);
        assert_eq!(moved.condition_text.as_deref(), Some("xmpp:new@x.test"));
        let el = moved.to_element(ns::SERVER);
        assert_eq!(condition_text(&el).as_deref(), Some("xmpp:new@x.test"));
        assert_eq!(
            el.child(ns::STANZAS_ERR, "text")
                .map(Element::text)
                .as_deref(),
            Some("Moved")
        );
        let gone = sip_to_xmpp_error(410, Some("ignored"), None).expect("410");
        assert_eq!(gone.error.condition, C::Gone);
        assert_eq!(gone.condition_text, None);
        assert_eq!(condition_text(&gone.to_element(ns::SERVER)), None);
        let nf = sip_to_xmpp_error(404, Some("sip:x@y"), Some("No Such User")).expect("404");
        assert_eq!(nf.condition_text, None);
        assert_eq!(nf.error.text.as_deref(), Some("No Such User"));
    }

    #[rstest]
    #[case(100)]
    #[case(180)]
    #[case(200)]
    #[case(202)]
    #[case(299)]
    #[case(700)]
    fn no_error_for_provisional_and_success(#[case] code: u16) {
        assert_eq!(sip_to_xmpp_error(code, None, None), None);
    }
}
