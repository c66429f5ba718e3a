//! SIP input that does not parse: what the gateway answers, if anything.
//!
//! RFC 3261 §18.3 asks a receiver to answer a request whose framing is wrong with
//! 400 (Bad Request) "where possible"; §21.4.1 wants the reason phrase to name the
//! problem. A response needs what §8.2.6.2 copies from the request — Via above all, since
//! that is where a UDP response goes and how the client matches it (§17.1.3) — so the
//! gateway *salvages* the head: it drops the header lines the parser complained about
//! (one at a time, a few rounds at most), every Content-Length line (the body is never
//! used), the partial last line of a truncated head, and puts a neutral request line in
//! place of a garbled one. If what remains is a request other than ACK (§17.1.1.3: an ACK
//! is never answered) with a usable Via, it gets 400 — or 513 (§21.5.7) when the message
//! or one of its headers is larger than the limit; anything else is dropped with a log line.
//!
//! The same function serves UDP datagrams and the unread bytes a [`StreamDecoder`] hands
//! back after a framing error on TCP (the driver writes the answer, then closes: §18.3
//! gives no way to find the next message boundary on a stream once framing is lost).
//! Pure and sans-IO: bytes and an error in, an optional response out.
//!
//! [`StreamDecoder`]: crate::sip::StreamDecoder

use crate::sip::builder::{RandomSource, ResponseBuilder, default_reason};
use crate::sip::message::is_token;
use crate::sip::{Item, Limits, Message, Method, ParseError, Request, Response, StartLineError};
use crate::sip::{TextPart, parse_datagram};

/// Rounds of "drop the line the parser names and try again".
const SALVAGE_ROUNDS: usize = 8;

/// The request line put in place of a garbled one: responses never echo the
/// Request-URI (RFC 3261 §8.2.6.2), so any valid URI does.
const NEUTRAL_URI: &str = "sip:invalid.invalid";

/// The status for an input that failed with `err` (RFC 3261 §18.3, §21.4.1, §21.5.7).
///
/// A message, a header line or a header count over the codec's [`Limits`] is not
/// malformed — RFC 3261 sets no such limits — it exceeds what this gateway handles, which
/// is what 513 (Message Too Large, §21.5.7: "the message length exceeded its
/// capabilities") says; 400 (§21.4.1) is for syntax that is wrong.
pub fn status_for(err: &ParseError) -> u16 {
    match err {
        ParseError::MessageTooLarge { .. }
        | ParseError::HeaderTooLarge { .. }
        | ParseError::TooManyHeaders { .. } => 513,
        _ => 400,
    }
}

/// The answer to bytes that failed to parse with `err`, or `None` when no response can
/// be formed (no request, an ACK, no usable Via, a response, nothing left of the head).
pub fn answer_unparsable(
    data: &[u8],
    err: &ParseError,
    limits: &Limits,
    rng: &mut dyn RandomSource,
) -> Option<Response> {
    let req = salvage_request(data, err, limits)?;
    if req.method == Method::Ack || req.headers.top_via().is_err() {
        return None;
    }
    let code = status_for(err);
    let reason = format!("{} ({err})", default_reason(code));
    Some(ResponseBuilder::new(&req, code).reason(reason).build(rng))
}

/// The head of `data` as lines without their CRLF, start line first: up to the empty
/// line, or — for a head cut short — up to the last complete line.
fn head_lines(data: &[u8], err: &ParseError) -> Option<Vec<Vec<u8>>> {
    let head = match data.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(end) => data.get(..end)?,
        None if matches!(err, ParseError::Truncated) => {
            let last = data.windows(2).rposition(|w| w == b"\r\n")?;
            data.get(..last)?
        }
        None => return None,
    };
    let mut lines = Vec::new();
    let mut rest = head;
    loop {
        match rest.windows(2).position(|w| w == b"\r\n") {
            Some(i) => {
                lines.push(rest.get(..i)?.to_vec());
                rest = rest.get(i + 2..)?;
            }
            None => {
                lines.push(rest.to_vec());
                break;
            }
        }
    }
    Some(lines)
}

fn is_content_length(line: &[u8]) -> bool {
    let name = line.split(|&b| b == b':').next().unwrap_or_default();
    let name = name.trim_ascii_end();
    name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l")
}

/// The method a garbled request line stands for: its own first word if that is a
/// method, else the one its CSeq names (RFC 3261 §8.1.1.5: they must agree).
fn method_of(lines: &[Vec<u8>]) -> Option<String> {
    let first = lines.first()?;
    let word = std::str::from_utf8(first.split(|&b| b == b' ').next()?).ok()?;
    if is_token(word) && !word.to_ascii_uppercase().starts_with("SIP/") {
        return Some(word.to_owned());
    }
    lines.iter().skip(1).find_map(|l| {
        let text = std::str::from_utf8(l).ok()?;
        let (name, value) = text.split_once(':')?;
        if !name.trim_end().eq_ignore_ascii_case("CSeq") {
            return None;
        }
        let m = value.split_whitespace().nth(1)?;
        is_token(m).then(|| m.to_owned())
    })
}

/// Apply the repair `err` asks for to `lines`; false when there is none.
fn repair(lines: &mut Vec<Vec<u8>>, err: &ParseError) -> bool {
    let line = match err {
        ParseError::HeaderTooLarge { line, .. }
        | ParseError::ControlCharacter { line }
        | ParseError::BadHeaderName { line }
        | ParseError::HeaderWithoutColon { line }
        | ParseError::ContinuationWithoutHeader { line }
        | ParseError::NonUtf8(TextPart::HeaderLine(line)) => *line,
        ParseError::BadStartLine(e) => {
            // A status line cannot be answered (RFC 3261 §8.2.6 answers requests only);
            // an empty first line leaves nothing to go on.
            let first = lines.first().map(|l| l.to_ascii_uppercase());
            if *e == StartLineError::Empty || first.is_some_and(|f| f.starts_with(b"SIP/")) {
                return false;
            }
            return replace_start_line(lines);
        }
        ParseError::NonUtf8(TextPart::StartLine) => return replace_start_line(lines),
        // Content-Length lines are gone already; a head without lines is hopeless.
        _ => return false,
    };
    if line < 2 || line > lines.len() {
        return false;
    }
    lines.remove(line - 1);
    true
}

fn replace_start_line(lines: &mut [Vec<u8>]) -> bool {
    let Some(method) = method_of(lines) else {
        return false;
    };
    let Some(first) = lines.first_mut() else {
        return false;
    };
    *first = format!("{method} {NEUTRAL_URI} SIP/2.0").into_bytes();
    true
}

/// The request the salvage rounds leave, if any.
fn salvage_request(data: &[u8], err: &ParseError, limits: &Limits) -> Option<Request> {
    let mut lines = head_lines(data, err)?;
    let start = lines.first()?.clone();
    lines.retain(|l| !is_content_length(l));
    if lines.first() != Some(&start) {
        // The "start line" looked like a Content-Length header: no request here.
        return None;
    }
    let relaxed = Limits {
        max_message_bytes: data.len().max(limits.max_message_bytes),
        max_headers: lines.len().max(limits.max_headers),
        ..*limits
    };
    let mut err = err.clone();
    for round in 0..=SALVAGE_ROUNDS {
        // Round 0 only strips Content-Length (and a truncated tail).
        if round > 0 && !repair(&mut lines, &err) {
            return None;
        }
        let mut bytes = Vec::with_capacity(data.len().min(relaxed.max_message_bytes));
        for l in &lines {
            bytes.extend_from_slice(l);
            bytes.extend_from_slice(b"\r\n");
        }
        bytes.extend_from_slice(b"Content-Length: 0\r\n\r\n");
        match parse_datagram(&bytes, &relaxed) {
            Ok(Item::Message(Message::Request(r))) => return Some(r),
            Ok(_) => return None,
            Err(e) => err = e,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::SeededRandom;
    use rstest::rstest;

    const VIA: &str = "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKbad1\r\n";
    const REST: &str = "Max-Forwards: 70\r\nFrom: <sip:alice@sip.sut.test>;tag=a\r\nTo: <sip:juliet@remote.test>\r\nCall-ID: bad1\r\nCSeq: 7 MESSAGE\r\n";

    fn msg(start: &str, extra: &str, tail: &str) -> Vec<u8> {
        format!("{start}\r\n{VIA}{REST}{extra}{tail}").into_bytes()
    }

    fn answer(data: &[u8]) -> Option<Response> {
        let limits = Limits::default();
        let err = match parse_datagram(data, &limits) {
            Err(e) => e,
            Ok(_) => panic!("the input parses"),
        };
        answer_unparsable(data, &err, &limits, &mut SeededRandom(7))
    }

    // One row per class of bad input; `None`: nothing can be answered.
    #[rstest]
    #[case::content_length_too_big(
        msg(
            "MESSAGE sip:juliet@remote.test SIP/2.0",
            "Content-Type: text/plain\r\nContent-Length: 500\r\n",
            "\r\nshort"
        ),
        Some(400)
    )]
    #[case::content_length_negative(
        msg(
            "MESSAGE sip:juliet@remote.test SIP/2.0",
            "Content-Length: -5\r\n",
            "\r\n"
        ),
        Some(400)
    )]
    #[case::content_length_garbage(
        msg(
            "MESSAGE sip:juliet@remote.test SIP/2.0",
            "Content-Length: ten\r\n",
            "\r\n"
        ),
        Some(400)
    )]
    #[case::content_length_compact_twice(
        msg(
            "MESSAGE sip:juliet@remote.test SIP/2.0",
            "l: 1\r\nContent-Length: 2\r\n",
            "\r\nab"
        ),
        Some(400)
    )]
    #[case::truncated_head(
        msg("MESSAGE sip:juliet@remote.test SIP/2.0", "Content-Type: text/pl", ""),
        Some(400)
    )]
    #[case::truncated_before_via("MESSAGE sip:juliet@remote.test SIP/2.0\r\nMax-Forw".as_bytes().to_vec(), None)]
    #[case::huge_header(msg("MESSAGE sip:juliet@remote.test SIP/2.0", &format!("X-Huge: {}\r\n", "x".repeat(9000)), "Content-Length: 0\r\n\r\n"), Some(513))]
    #[case::two_huge_headers(msg("MESSAGE sip:juliet@remote.test SIP/2.0", &format!("X-A: {0}\r\nX-B: {0}\r\n", "x".repeat(9000)), "\r\n"), Some(513))]
    #[case::too_many_headers(msg("MESSAGE sip:juliet@remote.test SIP/2.0", &"X-N: 1\r\n".repeat(200), "Content-Length: 0\r\n\r\n"), Some(513))]
    #[case::header_without_colon(
        msg("MESSAGE sip:juliet@remote.test SIP/2.0", "Nonsense\r\n", "\r\n"),
        Some(400)
    )]
    #[case::control_character(
        msg(
            "MESSAGE sip:juliet@remote.test SIP/2.0",
            "Subject: a\u{7}b\r\n",
            "\r\n"
        ),
        Some(400)
    )]
    #[case::bad_method_token(msg("MESS@GE sip:juliet@remote.test SIP/2.0", "", "\r\n"), Some(400))]
    #[case::bad_uri(msg("MESSAGE juliet SIP/2.0", "", "\r\n"), Some(400))]
    #[case::missing_part(msg("MESSAGE", "", "\r\n"), Some(400))]
    #[case::http_version(msg("MESSAGE sip:juliet@remote.test HTTP/1.1", "", "\r\n"), Some(400))]
    #[case::binary_start_line(msg("\u{1}\u{2}\u{3}", "", "\r\n"), Some(400))]
    #[case::ack_is_never_answered(format!("ACK sip:juliet@remote.test SIP/2.0\r\n{VIA}CSeq: 1 ACK\r\nContent-Length: x\r\n\r\n").into_bytes(), None)]
    #[case::no_via(format!("MESSAGE sip:juliet@remote.test SIP/2.0\r\n{REST}Content-Length: x\r\n\r\n").into_bytes(), None)]
    #[case::garbled_status_line(msg("SIP/2.0 2OO OK", "", "\r\n"), None)]
    #[case::pure_garbage(b"\x00\x01hello\r\n\r\n".to_vec(), None)]
    #[case::bare_lf("MESSAGE sip:juliet@remote.test SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKlf\n\n".as_bytes().to_vec(), None)]
    fn bad_input_classes(#[case] data: Vec<u8>, #[case] code: Option<u16>) {
        let r = answer(&data);
        assert_eq!(r.as_ref().map(|r| r.status), code);
        if let Some(r) = r {
            // RFC 3261 §8.2.6.2: Via, Call-ID and CSeq come back as sent, so the client's
            // transaction matches the answer (§17.1.3).
            assert_eq!(
                r.headers.get("Via"),
                Some("SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKbad1")
            );
            assert_eq!(r.headers.get("Call-ID"), Some("bad1"));
            assert_eq!(r.headers.get("CSeq"), Some("7 MESSAGE"));
            let phrase = if r.status == 513 {
                "Message Too Large ("
            } else {
                "Bad Request ("
            };
            assert!(r.reason.starts_with(phrase), "{}", r.reason);
            assert!(!r.reason.contains(['\r', '\n']));
        }
    }

    #[test]
    fn oversized_datagram_is_513() {
        let limits = Limits {
            max_message_bytes: 300,
            ..Limits::default()
        };
        let data = msg(
            "MESSAGE sip:juliet@remote.test SIP/2.0",
            "Content-Type: text/plain\r\nContent-Length: 400\r\n",
            &format!("\r\n{}", "y".repeat(400)),
        );
        let err = ParseError::MessageTooLarge { limit: 300 };
        let r = answer_unparsable(&data, &err, &limits, &mut SeededRandom(1));
        assert_eq!(r.map(|r| r.status), Some(513));
    }

    #[test]
    fn the_unread_bytes_of_a_stream_are_answered_too() {
        // What a StreamDecoder hands back after MissingContentLength: the head (and
        // whatever followed it on the stream).
        let data = msg("MESSAGE sip:juliet@remote.test SIP/2.0", "", "\r\nbody?");
        let r = answer_unparsable(
            &data,
            &ParseError::MissingContentLength,
            &Limits::default(),
            &mut SeededRandom(1),
        );
        assert_eq!(r.map(|r| r.status), Some(400));
    }

    #[test]
    fn mutated_inputs_never_panic() {
        let base = msg(
            "MESSAGE sip:juliet@remote.test SIP/2.0",
            "Content-Length: 5\r\n",
            "\r\nhello",
        );
        let mut x: u64 = 0x9e37_79b9;
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut d = base.clone();
            let n = d.len();
            let at = (x as usize >> 8) % n;
            match x % 3 {
                0 => d.truncate(at),
                1 => {
                    if let Some(b) = d.get_mut(at) {
                        *b = (x >> 32) as u8;
                    }
                }
                _ => d.insert(at, b"\r\n: @"[(x >> 40) as usize % 5]),
            }
            if let Err(e) = parse_datagram(&d, &Limits::default()) {
                let _ = answer_unparsable(&d, &e, &Limits::default(), &mut SeededRandom(x));
            }
        }
    }
}
