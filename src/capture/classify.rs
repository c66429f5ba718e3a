//! What a flow carries, judged from its first bytes, and where STARTTLS switched it to TLS.
//!
//! Port numbers are not used: a gateway under test may listen anywhere.

use super::{Chunk, Payload, Side};

/// How many of the first speaker's bytes are looked at.
const LOOK: usize = 1024;

/// Starts of an XML stream (RFC 6120 §4.2, XEP-0114 §3): the declaration or the stream
/// header (any prefix, hence bare `<stream`), and — for flows the capture joined
/// mid-stream — the first-level elements that can follow it.
const XML_STARTS: &[&[u8]] = &[
    b"<?xml",
    b"<stream",
    b"<message",
    b"<presence",
    b"<iq",
    b"<db:result",
    b"<db:verify",
    b"</stream:stream>",
];

/// TLS record header (RFC 8446 §5.1): handshake content type, legacy version 3.x.
fn is_tls_record(b: &[u8]) -> bool {
    matches!(b, [0x16, 0x03, 0x00..=0x04, ..])
}

/// RFC 3261 §25.1 `token` characters, for the request method.
fn is_token(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&c)
}

/// RFC 3261 §7.1 request line (`Method SP Request-URI SP SIP/2.0`) or §7.2 status line
/// (`SIP/2.0 SP 3DIGIT SP`).
fn is_sip(b: &[u8]) -> bool {
    if let Some(rest) = b.strip_prefix(b"SIP/2.0 ") {
        return matches!(rest, [a, b, c, ..] if a.is_ascii_digit() && b.is_ascii_digit() && c.is_ascii_digit());
    }
    let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
        return false;
    };
    let line = b.get(..eol).unwrap_or_default();
    let mut parts = line.split(|&c| c == b' ');
    let (Some(method), Some(uri), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    !method.is_empty()
        && method.iter().all(|&c| is_token(c))
        && !uri.is_empty()
        && version == b"SIP/2.0"
}

/// The first side to send anything but whitespace, and its first bytes (up to [`LOOK`]),
/// leading whitespace (SIP keep-alive CRLFs, RFC 5626 §3.5.1) removed.
fn first_words(chunks: &[Chunk]) -> Option<Vec<u8>> {
    let is_blank = |b: &[u8]| b.iter().all(|c| c.is_ascii_whitespace());
    let first = chunks.iter().find(|c| !is_blank(&c.bytes))?;
    let side: Side = first.from;
    let mut out = Vec::new();
    for c in chunks.iter().filter(|c| c.from == side) {
        out.extend_from_slice(&c.bytes);
        if out.len() >= LOOK {
            break;
        }
    }
    let start = out
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(out.len());
    out.drain(..start);
    out.truncate(LOOK);
    Some(out)
}

/// Classifies a flow from its chunks.
pub fn classify(chunks: &[Chunk]) -> Payload {
    let Some(words) = first_words(chunks) else {
        return Payload::Unknown;
    };
    if is_tls_record(&words) {
        return Payload::Tls;
    }
    // A UTF-8 byte order mark may precede the XML declaration.
    let xml = words.strip_prefix(b"\xef\xbb\xbf").unwrap_or(&words);
    if XML_STARTS.iter().any(|s| xml.starts_with(s)) {
        return Payload::Xmpp;
    }
    if is_sip(&words) {
        return Payload::Sip;
    }
    Payload::Unknown
}

/// The TLS namespace of `<proceed/>` (RFC 6120 §5.4.2.3).
const TLS_NS: &[u8] = b"urn:ietf:params:xml:ns:xmpp-tls";

/// Whether `b` holds a `<proceed>` element (with any prefix) in the TLS namespace. One pass:
/// each tag is scanned once (a `<` inside a tag cannot be well-formed XML anyway).
fn has_proceed(b: &[u8]) -> bool {
    let mut from = 0;
    while let Some(rel) = b
        .get(from..)
        .and_then(|s| s.iter().position(|&c| c == b'<'))
    {
        let start = from + rel + 1;
        let Some(len) = b
            .get(start..)
            .and_then(|s| s.iter().position(|&c| c == b'>'))
        else {
            return false;
        };
        let tag = b.get(start..start + len).unwrap_or_default();
        let name_len = tag
            .iter()
            .position(|c| c.is_ascii_whitespace() || *c == b'/')
            .unwrap_or(tag.len());
        let name = tag.get(..name_len).unwrap_or_default();
        let local = name.rsplit(|&c| c == b':').next().unwrap_or_default();
        if local == b"proceed" && tag.windows(TLS_NS.len()).any(|w| w == TLS_NS) {
            return true;
        }
        from = start + len + 1;
    }
    false
}

/// For an XML stream: the index of the first chunk of TLS records after the chunk carrying
/// `<proceed/>` (RFC 6120 §5.4.3.3: both sides start TLS right after it). `None` when there
/// is no STARTTLS, or no TLS record followed.
pub fn starttls_from(chunks: &[Chunk]) -> Option<usize> {
    let proceed = chunks.iter().position(|c| has_proceed(&c.bytes))?;
    chunks
        .iter()
        .enumerate()
        .skip(proceed + 1)
        .find(|(_, c)| is_tls_record(&c.bytes))
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use std::time::Duration;

    fn chunk(from: Side, b: &[u8]) -> Chunk {
        Chunk {
            at: Duration::ZERO,
            from,
            bytes: b.to_vec(),
        }
    }

    #[rstest]
    #[case(b"<?xml version='1.0'?><stream:stream>", Payload::Xmpp)]
    #[case(b"\xef\xbb\xbf<?xml version='1.0'?>", Payload::Xmpp)]
    #[case(b"<stream:stream xmlns='jabber:server'>", Payload::Xmpp)]
    #[case(b"<stream xmlns='http://etherx.jabber.org/streams'>", Payload::Xmpp)]
    #[case(
        b"\r\n\r\nMESSAGE sip:bob@example.net SIP/2.0\r\nVia: x\r\n",
        Payload::Sip
    )]
    #[case(b"SIP/2.0 200 OK\r\n", Payload::Sip)]
    #[case(b"SIP/2.0 OK\r\n", Payload::Unknown)]
    #[case(b"GET / HTTP/1.1\r\n", Payload::Unknown)]
    #[case(b"MESSAGE sip:bob@example.net SIP/2.0", Payload::Unknown)]
    #[case(b"\x16\x03\x01\x02\x00\x01", Payload::Tls)]
    #[case(b"\x17\x03\x03\x00\x10", Payload::Unknown)]
    #[case(b"   ", Payload::Unknown)]
    fn classifies(#[case] first: &[u8], #[case] want: Payload) {
        assert_eq!(classify(&[chunk(Side::Initiator, first)]), want);
    }

    #[test]
    fn first_speaker_across_chunks() {
        let c = [
            chunk(Side::Initiator, b"\r\n"),
            chunk(Side::Responder, b"SIP/2.0 "),
            chunk(Side::Initiator, b"junk"),
            chunk(Side::Responder, b"180 Ringing\r\n"),
        ];
        assert_eq!(classify(&c), Payload::Sip);
        assert_eq!(classify(&[]), Payload::Unknown);
    }

    #[test]
    fn starttls() {
        let c = [
            chunk(Side::Initiator, b"<?xml version='1.0'?><stream:stream><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"),
            chunk(Side::Responder, b"<stream:stream><proceed xmlns=\"urn:ietf:params:xml:ns:xmpp-tls\"/>"),
            chunk(Side::Initiator, b"\x16\x03\x01\x00\x05hello"),
            chunk(Side::Responder, b"\x16\x03\x03\x00\x05hello"),
        ];
        assert_eq!(starttls_from(&c), Some(2));
        assert_eq!(starttls_from(&c[..2]), None);
        let failure = [
            chunk(
                Side::Responder,
                b"<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
            ),
            chunk(Side::Initiator, b"\x16\x03\x01"),
        ];
        assert_eq!(starttls_from(&failure), None);
        let prefixed = [
            chunk(
                Side::Responder,
                b"<tls:proceed xmlns:tls='urn:ietf:params:xml:ns:xmpp-tls'/>",
            ),
            chunk(Side::Initiator, b"\x16\x03\x01"),
        ];
        assert_eq!(starttls_from(&prefixed), Some(1));
        let other_ns = [
            chunk(Side::Responder, b"<proceed xmlns='urn:example'/>"),
            chunk(Side::Initiator, b"\x16\x03\x01"),
        ];
        assert_eq!(starttls_from(&other_ns), None);
        let split = [
            chunk(
                Side::Responder,
                b"<a><<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/",
            ),
            chunk(Side::Initiator, b"\x16\x03\x01"),
        ];
        assert_eq!(starttls_from(&split), None);
        assert!(!has_proceed(
            b"<x/><<<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
        ));
        assert!(!has_proceed(&vec![b'<'; 1 << 20]));
        assert!(has_proceed(
            b"<x/> <proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
        ));
    }
}
