//! Address mapping between SIP/SIMPLE URIs and XMPP addresses (RFC 7247 §6).
//!
//! Pure value functions: no I/O, no SIP stack. The JID is handled as three plain parts
//! ([`JidParts`]) so this module does not depend on the stream codec's JID parser.
//!
//! ```text
//! RFC 7247 §6.2 (localpart), as encoded here:
//!   SIP user -> XMPP localpart: percent-decode, then XEP-0106 `\hh` escaping of
//!     the characters a localpart cannot carry (Table 1: `&` `'` `/`, and, after
//!     percent-decoding, space " : < > @ and a `\` that starts an escape code).
//!   XMPP localpart -> SIP user: undo `\hh`, then percent-encode
//!     sip:/sips:  # % [ \ ] ^ ` { | }  and every non-ASCII UTF-8 byte
//!     im:/pres:   ( ) , . ; [ \ ]      and every non-ASCII UTF-8 byte
//! RFC 7247 §6.3: the SIP `gr` URI parameter <-> the XMPP resourcepart.
//! ```

use std::fmt;

use thiserror::Error;

/// RFC 7622 §3.1: each part of a JID is at most 1023 octets.
pub const MAX_PART_LEN: usize = 1023;

/// The three parts of an XMPP address (RFC 7622 §3.1), held as plain strings.
///
/// The localpart is kept in its XEP-0106 escaped form (as it appears on the wire).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct JidParts {
    /// Localpart (RFC 7622 §3.3), XEP-0106-escaped.
    pub local: Option<String>,
    /// Domainpart (RFC 7622 §3.2), lowercase ASCII here.
    pub domain: String,
    /// Resourcepart (RFC 7622 §3.4).
    pub resource: Option<String>,
}

impl JidParts {
    /// Build from parts (no validation; see [`JidParts::parse`]).
    pub fn new(local: Option<&str>, domain: &str, resource: Option<&str>) -> Self {
        JidParts {
            local: local.map(str::to_owned),
            domain: domain.to_owned(),
            resource: resource.map(str::to_owned),
        }
    }

    /// Split a JID string (RFC 7622 §3.1): the resourcepart follows the first `/`, the
    /// localpart precedes the first `@` before that. Empty parts are an error; the
    /// domain is lowercased and a trailing dot dropped (RFC 7622 §3.2).
    pub fn parse(s: &str) -> Result<Self, AddressError> {
        if s.is_empty() {
            return Err(AddressError::Empty);
        }
        let (bare, resource) = match s.split_once('/') {
            Some((b, r)) => (b, Some(r)),
            None => (s, None),
        };
        let (local, domain) = match bare.split_once('@') {
            Some((l, d)) => (Some(l), d),
            None => (None, bare),
        };
        if local == Some("") {
            return Err(AddressError::EmptyLocalpart);
        }
        if resource == Some("") {
            return Err(AddressError::EmptyResource);
        }
        let domain = normalize_domain(domain)?;
        let jid = JidParts {
            local: local.map(str::to_owned),
            domain,
            resource: resource.map(str::to_owned),
        };
        check_lengths(&jid)?;
        Ok(jid)
    }

    /// The bare JID (no resourcepart).
    pub fn bare(&self) -> JidParts {
        JidParts {
            local: self.local.clone(),
            domain: self.domain.clone(),
            resource: None,
        }
    }

    /// True when a resourcepart is present (RFC 6120 §1.4 "full JID").
    pub fn is_full(&self) -> bool {
        self.resource.is_some()
    }
}

impl fmt::Display for JidParts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(l) = &self.local {
            write!(f, "{l}@")?;
        }
        f.write_str(&self.domain)?;
        if let Some(r) = &self.resource {
            write!(f, "/{r}")?;
        }
        Ok(())
    }
}

/// URI schemes on the SIP side (RFC 7247 §6.5 step 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// RFC 3261 `sip:`.
    Sip,
    /// RFC 3261 `sips:`; only ever produced, never translated from (RFC 7247 §8).
    Sips,
    /// RFC 3860 `im:`.
    Im,
    /// RFC 3859 `pres:`.
    Pres,
}

impl Scheme {
    /// The scheme name without the colon.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Sip => "sip",
            Scheme::Sips => "sips",
            Scheme::Im => "im",
            Scheme::Pres => "pres",
        }
    }

    /// Parse a scheme name; schemes are case-insensitive (RFC 3986 §3.1).
    pub fn from_name(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "sip" => Scheme::Sip,
            "sips" => Scheme::Sips,
            "im" => Scheme::Im,
            "pres" => Scheme::Pres,
            _ => return None,
        })
    }
}

/// Why an address could not be mapped.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AddressError {
    /// Nothing to map.
    #[error("empty address")]
    Empty,
    /// RFC 3986 §3.1: a URI starts with a scheme.
    #[error("no URI scheme")]
    MissingScheme,
    /// RFC 7247 §8: a `sips:` Request-URI or To MUST NOT be translated to XMPP, since
    /// XMPP cannot guarantee TLS on every hop (ARCH-04).
    #[error("sips: URIs must not be translated to XMPP (RFC 7247 §8)")]
    SipsNotTranslatable,
    /// RFC 7247 §6: only sip:, im: and pres: map to JIDs.
    #[error("unsupported URI scheme {0:?}")]
    UnsupportedScheme(String),
    /// RFC 7622 §3.2: the domainpart is mandatory.
    #[error("missing domain")]
    MissingDomain,
    /// Not an ASCII host name or IP literal.
    #[error("invalid domain {0:?} (IDN mapping is out of scope, RFC 7247 §6.1)")]
    InvalidDomain(String),
    /// RFC 7622 §3.3: a localpart has at least one character.
    #[error("empty localpart")]
    EmptyLocalpart,
    /// RFC 7622 §3.4: a resourcepart has at least one character.
    #[error("empty resourcepart")]
    EmptyResource,
    /// RFC 3986 §2.1: `%` must be followed by two hex digits.
    #[error("invalid percent-escape at byte {0}")]
    InvalidPercentEscape(usize),
    /// RFC 7247 §6.4 step 4: the decoded octets are UTF-8.
    #[error("percent-decoded {0} is not UTF-8")]
    NotUtf8(&'static str),
    /// RFC 7622 §3.3 / RFC 7613 (PRECIS): control characters are disallowed.
    #[error("control character in {0}")]
    ControlCharacter(&'static str),
    /// RFC 7622 §3.3.1: these characters never appear unescaped in a localpart.
    #[error("character {0:?} is not allowed unescaped in a localpart (RFC 7622 §3.3.1)")]
    ForbiddenInLocalpart(char),
    /// RFC 3859/3860 URIs carry no parameters, so a resourcepart has nowhere to go.
    #[error("{0:?} URIs cannot carry a resourcepart")]
    ResourceNotRepresentable(Scheme),
    /// RFC 7622 §3.1: a part exceeds 1023 octets.
    #[error("{0} longer than 1023 octets (RFC 7622 §3.1)")]
    TooLong(&'static str),
}

/// XEP-0106 §3 escape table, which RFC 7247 §6.4 step 5 adopts (its Table 1 lists
/// `&` `'` `/`, the characters legal in a SIP user part but not in a localpart). The
/// other rows can only appear after percent-decoding, and must be escaped as well for
/// the result to be a JID at all. `\` is escaped only when it would start a code.
pub const ESCAPES: [(char, &str); 10] = [
    (' ', "20"),
    ('"', "22"),
    ('&', "26"),
    ('\'', "27"),
    ('/', "2f"),
    (':', "3a"),
    ('<', "3c"),
    ('>', "3e"),
    ('@', "40"),
    ('\\', "5c"),
];

fn escape_code_at(s: &str) -> Option<char> {
    let code = s.get(..2)?;
    ESCAPES.iter().find(|(_, c)| *c == code).map(|(ch, _)| *ch)
}

/// XEP-0106 escaping of a decoded SIP user part into a localpart (RFC 7247 §6.4 step 5).
pub fn escape_localpart(decoded: &str) -> String {
    let mut out = String::with_capacity(decoded.len());
    for (i, ch) in decoded.char_indices() {
        if ch == '\\' {
            // XEP-0106 §5 rule 7 and its IMPS/IRC examples: a backslash is escaped
            // only when it starts a sequence that would unescape; partial and unknown
            // sequences are left alone ("Exceptions"). (The XEP's JID examples 9–11
            // escape every backslash; following them would break ADDR-08 for JIDs
            // that contain a plain backslash.)
            if escape_code_at(&decoded[i + 1..]).is_some() {
                out.push_str("\\5c");
            } else {
                out.push('\\');
            }
        } else if let Some((_, code)) = ESCAPES.iter().find(|(c, _)| *c == ch) {
            out.push('\\');
            out.push_str(code);
        } else {
            out.push(ch);
        }
    }
    out
}

/// Undo XEP-0106 escaping (RFC 7247 §6.5 step 1). XEP-0106 §5 rule 3 and
/// "Exceptions": only the listed sequences are unescaped. Only the ten lowercase codes of
/// [`ESCAPES`] are sequences; any other backslash is literal.
pub fn unescape_localpart(escaped: &str) -> String {
    let mut out = String::with_capacity(escaped.len());
    let mut rest = escaped;
    while let Some(pos) = rest.find('\\') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        match escape_code_at(after) {
            Some(ch) => {
                out.push(ch);
                rest = &after[2..];
            }
            None => {
                out.push('\\');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Percent-decode (RFC 3986 §2.1) into a UTF-8 string.
pub fn percent_decode(s: &str, part: &'static str) -> Result<String, AddressError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .filter(|h| h.bytes().all(|c| c.is_ascii_hexdigit()))
                .ok_or(AddressError::InvalidPercentEscape(i))?;
            let v =
                u8::from_str_radix(hex, 16).map_err(|_| AddressError::InvalidPercentEscape(i))?;
            out.push(v);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| AddressError::NotUtf8(part))
}

/// Percent-encode every byte for which `keep` is false (and every non-ASCII byte).
fn percent_encode(s: &str, keep: fn(u8) -> bool) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii() && keep(b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// RFC 3261 §25.1 `user` = unreserved / escaped / user-unreserved. Everything else is
/// percent-encoded, which for a valid localpart is exactly RFC 7247 §6.5's set
/// `# % [ \ ] ^ ` { | }` (plus controls, space, and non-ASCII).
fn sip_user_keep(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-_.!~*'()&=+$,;?/".contains(&b)
}

/// RFC 5322 `atext` (the local-part of RFC 3859/3860 URIs) without `%` and `?`. This
/// encodes RFC 7247 §6.5's im:/pres: set `( ) , . ; [ \ ]`; `%` and `?` are encoded as
/// well because unencoded they would be read back as an escape or as the start of the
/// URI headers (RFC 3859 §3), breaking the round trip (ADDR-08).
fn impres_user_keep(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$&'*+-/=^_`{|}~".contains(&b)
}

/// RFC 3261 §25.1 `paramchar` = param-unreserved / unreserved / escaped.
fn param_keep(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"[]/:&+$-_.!~*'()".contains(&b)
}

fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

fn check_lengths(j: &JidParts) -> Result<(), AddressError> {
    if j.local.as_ref().is_some_and(|l| l.len() > MAX_PART_LEN) {
        return Err(AddressError::TooLong("localpart"));
    }
    if j.domain.len() > MAX_PART_LEN {
        return Err(AddressError::TooLong("domainpart"));
    }
    if j.resource.as_ref().is_some_and(|r| r.len() > MAX_PART_LEN) {
        return Err(AddressError::TooLong("resourcepart"));
    }
    Ok(())
}

/// ASCII host name or IP literal, lowercased, trailing dot removed (RFC 7622 §3.2).
/// IDN conversion is out of scope (RFC 7247 §6.1), so non-ASCII domains are refused.
fn normalize_domain(d: &str) -> Result<String, AddressError> {
    let d = d.strip_suffix('.').unwrap_or(d);
    if d.is_empty() {
        return Err(AddressError::MissingDomain);
    }
    let ok = if let Some(inner) = d.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        !inner.is_empty()
            && inner
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
    } else {
        d.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
    };
    if !ok {
        return Err(AddressError::InvalidDomain(d.to_owned()));
    }
    Ok(d.to_ascii_lowercase())
}

/// Map a SIP/SIMPLE URI to an XMPP address (RFC 7247 §6.4; ADDR-01, ADDR-02, ADDR-04).
///
/// 1. Scheme `sip:`, `im:` or `pres:`; `sips:` is refused (RFC 7247 §8, ARCH-04).
/// 2. Split at the first `@` into user part and host part (§6.4 step 2).
/// 3. Percent-decode the user part and require UTF-8 (§6.4 steps 3–4).
/// 4. XEP-0106-escape what a localpart cannot carry (§6.4 step 5, [`escape_localpart`]).
/// 5. Domain: lowercased, port dropped (JIDs have no port). Nodeprep/PRECIS is optional
///    (§6.4 step 6) and not applied, so case in the localpart is kept.
/// 6. A `gr` URI parameter with a value becomes the resourcepart (§6.3, §6.4 step 8).
///    Other URI parameters, a password and `?headers` are ignored.
///
/// A surrounding `<…>` (name-addr form) is accepted.
pub fn sip_to_jid(uri: &str) -> Result<JidParts, AddressError> {
    let uri = uri.trim();
    let uri = uri
        .strip_prefix('<')
        .and_then(|u| u.strip_suffix('>'))
        .unwrap_or(uri);
    if uri.is_empty() {
        return Err(AddressError::Empty);
    }
    let (scheme, rest) = uri.split_once(':').ok_or(AddressError::MissingScheme)?;
    let scheme = match Scheme::from_name(scheme) {
        Some(Scheme::Sips) => return Err(AddressError::SipsNotTranslatable),
        Some(s) => s,
        None => return Err(AddressError::UnsupportedScheme(scheme.to_owned())),
    };
    // RFC 3859 §3 / RFC 3860 §3: `?` starts the headers of im:/pres: URIs. For sip:,
    // the user part may contain `?` and `;`, but never an unescaped `@` (RFC 3261 §25.1),
    // so the first `@` is the userinfo delimiter.
    let rest = match scheme {
        Scheme::Im | Scheme::Pres => rest.split_once('?').map_or(rest, |(a, _)| a),
        _ => rest,
    };
    let (userinfo, hostpart) = match rest.split_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, rest),
    };
    // RFC 3261 §19.1.1: `user:password`; the (deprecated) password is dropped.
    let user = userinfo.map(|u| u.split_once(':').map_or(u, |(a, _)| a));

    let (hostport, tail) = match hostpart.find([';', '?']) {
        Some(i) => (&hostpart[..i], &hostpart[i..]),
        None => (hostpart, ""),
    };
    let host = if hostport.starts_with('[') {
        hostport.find(']').map_or(hostport, |i| &hostport[..=i])
    } else {
        hostport.split_once(':').map_or(hostport, |(h, _)| h)
    };
    let domain = normalize_domain(host)?;

    let local = match user {
        None => None,
        Some(u) => {
            let decoded = percent_decode(u, "localpart")?;
            if decoded.is_empty() {
                return Err(AddressError::EmptyLocalpart);
            }
            if has_control(&decoded) {
                return Err(AddressError::ControlCharacter("localpart"));
            }
            Some(escape_localpart(&decoded))
        }
    };

    let mut resource = None;
    if scheme == Scheme::Sip {
        let params = tail.split_once('?').map_or(tail, |(p, _)| p);
        for param in params.split(';').filter(|p| !p.is_empty()) {
            let (name, value) = match param.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (param, None),
            };
            // RFC 5627 §3.1: a `gr` parameter with a value is a public GRUU; a bare
            // `gr` (temporary GRUU) is out of scope (ADDR-04).
            if name.eq_ignore_ascii_case("gr")
                && let Some(v) = value.filter(|v| !v.is_empty())
            {
                let r = percent_decode(v, "resourcepart")?;
                if has_control(&r) {
                    return Err(AddressError::ControlCharacter("resourcepart"));
                }
                resource = Some(r);
            }
        }
    }
    let jid = JidParts {
        local,
        domain,
        resource,
    };
    check_lengths(&jid)?;
    Ok(jid)
}

/// Map an XMPP address to a URI of `scheme` (RFC 7247 §6.5; ADDR-05, ADDR-07).
///
/// 1. Undo XEP-0106 escaping of the localpart (§6.5 step 1). Raw characters that a
///    localpart may not contain are refused ([`AddressError::ForbiddenInLocalpart`]).
/// 2. Percent-encode for the scheme (§6.5 step 5): see [`sip_user_keep`] and
///    [`impres_user_keep`]; non-ASCII UTF-8 bytes always become `%HH`.
/// 3. A resourcepart becomes `;gr=` on `sip:`/`sips:` (§6.5 step 8); `im:`/`pres:`
///    URIs have no parameters, so a full JID is refused there (map the bare JID).
pub fn jid_to_sip(jid: &JidParts, scheme: Scheme) -> Result<String, AddressError> {
    check_lengths(jid)?;
    let domain = normalize_domain(&jid.domain)?;
    let mut out = String::with_capacity(jid.domain.len() + 32);
    out.push_str(scheme.as_str());
    out.push(':');
    if let Some(local) = &jid.local {
        if local.is_empty() {
            return Err(AddressError::EmptyLocalpart);
        }
        if let Some(c) = local
            .chars()
            .find(|c| *c != '\\' && ESCAPES.iter().any(|(e, _)| e == c))
        {
            return Err(AddressError::ForbiddenInLocalpart(c));
        }
        if has_control(local) {
            return Err(AddressError::ControlCharacter("localpart"));
        }
        let raw = unescape_localpart(local);
        let keep = match scheme {
            Scheme::Sip | Scheme::Sips => sip_user_keep,
            Scheme::Im | Scheme::Pres => impres_user_keep,
        };
        out.push_str(&percent_encode(&raw, keep));
        out.push('@');
    }
    out.push_str(&domain);
    if let Some(res) = &jid.resource {
        if res.is_empty() {
            return Err(AddressError::EmptyResource);
        }
        if has_control(res) {
            return Err(AddressError::ControlCharacter("resourcepart"));
        }
        match scheme {
            Scheme::Sip | Scheme::Sips => {
                out.push_str(";gr=");
                out.push_str(&percent_encode(res, param_keep));
            }
            Scheme::Im | Scheme::Pres => {
                return Err(AddressError::ResourceNotRepresentable(scheme));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn jid(s: &str) -> JidParts {
        JidParts::parse(s).expect("test JID")
    }

    // RFC 7247 §6.4 / catalogue ADDR-01, ADDR-02, ADDR-04 examples, plus every row of
    // the escape table reached through percent-decoding.
    #[rstest]
    #[case::plain("sip:juliet@example.com", "juliet@example.com")]
    #[case::utf8("sip:f%C3%BC@sip.test", "fü@sip.test")]
    #[case::apostrophe("sip:o'malley@sip.test", "o\\27malley@sip.test")]
    #[case::ampersand("sip:a&b@sip.test", "a\\26b@sip.test")]
    #[case::slash_encoded("sip:x%2Fy@sip.test", "x\\2fy@sip.test")]
    #[case::slash_raw("sip:x/y@sip.test", "x\\2fy@sip.test")]
    #[case::space("sip:a%20b@sip.test", "a\\20b@sip.test")]
    #[case::quote("sip:a%22b@sip.test", "a\\22b@sip.test")]
    #[case::colon("sip:a%3Ab@sip.test", "a\\3ab@sip.test")]
    #[case::lt("sip:a%3Cb@sip.test", "a\\3cb@sip.test")]
    #[case::gt("sip:a%3Eb@sip.test", "a\\3eb@sip.test")]
    #[case::at("sip:a%40b@sip.test", "a\\40b@sip.test")]
    #[case::backslash_code("sip:a%5C26b@sip.test", "a\\5c26b@sip.test")]
    #[case::backslash_plain("sip:a%5Cb@sip.test", "a\\b@sip.test")]
    #[case::hash("sip:a%23b@sip.test", "a#b@sip.test")]
    #[case::gruu("<sip:foo@sip.test;gr=bar>", "foo@sip.test/bar")]
    #[case::gruu_encoded("sip:foo@sip.test;gr=b%C3%A4r", "foo@sip.test/bär")]
    #[case::params_ignored("sip:foo@SIP.Test:5061;transport=tcp;lr?subject=x", "foo@sip.test")]
    #[case::temp_gruu_ignored("sip:foo@sip.test;gr", "foo@sip.test")]
    #[case::password_dropped("sip:foo:secret@sip.test", "foo@sip.test")]
    #[case::domain_only("sip:sip.test", "sip.test")]
    #[case::ipv6("sip:foo@[2001:db8::1]:5060", "foo@[2001:db8::1]")]
    #[case::pres("pres:juliet@example.com", "juliet@example.com")]
    #[case::im("IM:juliet@example.com?subject=hi", "juliet@example.com")]
    #[case::case_kept("sip:Juliet@Example.COM", "Juliet@example.com")]
    // XEP-0106 §6 examples (its "cr%zy" written validly as "cr%25zy").
    #[case::xep0106_sip(
        "sip:here%27s_a_wild_%26_%2Fcr%25zy%2F_address@example.com",
        "here\\27s_a_wild_\\26_\\2fcr%zy\\2f_address@example.com"
    )]
    #[case::xep0106_irc(
        "sip:somenick!user%22&'/%3A%3C%3E%5C3address@example.com",
        "somenick!user\\22\\26\\27\\2f\\3a\\3c\\3e\\5c3address@example.com"
    )]
    #[case::xep0106_imps(
        "sip:%5C3and%5C2is%5C5cool@example.com",
        "\\5c3and\\2is\\5c5cool@example.com"
    )]
    fn sip_to_jid_table(#[case] uri: &str, #[case] expected: &str) {
        assert_eq!(
            sip_to_jid(uri).map(|j| j.to_string()),
            Ok(expected.to_owned())
        );
    }

    #[rstest]
    #[case::sips("sips:juliet@xmpp.test", AddressError::SipsNotTranslatable)]
    #[case::sips_upper("<SIPS:juliet@xmpp.test>", AddressError::SipsNotTranslatable)]
    #[case::tel("tel:+1234", AddressError::UnsupportedScheme("tel".into()))]
    #[case::no_scheme("juliet", AddressError::MissingScheme)]
    #[case::empty("  ", AddressError::Empty)]
    #[case::bad_escape("sip:a%2@x.test", AddressError::InvalidPercentEscape(1))]
    #[case::bad_escape_hex("sip:a%zz@x.test", AddressError::InvalidPercentEscape(1))]
    #[case::not_utf8("sip:a%FF@x.test", AddressError::NotUtf8("localpart"))]
    #[case::control("sip:a%00b@x.test", AddressError::ControlCharacter("localpart"))]
    #[case::empty_user("sip:@x.test", AddressError::EmptyLocalpart)]
    #[case::no_domain("sip:a@", AddressError::MissingDomain)]
    #[case::idn("sip:a@b\u{fc}cher.test", AddressError::InvalidDomain("b\u{fc}cher.test".into()))]
    #[case::gr_not_utf8("sip:a@x.test;gr=%C3", AddressError::NotUtf8("resourcepart"))]
    fn sip_to_jid_errors(#[case] uri: &str, #[case] err: AddressError) {
        assert_eq!(sip_to_jid(uri), Err(err));
    }

    // RFC 7247 §6.5 / catalogue ADDR-05, ADDR-07 examples; every character of the §6.5
    // sip: set and of the im:/pres: set.
    #[rstest]
    #[case::unescape_amp("m\\26m@xmpp.test", Scheme::Sip, "sip:m&m@xmpp.test")]
    #[case::unescape_apos("o\\27malley@xmpp.test", Scheme::Sip, "sip:o'malley@xmpp.test")]
    #[case::unescape_slash("x\\2fy@xmpp.test", Scheme::Sip, "sip:x/y@xmpp.test")]
    #[case::unescape_space("a\\20b@xmpp.test", Scheme::Sip, "sip:a%20b@xmpp.test")]
    #[case::unescape_at("a\\40b@xmpp.test", Scheme::Sip, "sip:a%40b@xmpp.test")]
    #[case::utf8("tsch\u{fc}ss@xmpp.test", Scheme::Sip, "sip:tsch%C3%BCss@xmpp.test")]
    #[case::hash("a#b@xmpp.test", Scheme::Sip, "sip:a%23b@xmpp.test")]
    #[case::percent("a%b@xmpp.test", Scheme::Sip, "sip:a%25b@xmpp.test")]
    #[case::lbracket("a[b@xmpp.test", Scheme::Sip, "sip:a%5Bb@xmpp.test")]
    #[case::backslash("a\\b@xmpp.test", Scheme::Sip, "sip:a%5Cb@xmpp.test")]
    #[case::rbracket("a]b@xmpp.test", Scheme::Sip, "sip:a%5Db@xmpp.test")]
    #[case::caret("a^b@xmpp.test", Scheme::Sip, "sip:a%5Eb@xmpp.test")]
    #[case::backtick("a`b@xmpp.test", Scheme::Sip, "sip:a%60b@xmpp.test")]
    #[case::lbrace("a{b@xmpp.test", Scheme::Sip, "sip:a%7Bb@xmpp.test")]
    #[case::pipe("a|b@xmpp.test", Scheme::Sip, "sip:a%7Cb@xmpp.test")]
    #[case::rbrace("a}b@xmpp.test", Scheme::Sip, "sip:a%7Db@xmpp.test")]
    #[case::sip_keeps_dot("a.b(c),d;e@xmpp.test", Scheme::Sip, "sip:a.b(c),d;e@xmpp.test")]
    #[case::sips("juliet@xmpp.test", Scheme::Sips, "sips:juliet@xmpp.test")]
    #[case::gruu(
        "juliet@xmpp.test/balcony",
        Scheme::Sip,
        "sip:juliet@xmpp.test;gr=balcony"
    )]
    #[case::gruu_utf8(
        "juliet@xmpp.test/b\u{e4}r x",
        Scheme::Sip,
        "sip:juliet@xmpp.test;gr=b%C3%A4r%20x"
    )]
    #[case::im_lparen("a(b@xmpp.test", Scheme::Im, "im:a%28b@xmpp.test")]
    #[case::im_rparen("a)b@xmpp.test", Scheme::Im, "im:a%29b@xmpp.test")]
    #[case::im_comma("a,b@xmpp.test", Scheme::Im, "im:a%2Cb@xmpp.test")]
    #[case::im_dot("a.b@xmpp.test", Scheme::Pres, "pres:a%2Eb@xmpp.test")]
    #[case::im_semicolon("a;b@xmpp.test", Scheme::Im, "im:a%3Bb@xmpp.test")]
    #[case::im_lbracket("a[b@xmpp.test", Scheme::Im, "im:a%5Bb@xmpp.test")]
    #[case::im_backslash("a\\b@xmpp.test", Scheme::Im, "im:a%5Cb@xmpp.test")]
    #[case::im_rbracket("a]b@xmpp.test", Scheme::Im, "im:a%5Db@xmpp.test")]
    #[case::im_keeps_atext("a#b{c}@xmpp.test", Scheme::Pres, "pres:a#b{c}@xmpp.test")]
    #[case::im_utf8("\u{fc}@xmpp.test", Scheme::Im, "im:%C3%BC@xmpp.test")]
    #[case::domain_only("xmpp.test", Scheme::Sip, "sip:xmpp.test")]
    fn jid_to_sip_table(#[case] j: &str, #[case] scheme: Scheme, #[case] expected: &str) {
        assert_eq!(jid_to_sip(&jid(j), scheme), Ok(expected.to_owned()));
    }

    #[rstest]
    #[case::raw_amp(
        JidParts::new(Some("a&b"), "x.test", None),
        Scheme::Sip,
        AddressError::ForbiddenInLocalpart('&')
    )]
    #[case::raw_at(
        JidParts::new(Some("a@b"), "x.test", None),
        Scheme::Sip,
        AddressError::ForbiddenInLocalpart('@')
    )]
    #[case::empty_local(
        JidParts::new(Some(""), "x.test", None),
        Scheme::Sip,
        AddressError::EmptyLocalpart
    )]
    #[case::bad_domain(JidParts::new(Some("a"), "x y", None), Scheme::Sip, AddressError::InvalidDomain("x y".into()))]
    #[case::im_resource(
        JidParts::new(Some("a"), "x.test", Some("r")),
        Scheme::Im,
        AddressError::ResourceNotRepresentable(Scheme::Im)
    )]
    #[case::control(
        JidParts::new(Some("a\u{7}"), "x.test", None),
        Scheme::Sip,
        AddressError::ControlCharacter("localpart")
    )]
    fn jid_to_sip_errors(#[case] j: JidParts, #[case] scheme: Scheme, #[case] err: AddressError) {
        assert_eq!(jid_to_sip(&j, scheme), Err(err));
    }

    /// Characters for the ADDR-08 round trips: every escape-table row, every
    /// percent-encoded set member, and a few UTF-8 strings.
    const ROUND_TRIP_USERS: &[&str] = &[
        "plain",
        "a b",
        "a\"b",
        "a&b",
        "a'b",
        "a/b",
        "a:b",
        "a<b",
        "a>b",
        "a@b",
        "a\\b",
        "a\\26b",
        "a\\5cb",
        "\\",
        "a#b",
        "a%b",
        "a[b",
        "a]b",
        "a^b",
        "a`b",
        "a{b",
        "a|b",
        "a}b",
        "a(b)c",
        "a,b",
        "a.b",
        "a;b",
        "a?b",
        "f\u{fc}",
        "tsch\u{fc}ss",
        "\u{10d}e\u{161}tina",
        "\u{65e5}\u{672c}",
        "\u{1f600}",
        "&'/",
    ];

    #[test]
    fn sip_jid_sip_round_trip_is_stable() {
        for scheme in [Scheme::Sip, Scheme::Im, Scheme::Pres] {
            for user in ROUND_TRIP_USERS {
                let keep = match scheme {
                    Scheme::Im | Scheme::Pres => impres_user_keep,
                    _ => sip_user_keep,
                };
                let uri = format!("{}:{}@x.test", scheme.as_str(), percent_encode(user, keep));
                let j = sip_to_jid(&uri).expect("sip->jid");
                let back = jid_to_sip(&j, scheme).expect("jid->sip");
                assert_eq!(back, uri, "user {user:?}");
                assert_eq!(sip_to_jid(&back), Ok(j), "user {user:?}");
            }
        }
    }

    #[test]
    fn jid_sip_jid_round_trip_is_stable() {
        for user in ROUND_TRIP_USERS {
            // A valid JID localpart is the escaped form of the raw string.
            let local = escape_localpart(user);
            for res in [None, Some("balcony"), Some("b\u{e4}r x;y=z")] {
                let j = JidParts::new(Some(&local), "x.test", res);
                for scheme in [Scheme::Sip, Scheme::Im, Scheme::Pres] {
                    if res.is_some() && scheme != Scheme::Sip {
                        continue;
                    }
                    let uri = jid_to_sip(&j, scheme).expect("jid->sip");
                    assert_eq!(sip_to_jid(&uri).as_ref(), Ok(&j), "{user:?} via {uri}");
                }
            }
        }
    }

    #[test]
    fn escape_is_inverse_of_unescape_for_every_table_row() {
        for (ch, code) in ESCAPES {
            let raw = format!("x{ch}{code}y");
            assert_eq!(unescape_localpart(&escape_localpart(&raw)), raw);
        }
    }

    #[test]
    fn jid_parse_splits_parts() {
        let j = jid("a@Example.COM./r/s@t");
        assert_eq!(j.local.as_deref(), Some("a"));
        assert_eq!(j.domain, "example.com");
        assert_eq!(j.resource.as_deref(), Some("r/s@t"));
        assert!(j.is_full());
        assert_eq!(j.bare().to_string(), "a@example.com");
        assert_eq!(JidParts::parse("@x"), Err(AddressError::EmptyLocalpart));
        assert_eq!(JidParts::parse("x/"), Err(AddressError::EmptyResource));
        assert_eq!(JidParts::parse(""), Err(AddressError::Empty));
        let long = format!("{}@x", "a".repeat(1024));
        assert_eq!(
            JidParts::parse(&long),
            Err(AddressError::TooLong("localpart"))
        );
    }
}
