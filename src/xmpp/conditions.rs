//! Wire-level error conditions, written once as data (RFC 6120 §4.9.3, §8.3.3; XEP-0220 §2.5).

use super::element::{Element, Node};
use super::ns;

macro_rules! conditions {
    ($(#[$m:meta])* $ty:ident { $($(#[$vm:meta])* $var:ident = $name:literal,)* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $ty { $($(#[$vm])* $var,)* }
        impl $ty {
            pub const ALL: &'static [$ty] = &[$($ty::$var,)*];
            /// The element name of the condition on the wire.
            pub fn as_str(self) -> &'static str { match self { $($ty::$var => $name,)* } }
            /// Parse a wire name; `None` for an unknown condition.
            pub fn from_name(s: &str) -> Option<Self> { match s { $($name => Some($ty::$var),)* _ => None } }
        }
        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str(self.as_str()) }
        }
    };
}

conditions! {
    /// RFC 6120 §4.9.3 stream error conditions.
    StreamCondition {
        BadFormat = "bad-format",
        BadNamespacePrefix = "bad-namespace-prefix",
        Conflict = "conflict",
        ConnectionTimeout = "connection-timeout",
        HostGone = "host-gone",
        HostUnknown = "host-unknown",
        ImproperAddressing = "improper-addressing",
        InternalServerError = "internal-server-error",
        InvalidFrom = "invalid-from",
        InvalidNamespace = "invalid-namespace",
        InvalidXml = "invalid-xml",
        NotAuthorized = "not-authorized",
        NotWellFormed = "not-well-formed",
        PolicyViolation = "policy-violation",
        RemoteConnectionFailed = "remote-connection-failed",
        Reset = "reset",
        ResourceConstraint = "resource-constraint",
        RestrictedXml = "restricted-xml",
        SeeOtherHost = "see-other-host",
        SystemShutdown = "system-shutdown",
        UndefinedCondition = "undefined-condition",
        UnsupportedEncoding = "unsupported-encoding",
        UnsupportedFeature = "unsupported-feature",
        UnsupportedStanzaType = "unsupported-stanza-type",
        UnsupportedVersion = "unsupported-version",
    }
}

conditions! {
    /// RFC 6120 §8.3.3 stanza error conditions (also the payload of XEP-0220 §2.5 dialback errors).
    StanzaCondition {
        BadRequest = "bad-request",
        Conflict = "conflict",
        FeatureNotImplemented = "feature-not-implemented",
        Forbidden = "forbidden",
        Gone = "gone",
        InternalServerError = "internal-server-error",
        ItemNotFound = "item-not-found",
        JidMalformed = "jid-malformed",
        NotAcceptable = "not-acceptable",
        NotAllowed = "not-allowed",
        NotAuthorized = "not-authorized",
        PolicyViolation = "policy-violation",
        RecipientUnavailable = "recipient-unavailable",
        Redirect = "redirect",
        RegistrationRequired = "registration-required",
        RemoteServerNotFound = "remote-server-not-found",
        RemoteServerTimeout = "remote-server-timeout",
        ResourceConstraint = "resource-constraint",
        ServiceUnavailable = "service-unavailable",
        SubscriptionRequired = "subscription-required",
        UndefinedCondition = "undefined-condition",
        UnexpectedRequest = "unexpected-request",
    }
}

impl StanzaCondition {
    /// RFC 6120 §8.3.3: the error `type` each condition is usually sent with.
    pub fn default_type(self) -> ErrorType {
        use StanzaCondition::*;
        match self {
            BadRequest | JidMalformed | NotAcceptable | PolicyViolation | Redirect => {
                ErrorType::Modify
            }
            // §8.3.3.5: "the associated error type SHOULD be cancel" (a permanent move).
            Gone
            | Conflict
            | FeatureNotImplemented
            | ServiceUnavailable
            | UnexpectedRequest
            | NotAllowed => ErrorType::Cancel,
            Forbidden | NotAuthorized | RegistrationRequired | SubscriptionRequired => {
                ErrorType::Auth
            }
            ResourceConstraint | RecipientUnavailable | RemoteServerTimeout => ErrorType::Wait,
            InternalServerError | ItemNotFound | RemoteServerNotFound | UndefinedCondition => {
                ErrorType::Cancel
            }
        }
    }
}

/// RFC 6120 §8.3.2 error types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    Auth,
    Cancel,
    Continue,
    Modify,
    Wait,
}

impl ErrorType {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::Auth => "auth",
            ErrorType::Cancel => "cancel",
            ErrorType::Continue => "continue",
            ErrorType::Modify => "modify",
            ErrorType::Wait => "wait",
        }
    }
    pub fn from_name(s: &str) -> Option<Self> {
        Some(match s {
            "auth" => ErrorType::Auth,
            "cancel" => ErrorType::Cancel,
            "continue" => ErrorType::Continue,
            "modify" => ErrorType::Modify,
            "wait" => ErrorType::Wait,
            _ => return None,
        })
    }
}

/// A stream error as sent or received (RFC 6120 §4.9.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamError {
    pub condition: StreamCondition,
    pub text: Option<String>,
}

impl StreamError {
    pub fn new(condition: StreamCondition) -> Self {
        StreamError {
            condition,
            text: None,
        }
    }

    pub fn with_text(condition: StreamCondition, text: impl Into<String>) -> Self {
        StreamError {
            condition,
            text: Some(text.into()),
        }
    }

    /// `<stream:error><cond xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>[<text/>]</stream:error>`
    pub fn to_element(&self) -> Element {
        let mut e = Element::new(ns::STREAM, "error")
            .with_prefix("stream")
            .with_child(Element::new(ns::STREAMS_ERR, self.condition.as_str()));
        if let Some(t) = &self.text {
            e = e.with_child(Element::new(ns::STREAMS_ERR, "text").with_text(t.clone()));
        }
        e
    }

    /// Parse a received `<stream:error/>`. RFC 6120 §4.9.2: an unknown condition is
    /// treated as `undefined-condition`.
    pub fn from_element(e: &Element) -> Option<Self> {
        if !e.is(ns::STREAM, "error") {
            return None;
        }
        let mut condition = None;
        let mut text = None;
        for c in e.elements().filter(|c| c.ns == ns::STREAMS_ERR) {
            if c.name == "text" {
                text = Some(c.text());
            } else if condition.is_none() {
                condition = Some(
                    StreamCondition::from_name(&c.name)
                        .unwrap_or(StreamCondition::UndefinedCondition),
                );
            }
        }
        Some(StreamError {
            condition: condition.unwrap_or(StreamCondition::UndefinedCondition),
            text,
        })
    }
}

impl std::fmt::Display for StreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.text {
            Some(t) => write!(f, "{} ({t})", self.condition),
            None => write!(f, "{}", self.condition),
        }
    }
}

/// A stanza-level error (RFC 6120 §8.3), also used for dialback errors (XEP-0220 §2.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StanzaError {
    pub kind: ErrorType,
    pub condition: StanzaCondition,
    pub text: Option<String>,
}

impl StanzaError {
    pub fn new(condition: StanzaCondition) -> Self {
        StanzaError {
            kind: condition.default_type(),
            condition,
            text: None,
        }
    }

    /// `<error type='…'><cond xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>` in the
    /// content namespace `content_ns` (the stanza's own, RFC 6120 §8.3.2).
    pub fn to_element(&self, content_ns: &str) -> Element {
        let mut e = Element::new(content_ns, "error")
            .with_attr("type", self.kind.as_str())
            .with_child(Element::new(ns::STANZAS_ERR, self.condition.as_str()));
        if let Some(t) = &self.text {
            e = e.with_child(Element::new(ns::STANZAS_ERR, "text").with_text(t.clone()));
        }
        e
    }

    /// Parse the `<error/>` child of a stanza.
    pub fn from_element(e: &Element) -> Option<Self> {
        if e.name != "error" {
            return None;
        }
        let kind = e
            .attr("type")
            .and_then(ErrorType::from_name)
            .unwrap_or(ErrorType::Cancel);
        let mut condition = None;
        let mut text = None;
        for c in e.elements().filter(|c| c.ns == ns::STANZAS_ERR) {
            if c.name == "text" {
                text = Some(c.text());
            } else if condition.is_none() {
                condition = StanzaCondition::from_name(&c.name)
                    .or(Some(StanzaCondition::UndefinedCondition));
            }
        }
        Some(StanzaError {
            kind,
            condition: condition?,
            text,
        })
    }
}

/// Build the error reply to a stanza (RFC 6120 §8.3.1): same kind, `type='error'`, from/to
/// swapped, `id` mirrored, original payload dropped, one `<error/>` child.
/// Returns `None` for an error stanza: an error must never be answered with an error
/// (RFC 6120 §8.3.1, ERR-10).
pub fn bounce(stanza: &Element, error: &StanzaError) -> Option<Element> {
    if stanza.attr("type") == Some("error") {
        return None;
    }
    let mut e = Element::new(stanza.ns.clone(), stanza.name.clone()).with_attr("type", "error");
    if let Some(to) = stanza.attr("to") {
        e.set_attr("from", to);
    }
    if let Some(from) = stanza.attr("from") {
        e.set_attr("to", from);
    }
    if let Some(id) = stanza.attr("id") {
        e.set_attr("id", id);
    }
    e.children.push(Node::Element(error.to_element(&stanza.ns)));
    Some(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_condition_round_trips_by_name() {
        for c in StreamCondition::ALL {
            assert_eq!(StreamCondition::from_name(c.as_str()), Some(*c));
        }
        for c in StanzaCondition::ALL {
            assert_eq!(StanzaCondition::from_name(c.as_str()), Some(*c));
        }
        assert_eq!(
            StreamCondition::ALL.len(),
            25,
            "RFC 6120 §4.9.3 lists 25 conditions"
        );
        assert_eq!(
            StanzaCondition::ALL.len(),
            22,
            "RFC 6120 §8.3.3 lists 22 conditions"
        );
    }

    #[test]
    fn unknown_stream_condition_is_undefined() {
        let e =
            Element::new(ns::STREAM, "error").with_child(Element::new(ns::STREAMS_ERR, "made-up"));
        assert_eq!(
            StreamError::from_element(&e).map(|e| e.condition),
            Some(StreamCondition::UndefinedCondition)
        );
    }

    #[test]
    fn bounce_swaps_and_mirrors_and_never_answers_errors() {
        let m = Element::new(ns::SERVER, "message")
            .with_attr("from", "a@x.test")
            .with_attr("to", "b@y.test")
            .with_attr("id", "42")
            .with_child(Element::new(ns::SERVER, "body").with_text("hi"));
        let b =
            bounce(&m, &StanzaError::new(StanzaCondition::RemoteServerTimeout)).expect("bounce");
        assert_eq!(b.attr("from"), Some("b@y.test"));
        assert_eq!(b.attr("to"), Some("a@x.test"));
        assert_eq!(b.attr("id"), Some("42"));
        assert_eq!(b.attr("type"), Some("error"));
        assert!(bounce(&b, &StanzaError::new(StanzaCondition::BadRequest)).is_none());
    }
}
