//! JIDs (RFC 7622): `[localpart@]domainpart[/resourcepart]`.
//!
//! This is the structural part of RFC 7622 without the PRECIS profiles: parts are split and
//! bounded, the domain is normalised as far as ASCII goes (lowercase, no trailing dot), and
//! the characters RFC 7622 excludes outright are rejected. Full Unicode case folding and
//! width mapping (RFC 8265) are not applied; comparison of non-ASCII JIDs is exact.

use std::fmt;
use std::str::FromStr;

/// RFC 7622 §3.1: each part is at most 1023 octets once encoded as UTF-8.
pub const MAX_PART_BYTES: usize = 1023;

/// RFC 7622 §3.3.1: characters a localpart must not contain (besides spaces and
/// controls, which the IdentifierClass excludes).
const LOCAL_FORBIDDEN: &[char] = &['"', '&', '\'', '/', ':', '<', '>', '@'];

/// Characters never valid in a domainpart (RFC 7622 §3.2: a DNS name, IP literal or IDN).
const DOMAIN_FORBIDDEN: &[char] = &['"', '&', '\'', '/', '<', '>', '@', '\\', '?', '#', '%', ','];

/// RFC 1035 §2.3.4 label length, which RFC 7622 §3.2 inherits.
const MAX_LABEL_BYTES: usize = 63;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Jid {
    pub local: Option<String>,
    pub domain: String,
    pub resource: Option<String>,
}

/// Which part of a JID an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Local,
    Domain,
    Resource,
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Part::Local => "localpart",
            Part::Domain => "domainpart",
            Part::Resource => "resourcepart",
        })
    }
}

/// Why a string is not a JID (maps to the `jid-malformed` stanza error, RFC 6120 §8.3.3.8).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JidError {
    #[error("empty {0}")]
    Empty(Part),
    #[error("{0} longer than 1023 bytes")]
    TooLong(Part),
    #[error("character {ch:?} not allowed in the {part}")]
    ForbiddenChar { part: Part, ch: char },
    #[error("malformed domainpart: {0}")]
    BadDomain(&'static str),
}

impl Jid {
    /// Parse and normalise (RFC 7622 §3.1): the resource is everything after the first `/`
    /// (it may itself contain `/` and `@`); the localpart is what precedes the first `@` of
    /// the rest.
    pub fn parse(s: &str) -> Result<Jid, JidError> {
        let (bare, resource) = match s.split_once('/') {
            Some((b, r)) => (b, Some(r)),
            None => (s, None),
        };
        let (local, domain) = match bare.split_once('@') {
            Some((l, d)) => (Some(l), d),
            None => (None, bare),
        };
        if let Some(l) = local {
            check_part(l, Part::Local, |c| {
                LOCAL_FORBIDDEN.contains(&c) || c.is_whitespace()
            })?;
        }
        if let Some(r) = resource {
            // RFC 7622 §3.4: the resourcepart is an OpaqueString, where ASCII space is
            // allowed; other whitespace and controls are not.
            check_part(r, Part::Resource, |c| c != ' ' && c.is_whitespace())?;
        }
        let domain = normalise_domain(domain)?;
        Ok(Jid {
            local: local.map(String::from),
            domain,
            resource: resource.map(String::from),
        })
    }

    /// A domain JID (`example.com`), normalised like [`Jid::parse`].
    pub fn from_domain(domain: &str) -> Result<Jid, JidError> {
        Ok(Jid {
            local: None,
            domain: normalise_domain(domain)?,
            resource: None,
        })
    }

    /// The JID without its resource.
    pub fn bare(&self) -> Jid {
        Jid {
            local: self.local.clone(),
            domain: self.domain.clone(),
            resource: None,
        }
    }

    pub fn domain(&self) -> &str {
        &self.domain
    }

    pub fn local(&self) -> Option<&str> {
        self.local.as_deref()
    }

    pub fn resource(&self) -> Option<&str> {
        self.resource.as_deref()
    }

    pub fn is_bare(&self) -> bool {
        self.resource.is_none()
    }

    /// The server this JID belongs to, as a JID (what S2S routing addresses, RFC 6120 §10.4).
    pub fn domain_jid(&self) -> Jid {
        Jid {
            local: None,
            domain: self.domain.clone(),
            resource: None,
        }
    }
}

/// Bounds and character checks shared by local- and resourcepart.
fn check_part(s: &str, part: Part, forbidden: impl Fn(char) -> bool) -> Result<(), JidError> {
    if s.is_empty() {
        return Err(JidError::Empty(part));
    }
    if s.len() > MAX_PART_BYTES {
        return Err(JidError::TooLong(part));
    }
    match s.chars().find(|&c| c.is_control() || forbidden(c)) {
        Some(ch) => Err(JidError::ForbiddenChar { part, ch }),
        None => Ok(()),
    }
}

/// RFC 7622 §3.2: strip one trailing dot, lowercase ASCII, check labels or an IP literal.
fn normalise_domain(d: &str) -> Result<String, JidError> {
    let d = d.strip_suffix('.').unwrap_or(d);
    check_part(d, Part::Domain, |c| {
        c.is_whitespace() || DOMAIN_FORBIDDEN.contains(&c)
    })?;
    let d = d.to_ascii_lowercase();
    if let Some(inner) = d.strip_prefix('[') {
        // RFC 3986 IP-literal (IPv6).
        let inner = inner
            .strip_suffix(']')
            .ok_or(JidError::BadDomain("unterminated IP literal"))?;
        if inner.is_empty()
            || !inner
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        {
            return Err(JidError::BadDomain("invalid IPv6 literal"));
        }
        return Ok(d);
    }
    for label in d.split('.') {
        if label.is_empty() {
            return Err(JidError::BadDomain("empty label"));
        }
        if label.len() > MAX_LABEL_BYTES {
            return Err(JidError::BadDomain("label longer than 63 bytes"));
        }
        if let Some(ch) = label.chars().find(|&c| matches!(c, '[' | ']' | ':')) {
            return Err(JidError::ForbiddenChar {
                part: Part::Domain,
                ch,
            });
        }
    }
    Ok(d)
}

impl fmt::Display for Jid {
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

impl FromStr for Jid {
    type Err = JidError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Jid::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("example.com", None, "example.com", None)]
    #[case("juliet@example.com", Some("juliet"), "example.com", None)]
    #[case(
        "juliet@example.com/balcony",
        Some("juliet"),
        "example.com",
        Some("balcony")
    )]
    #[case("example.com/foo", None, "example.com", Some("foo"))]
    #[case("Juliet@EXAMPLE.com.", Some("Juliet"), "example.com", None)]
    #[case("a@b/c@d/e", Some("a"), "b", Some("c@d/e"))]
    #[case("juliet@example.com/a b", Some("juliet"), "example.com", Some("a b"))]
    #[case(
        "carol*sip-users.test@sip.test",
        Some("carol*sip-users.test"),
        "sip.test",
        None
    )]
    #[case(
        "\u{e9}l\u{e8}ve@\u{e9}cole.example",
        Some("\u{e9}l\u{e8}ve"),
        "\u{e9}cole.example",
        None
    )]
    #[case("[::1]", None, "[::1]", None)]
    #[case("user@192.0.2.1", Some("user"), "192.0.2.1", None)]
    fn parses(
        #[case] s: &str,
        #[case] local: Option<&str>,
        #[case] domain: &str,
        #[case] resource: Option<&str>,
    ) {
        let j = Jid::parse(s).unwrap();
        assert_eq!(
            (j.local(), j.domain(), j.resource()),
            (local, domain, resource)
        );
        assert_eq!(j.is_bare(), resource.is_none());
        // Display then parse is the identity on the normalised JID.
        assert_eq!(Jid::parse(&j.to_string()), Ok(j.clone()));
        assert_eq!(s.parse::<Jid>(), Ok(j));
    }

    #[rstest]
    #[case("", JidError::Empty(Part::Domain))]
    #[case("@example.com", JidError::Empty(Part::Local))]
    #[case("juliet@", JidError::Empty(Part::Domain))]
    #[case("juliet@example.com/", JidError::Empty(Part::Resource))]
    #[case("/res", JidError::Empty(Part::Domain))]
    #[case(".", JidError::Empty(Part::Domain))]
    #[case("a b@example.com", JidError::ForbiddenChar { part: Part::Local, ch: ' ' })]
    #[case("a\"b@example.com", JidError::ForbiddenChar { part: Part::Local, ch: '"' })]
    #[case("a&b@example.com", JidError::ForbiddenChar { part: Part::Local, ch: '&' })]
    #[case("a'b@example.com", JidError::ForbiddenChar { part: Part::Local, ch: '\'' })]
    #[case("a:b@example.com", JidError::ForbiddenChar { part: Part::Local, ch: ':' })]
    #[case("a<b@example.com", JidError::ForbiddenChar { part: Part::Local, ch: '<' })]
    #[case("a>b@example.com", JidError::ForbiddenChar { part: Part::Local, ch: '>' })]
    #[case("a@b@example.com", JidError::ForbiddenChar { part: Part::Domain, ch: '@' })]
    #[case("exa mple.com", JidError::ForbiddenChar { part: Part::Domain, ch: ' ' })]
    #[case("example.com/a\u{7}", JidError::ForbiddenChar { part: Part::Resource, ch: '\u{7}' })]
    #[case("example.com/a\tb", JidError::ForbiddenChar { part: Part::Resource, ch: '\t' })]
    #[case("a\u{0}@example.com", JidError::ForbiddenChar { part: Part::Local, ch: '\u{0}' })]
    #[case("example..com", JidError::BadDomain("empty label"))]
    #[case("example.com..", JidError::BadDomain("empty label"))]
    #[case("[::1", JidError::BadDomain("unterminated IP literal"))]
    #[case("[zz]", JidError::BadDomain("invalid IPv6 literal"))]
    #[case("host:5269", JidError::ForbiddenChar { part: Part::Domain, ch: ':' })]
    fn rejects(#[case] s: &str, #[case] want: JidError) {
        assert_eq!(Jid::parse(s), Err(want));
    }

    #[rstest]
    #[case::local(Part::Local)]
    #[case::domain(Part::Domain)]
    #[case::resource(Part::Resource)]
    fn part_length_limit(#[case] part: Part) {
        let ok = "a".repeat(MAX_PART_BYTES);
        let long = "a".repeat(MAX_PART_BYTES + 1);
        let build = |p: &str| match part {
            Part::Local => format!("{p}@example.com"),
            Part::Domain => (0..p.len() / 60 + 1)
                .map(|_| "a".repeat(59))
                .collect::<Vec<_>>()
                .join(".")[..p.len()]
                .to_string(),
            Part::Resource => format!("example.com/{p}"),
        };
        assert!(Jid::parse(&build(&ok)).is_ok(), "{part} of 1023 bytes");
        assert_eq!(Jid::parse(&build(&long)), Err(JidError::TooLong(part)));
    }

    #[test]
    fn accessors() {
        let j = Jid::parse("juliet@Example.COM/balcony").unwrap();
        assert_eq!(j.to_string(), "juliet@example.com/balcony");
        assert_eq!(j.bare().to_string(), "juliet@example.com");
        assert!(j.bare().is_bare());
        assert!(!j.is_bare());
        assert_eq!(j.domain_jid().to_string(), "example.com");
        assert_eq!(Jid::from_domain("Example.com."), Ok(j.domain_jid()));
    }
}
