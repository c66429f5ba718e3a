//! The receiver's well-formedness check, kept apart from parsing (RFC 3261 §8.1.1, §8.2).
//!
//! Parsing only frames a message; whether it carries what RFC 3261 requires is decided
//! here, and every failure says which response the receiver should answer with. Values
//! that call for other answers (Max-Forwards 0 → 483, an unknown method → 405) are the
//! receiver's business: the accessors expose them.

use super::headers::HeaderError;
use super::message::{Headers, Method, Request, Response, Version};

/// Why a message is not well formed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    #[error(transparent)]
    Header(#[from] HeaderError),
    #[error("SIP version {0} is not supported (RFC 3261 §8.2.6 / §21.5.6)")]
    UnsupportedVersion(Version),
    #[error("CSeq method {cseq} differs from the request method {request} (RFC 3261 §20.16)")]
    CSeqMethodMismatch { request: Method, cseq: Method },
}

impl ValidationError {
    /// The status code and reason phrase the receiver of a bad request answers with.
    pub fn response_status(&self) -> (u16, &'static str) {
        match self {
            ValidationError::Header(_) | ValidationError::CSeqMethodMismatch { .. } => {
                (400, "Bad Request")
            }
            ValidationError::UnsupportedVersion(_) => (505, "Version Not Supported"),
        }
    }
}

/// Checks one header's presence and grammar.
type Check = fn(&Headers) -> Result<(), HeaderError>;

/// Which headers a message must carry, as data: (check, in requests, in responses).
/// RFC 3261 §8.1.1: "A valid SIP request formulated by a UAC MUST, at a minimum, contain
/// the following header fields: To, From, CSeq, Call-ID, Max-Forwards, and Via"; §8.2.6.2
/// copies all but Max-Forwards into responses (see also the table in §20). Each accessor
/// reports a missing header as `Missing` and a malformed one as `Invalid`.
const MANDATORY: [(Check, bool, bool); 6] = [
    (|h| h.vias().map(drop), true, true),
    (|h| h.from().map(drop), true, true),
    (|h| h.to().map(drop), true, true),
    (|h| h.call_id().map(drop), true, true),
    (|h| h.cseq().map(drop), true, true),
    (
        |h| match h.max_forwards()? {
            Some(_) => Ok(()),
            None => Err(HeaderError::Missing("Max-Forwards")),
        },
        true,
        false,
    ),
];

fn check_headers(headers: &Headers, is_request: bool) -> Result<(), ValidationError> {
    for (check, in_request, in_response) in MANDATORY {
        if (is_request && in_request) || (!is_request && in_response) {
            check(headers)?;
        }
    }
    Ok(())
}

fn check_version(version: Version) -> Result<(), ValidationError> {
    if version == Version::SIP_2_0 {
        Ok(())
    } else {
        Err(ValidationError::UnsupportedVersion(version))
    }
}

/// Checks what a UAS or proxy checks before processing a request (RFC 3261 §8.2, §16.3).
pub fn validate_request(request: &Request) -> Result<(), ValidationError> {
    check_version(request.version)?;
    check_headers(&request.headers, true)?;
    let cseq = request.headers.cseq()?;
    if cseq.method != request.method {
        return Err(ValidationError::CSeqMethodMismatch {
            request: request.method.clone(),
            cseq: cseq.method,
        });
    }
    Ok(())
}

/// Checks a response before it is matched to a transaction (RFC 3261 §8.1.3, §17.1.3).
pub fn validate_response(response: &Response) -> Result<(), ValidationError> {
    check_version(response.version)?;
    check_headers(&response.headers, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::codec::Limits;
    use crate::sip::framing::{Item, parse_datagram};
    use crate::sip::message::Message;
    use rstest::rstest;

    const REQUEST: &str = concat!(
        "OPTIONS sip:carol@chicago.com SIP/2.0\r\n",
        "Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bKhjhs8ass877\r\n",
        "Max-Forwards: 70\r\n",
        "To: <sip:carol@chicago.com>\r\n",
        "From: Alice <sip:alice@atlanta.com>;tag=1928301774\r\n",
        "Call-ID: a84b4c76e66710\r\n",
        "CSeq: 63104 OPTIONS\r\n",
        "\r\n"
    );

    fn request_without(name: &str) -> Request {
        let Ok(Item::Message(Message::Request(mut r))) =
            parse_datagram(REQUEST.as_bytes(), &Limits::default())
        else {
            panic!("sample parses");
        };
        r.headers.remove(name);
        r
    }

    #[rstest]
    #[case("Via")]
    #[case("From")]
    #[case("To")]
    #[case("Call-ID")]
    #[case("CSeq")]
    #[case("Max-Forwards")]
    fn missing_mandatory_header_is_400(#[case] name: &str) {
        let err = validate_request(&request_without(name)).expect_err("invalid");
        assert!(
            matches!(&err, ValidationError::Header(HeaderError::Missing(n)) if n.eq_ignore_ascii_case(name))
        );
        assert_eq!(err.response_status(), (400, "Bad Request"));
    }

    #[test]
    fn complete_request_is_valid() {
        assert_eq!(validate_request(&request_without("X-None")), Ok(()));
    }

    #[test]
    fn responses_need_no_max_forwards() {
        let mut r = Response::new(200, "OK");
        for (n, v) in request_without("Max-Forwards")
            .headers
            .iter()
            .map(|h| (h.name.clone(), h.value.clone()))
        {
            r.headers.push(n, v);
        }
        assert_eq!(validate_response(&r), Ok(()));
        r.headers.remove("Call-ID");
        assert_eq!(
            validate_response(&r),
            Err(HeaderError::Missing("Call-ID").into())
        );
    }

    #[test]
    fn malformed_values_and_mismatches() {
        let mut r = request_without("CSeq");
        r.headers.push("CSeq", "1 INVITE");
        let err = validate_request(&r).expect_err("mismatch");
        assert!(matches!(err, ValidationError::CSeqMethodMismatch { .. }));
        assert_eq!(err.response_status().0, 400);
        let mut r = request_without("Max-Forwards");
        r.headers.push("Max-Forwards", "seventy");
        assert!(matches!(
            validate_request(&r),
            Err(ValidationError::Header(HeaderError::Invalid {
                name: "Max-Forwards",
                ..
            }))
        ));
        let mut r = request_without("X");
        r.version = Version { major: 3, minor: 0 };
        assert_eq!(
            validate_request(&r).map_err(|e| e.response_status().0),
            Err(505)
        );
    }

    #[test]
    fn max_forwards_zero_is_valid_but_exposed() {
        let mut r = request_without("Max-Forwards");
        r.headers.push("Max-Forwards", "0");
        assert_eq!(validate_request(&r), Ok(()));
        assert_eq!(r.headers.max_forwards(), Ok(Some(0)));
    }
}
