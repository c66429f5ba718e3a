//! Strict SIP message parser (RFC 3261 §7, §25).
//!
//! The parser works on a complete message head (start line and headers up to and
//! including the empty line); framing — where a message ends on UDP or TCP — is
//! [`super::framing`]'s job. Lines end in CRLF only (RFC 3261 §7: "start-line,
//! message-header, CRLF"); a bare LF or CR is an error rather than a guess, since the
//! harness must notice peers that get framing wrong.
//!
//! ```text
//! generic-message = start-line *message-header CRLF [ message-body ]
//! start-line      = Request-Line / Status-Line
//! Request-Line    = Method SP Request-URI SP SIP-Version CRLF
//! Status-Line     = SIP-Version SP Status-Code SP Reason-Phrase CRLF
//! message-header  = header-name HCOLON header-value *(COMMA header-value) CRLF
//! HCOLON          = *( SP / HTAB ) ":" SWS
//! LWS             = [*WSP CRLF] 1*WSP   ; a line starting with WSP continues the previous
//! ```

use super::message::{Headers, Message, Method, Request, Response, Uri, Version};

/// Size limits for one message. RFC 3261 sets none; these bound memory against hostile
/// peers and are well above anything an IM/presence peer sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Whole message: start line, headers and body, as on the wire.
    pub max_message_bytes: usize,
    /// One logical header (name, colon and value, continuation lines included).
    pub max_header_bytes: usize,
    /// Header lines in one message.
    pub max_headers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_bytes: 64 * 1024,
            max_header_bytes: 8 * 1024,
            max_headers: 128,
        }
    }
}

/// What is wrong with a start line (RFC 3261 §7.1, §7.2, §25.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartLineError {
    /// The message begins with an empty line.
    Empty,
    /// Not three space-separated parts.
    MissingPart,
    /// The method is not a `token`.
    BadMethod,
    /// The Request-URI has no scheme or contains whitespace or brackets.
    BadUri,
    /// Not `SIP/x.y`.
    BadVersion,
    /// The status code is not three digits in 100..=699.
    BadStatusCode,
    /// The reason phrase holds a control character (RFC 3261 §25.1 `Reason-Phrase`).
    BadReasonPhrase,
}

/// Which text part was not valid UTF-8 (RFC 3261 §7.3.1: header text is UTF-8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextPart {
    StartLine,
    /// A header line, numbered from 1 = the start line.
    HeaderLine(usize),
}

/// A message that breaks RFC 3261 framing or syntax. Each variant names the rule.
/// Line numbers count from 1 = the start line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("message truncated before the empty line that ends the headers (RFC 3261 §7)")]
    Truncated,
    #[error("bad start line: {0:?} (RFC 3261 §7.1, §7.2)")]
    BadStartLine(StartLineError),
    #[error("line {line}: line ends in a bare LF or CR, not CRLF (RFC 3261 §7)")]
    BadLineEnding { line: usize },
    #[error("line {line}: header line without a colon (RFC 3261 §7.3.1)")]
    HeaderWithoutColon { line: usize },
    #[error("line {line}: header name is not a token (RFC 3261 §25.1)")]
    BadHeaderName { line: usize },
    #[error("line {line}: continuation line with no header before it (RFC 3261 §7.3.1)")]
    ContinuationWithoutHeader { line: usize },
    #[error("line {line}: control character in a header value (RFC 3261 §25.1)")]
    ControlCharacter { line: usize },
    #[error("line {line}: header larger than {limit} bytes")]
    HeaderTooLarge { line: usize, limit: usize },
    #[error("more than {limit} header lines")]
    TooManyHeaders { limit: usize },
    #[error("message larger than {limit} bytes")]
    MessageTooLarge { limit: usize },
    #[error("{0:?} is not valid UTF-8 (RFC 3261 §7.3.1)")]
    NonUtf8(TextPart),
    #[error("Content-Length {value:?} is not 1*DIGIT (RFC 3261 §20.14)")]
    BadContentLength { value: String },
    #[error("Content-Length appears more than once (RFC 3261 §20.14)")]
    DuplicateContentLength,
    #[error("Content-Length missing on a stream transport (RFC 3261 §18.3, §20.14)")]
    MissingContentLength,
    #[error("body has {available} bytes, Content-Length says {declared} (RFC 3261 §18.3)")]
    BodyShorterThanContentLength { declared: usize, available: usize },
}

/// The start line, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StartLine {
    Request {
        method: Method,
        uri: Uri,
        version: Version,
    },
    Status {
        version: Version,
        status: u16,
        reason: String,
    },
}

/// A parsed message head: everything but the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Head {
    pub start: StartLine,
    pub headers: Headers,
    /// The Content-Length value, when the header is present.
    pub content_length: Option<usize>,
}

impl Head {
    pub fn into_message(self, body: Vec<u8>) -> Message {
        match self.start {
            StartLine::Request {
                method,
                uri,
                version,
            } => Message::Request(Request {
                method,
                uri,
                version,
                headers: self.headers,
                body,
            }),
            StartLine::Status {
                version,
                status,
                reason,
            } => Message::Response(Response {
                version,
                status,
                reason,
                headers: self.headers,
                body,
            }),
        }
    }
}

/// Position just past the first CRLFCRLF in `buf`, searching from `from`.
pub(crate) fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    buf.get(from..)?
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| from + i + 4)
}

/// Parses a head: `buf` is the start line and headers through the empty line (the
/// terminating CRLFCRLF included).
pub(crate) fn parse_head(buf: &[u8], limits: &Limits) -> Result<Head, ParseError> {
    let text = buf.strip_suffix(b"\r\n\r\n").ok_or(ParseError::Truncated)?;
    let mut lines = Vec::new();
    let mut rest = text;
    // Split at CRLF; any other CR or LF is a framing error (RFC 3261 §7).
    loop {
        let n = lines.len() + 1;
        match rest.iter().position(|&b| b == b'\r' || b == b'\n') {
            None => {
                lines.push(rest);
                break;
            }
            Some(i) => {
                if rest.get(i) != Some(&b'\r') || rest.get(i + 1) != Some(&b'\n') {
                    return Err(ParseError::BadLineEnding { line: n });
                }
                lines.push(rest.get(..i).unwrap_or_default());
                rest = rest.get(i + 2..).unwrap_or_default();
            }
        }
    }
    let mut iter = lines.into_iter();
    let first = iter.next().unwrap_or_default();
    let start = parse_start_line(first)?;

    let mut headers = Headers::new();
    // (line number, name, value) of the header being assembled, so folding can extend it.
    let mut current: Option<(usize, String, String)> = None;
    let mut count = 0usize;
    for (index, raw) in iter.enumerate() {
        let line = index + 2;
        let text = std::str::from_utf8(raw)
            .map_err(|_| ParseError::NonUtf8(TextPart::HeaderLine(line)))?;
        if text.chars().any(|c| c.is_control() && c != '\t') {
            return Err(ParseError::ControlCharacter { line });
        }
        if text.starts_with([' ', '\t']) {
            // LWS continuation: the line break and leading whitespace become one SP
            // (RFC 3261 §7.3.1).
            let Some((first_line, name, value)) = current.as_mut() else {
                return Err(ParseError::ContinuationWithoutHeader { line });
            };
            let more = text.trim_matches([' ', '\t']);
            if !more.is_empty() {
                if !value.is_empty() {
                    value.push(' ');
                }
                value.push_str(more);
            }
            if name.len() + 1 + value.len() > limits.max_header_bytes {
                return Err(ParseError::HeaderTooLarge {
                    line: *first_line,
                    limit: limits.max_header_bytes,
                });
            }
            continue;
        }
        if let Some((_, name, value)) = current.take() {
            headers.push(name, value);
        }
        count += 1;
        if count > limits.max_headers {
            return Err(ParseError::TooManyHeaders {
                limit: limits.max_headers,
            });
        }
        let Some((name, value)) = text.split_once(':') else {
            return Err(ParseError::HeaderWithoutColon { line });
        };
        // HCOLON allows whitespace between the name and the colon.
        let name = name.trim_end_matches([' ', '\t']);
        if !super::message::is_token(name) {
            return Err(ParseError::BadHeaderName { line });
        }
        let value = value.trim_matches([' ', '\t']);
        if name.len() + 1 + value.len() > limits.max_header_bytes {
            return Err(ParseError::HeaderTooLarge {
                line,
                limit: limits.max_header_bytes,
            });
        }
        current = Some((line, name.to_owned(), value.to_owned()));
    }
    if let Some((_, name, value)) = current.take() {
        headers.push(name, value);
    }

    let content_length = {
        let mut lengths = headers.get_all("Content-Length");
        match (lengths.next(), lengths.next()) {
            (None, _) => None,
            (Some(_), Some(_)) => return Err(ParseError::DuplicateContentLength),
            (Some(v), None) => {
                let parsed = (!v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| v.parse::<usize>().ok())
                    .flatten();
                Some(parsed.ok_or_else(|| ParseError::BadContentLength {
                    value: v.to_owned(),
                })?)
            }
        }
    };
    Ok(Head {
        start,
        headers,
        content_length,
    })
}

fn parse_start_line(raw: &[u8]) -> Result<StartLine, ParseError> {
    use StartLineError as E;
    if raw.is_empty() {
        return Err(ParseError::BadStartLine(E::Empty));
    }
    let line = std::str::from_utf8(raw).map_err(|_| ParseError::NonUtf8(TextPart::StartLine))?;
    let mut parts = line.splitn(3, ' ');
    let (Some(a), Some(b), Some(c)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(ParseError::BadStartLine(E::MissingPart));
    };
    let bad = |e| Err(ParseError::BadStartLine(e));
    if a.len() > 4 && a.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("SIP/")) {
        // Status-Line: the reason phrase may contain spaces and UTF-8, but no controls.
        let Some(version) = Version::parse(a) else {
            return bad(E::BadVersion);
        };
        let status = (b.len() == 3 && b.bytes().all(|d| d.is_ascii_digit()))
            .then(|| b.parse::<u16>().ok())
            .flatten()
            .filter(|s| (100..=699).contains(s));
        let Some(status) = status else {
            return bad(E::BadStatusCode);
        };
        if c.chars().any(|ch| ch.is_control() && ch != '\t') {
            return bad(E::BadReasonPhrase);
        }
        return Ok(StartLine::Status {
            version,
            status,
            reason: c.to_owned(),
        });
    }
    let Some(method) = Method::parse(a) else {
        return bad(E::BadMethod);
    };
    let Some(uri) = Uri::parse(b) else {
        return bad(E::BadUri);
    };
    let Some(version) = Version::parse(c) else {
        return bad(E::BadVersion);
    };
    Ok(StartLine::Request {
        method,
        uri,
        version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::names_equal;
    use rstest::rstest;

    fn head(s: &str) -> Result<Head, ParseError> {
        parse_head(s.as_bytes(), &Limits::default())
    }

    #[rstest]
    #[case("\r\n\r\n", StartLineError::Empty)]
    #[case("MESSAGE sip:a@b\r\n\r\n", StartLineError::MissingPart)]
    #[case("MES(SAGE sip:a@b SIP/2.0\r\n\r\n", StartLineError::BadMethod)]
    #[case("MESSAGE a@b SIP/2.0\r\n\r\n", StartLineError::BadUri)]
    #[case("MESSAGE  sip:a@b SIP/2.0\r\n\r\n", StartLineError::BadUri)]
    #[case("MESSAGE sip:a@b SIP/2.0 \r\n\r\n", StartLineError::BadVersion)]
    #[case("MESSAGE sip:a@b HTTP/1.1\r\n\r\n", StartLineError::BadVersion)]
    #[case("SIP/2.0 20 OK\r\n\r\n", StartLineError::BadStatusCode)]
    #[case("SIP/2.0 700 Odd\r\n\r\n", StartLineError::BadStatusCode)]
    #[case("SIP/2.0 099 Odd\r\n\r\n", StartLineError::BadStatusCode)]
    #[case("SIP/2.0 200\r\n\r\n", StartLineError::MissingPart)]
    #[case("SIP/2.x 200 OK\r\n\r\n", StartLineError::BadVersion)]
    #[case("SIP/2.0 200 O\x01K\r\n\r\n", StartLineError::BadReasonPhrase)]
    fn bad_start_lines(#[case] input: &str, #[case] e: StartLineError) {
        assert_eq!(head(input), Err(ParseError::BadStartLine(e)));
    }

    #[rstest]
    #[case("OPTIONS sip:a@b SIP/2.0\r\nVia x\r\n\r\n", ParseError::HeaderWithoutColon { line: 2 })]
    #[case("OPTIONS sip:a@b SIP/2.0\r\nV(a: x\r\n\r\n", ParseError::BadHeaderName { line: 2 })]
    #[case("OPTIONS sip:a@b SIP/2.0\r\n: x\r\n\r\n", ParseError::BadHeaderName { line: 2 })]
    #[case("OPTIONS sip:a@b SIP/2.0\r\n x\r\n\r\n", ParseError::ContinuationWithoutHeader { line: 2 })]
    #[case("OPTIONS sip:a@b SIP/2.0\r\nA: b\nC: d\r\n\r\n", ParseError::BadLineEnding { line: 2 })]
    #[case("OPTIONS sip:a@b SIP/2.0\rA: b\r\n\r\n", ParseError::BadLineEnding { line: 1 })]
    #[case("OPTIONS sip:a@b SIP/2.0\r\nA: b\0c\r\n\r\n", ParseError::ControlCharacter { line: 2 })]
    #[case(
        "OPTIONS sip:a@b SIP/2.0\r\nl: 1\r\nContent-Length: 1\r\n\r\n",
        ParseError::DuplicateContentLength
    )]
    #[case(
        "OPTIONS sip:a@b SIP/2.0\r\nl: 1\r\nl: 1\r\n\r\n",
        ParseError::DuplicateContentLength
    )]
    #[case("OPTIONS sip:a@b SIP/2.0\r\nContent-Length: -1\r\n\r\n", ParseError::BadContentLength { value: "-1".into() })]
    #[case("OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 1 2\r\n\r\n", ParseError::BadContentLength { value: "1 2".into() })]
    #[case("OPTIONS sip:a@b SIP/2.0\r\nContent-Length:\r\n\r\n", ParseError::BadContentLength { value: "".into() })]
    #[case("OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 99999999999999999999999\r\n\r\n", ParseError::BadContentLength { value: "99999999999999999999999".into() })]
    #[case("OPTIONS sip:a@b SIP/2.0\r\n", ParseError::Truncated)]
    fn bad_heads(#[case] input: &str, #[case] e: ParseError) {
        assert_eq!(head(input), Err(e));
    }

    #[test]
    fn non_utf8_is_located() {
        let mut bad = b"OPTIONS sip:a@b SIP/2.0\r\nSubject: caf".to_vec();
        bad.extend_from_slice(&[0xE9, b'\r', b'\n', b'\r', b'\n']);
        assert_eq!(
            parse_head(&bad, &Limits::default()),
            Err(ParseError::NonUtf8(TextPart::HeaderLine(2)))
        );
        let bad = [b'O', 0xFF, b' ', b'\r', b'\n', b'\r', b'\n'];
        assert_eq!(
            parse_head(&bad, &Limits::default()),
            Err(ParseError::NonUtf8(TextPart::StartLine))
        );
    }

    #[test]
    fn utf8_header_text_is_allowed() {
        let h = head("MESSAGE sip:a@b SIP/2.0\r\nSubject: Grüße\r\n\r\n").expect("parses");
        assert_eq!(h.headers.get("s"), Some("Grüße"));
    }

    #[test]
    fn limits() {
        let limits = Limits {
            max_message_bytes: 1000,
            max_header_bytes: 20,
            max_headers: 2,
        };
        let parse = |s: &str| parse_head(s.as_bytes(), &limits);
        assert_eq!(
            parse("OPTIONS sip:a@b SIP/2.0\r\nSubject: 0123456789abc\r\n\r\n"),
            Err(ParseError::HeaderTooLarge { line: 2, limit: 20 })
        );
        assert_eq!(
            parse("OPTIONS sip:a@b SIP/2.0\r\nSubject: 0123\r\n 456789abc\r\n\r\n"),
            Err(ParseError::HeaderTooLarge { line: 2, limit: 20 })
        );
        assert_eq!(
            parse("OPTIONS sip:a@b SIP/2.0\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n"),
            Err(ParseError::TooManyHeaders { limit: 2 })
        );
        assert!(parse("OPTIONS sip:a@b SIP/2.0\r\nA: 1\r\nB: 2\r\n\r\n").is_ok());
    }

    #[test]
    fn folding_collapses_to_one_space() {
        let h = head(concat!(
            "NOTIFY sip:a@b SIP/2.0\r\n",
            "Subject: I know you're there,\r\n",
            "   pick up the phone\r\n",
            "\t and talk to me!\r\n",
            "Via : SIP/2.0/UDP h\r\n",
            "\r\n"
        ))
        .expect("parses");
        assert_eq!(
            h.headers.get("Subject"),
            Some("I know you're there, pick up the phone and talk to me!")
        );
        assert_eq!(h.headers.get("v"), Some("SIP/2.0/UDP h"));
    }

    #[test]
    fn status_line_reason_may_be_empty_or_spaced() {
        let h = head("SIP/2.0 404 \r\n\r\n").expect("parses");
        assert_eq!(
            h.start,
            StartLine::Status {
                version: Version::SIP_2_0,
                status: 404,
                reason: String::new()
            }
        );
        let h = head("SIP/2.0 486 Busy Here\r\n\r\n").expect("parses");
        assert!(matches!(h.start, StartLine::Status { ref reason, .. } if reason == "Busy Here"));
    }

    #[test]
    fn content_length_is_read_in_either_form() {
        let h = head("OPTIONS sip:a@b SIP/2.0\r\nl: 12\r\n\r\n").expect("parses");
        assert_eq!(h.content_length, Some(12));
        assert!(names_equal("l", "content-length"));
    }
}
