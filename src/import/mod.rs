//! `fedcheck import`: a capture (pcap/pcapng, read into flows by [`crate::capture`]) or a
//! `--json` report of an earlier run becomes a draft scenario (docs/import.md).
//!
//! Sans-IO: every function here takes bytes or parsed values and returns text; the command
//! line reads and writes the files. The pipeline has three stages, so the two inputs share
//! everything after the first:
//!
//! 1. [`report`] / [`flows`]: the input becomes a [`Trace`] — the actors, and one
//!    [`Record`] per wire unit or transport event, in the order the capture has them.
//! 2. [`draft`]: the trace becomes a [`Draft`] — actor declarations and steps: what the
//!    actors sent becomes `send` steps, what the SUT sent becomes `expect` steps with its
//!    volatile values (stream ids, stanza ids, dialback keys, SIP tags and Call-IDs) as
//!    captures that later steps reuse, and its domains as `{sut}`.
//! 3. [`write`]: the draft becomes TOML text the scenario loader accepts.

use std::net::IpAddr;
use std::time::Duration;

use crate::harness::transcript::Dir;

pub mod draft;
pub mod flows;
pub mod report;
pub mod synth;
pub mod write;

pub use draft::{Draft, DraftStep, Value, draft};
pub use flows::{SutAddr, trace_from_capture};
pub use report::{Pick, select_outcome, trace_from_report};
pub use synth::{capture_from_outcome, capture_from_report};
pub use write::render;

/// Everything that can go wrong turning an input into a draft. Each names what is missing,
/// so the command line can print it after the file's name.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("not a pcap, pcapng or fedcheck JSON report (the first bytes are {0})")]
    UnknownFormat(String),
    #[error("not a fedcheck JSON report: {0}")]
    BadReport(String),
    #[error("JSON report schema version {0} is not supported (this fedcheck reads version 1)")]
    SchemaVersion(u32),
    #[error("the report has no outcomes")]
    NoOutcomes,
    #[error("{count} outcomes match; pick one with --scenario NAME (and --cell CELL): {names}")]
    Ambiguous { count: usize, names: String },
    #[error("no outcome matches {0}; the report has: {1}")]
    NoSuchOutcome(String, String),
    #[error("--sut is required for a capture: the address (and port) of the system under test")]
    NoSut,
    #[error("no flow to or from the SUT address {sut} (the capture has {flows})")]
    NoSutFlow { sut: String, flows: String },
    #[error("no importable XMPP or SIP traffic to or from the SUT {0}")]
    NothingImportable(String),
    #[error("bad --sut address {0:?}: expected IP or IP:PORT")]
    BadSutAddr(String),
}

/// What the input file is, from its first bytes (pcap: libpcap file format magic in
/// either byte order and timestamp precision; pcapng: the Section Header Block type
/// 0x0A0D0D0A; a report: JSON text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    Pcap,
    Pcapng,
    Json,
}

/// The magic numbers of the capture formats, as they appear in the file's first 4 bytes.
const MAGICS: &[([u8; 4], InputKind)] = &[
    ([0xd4, 0xc3, 0xb2, 0xa1], InputKind::Pcap), // microseconds, little-endian
    ([0xa1, 0xb2, 0xc3, 0xd4], InputKind::Pcap), // microseconds, big-endian
    ([0x4d, 0x3c, 0xb2, 0xa1], InputKind::Pcap), // nanoseconds, little-endian
    ([0xa1, 0xb2, 0x3c, 0x4d], InputKind::Pcap), // nanoseconds, big-endian
    ([0x0a, 0x0d, 0x0d, 0x0a], InputKind::Pcapng),
];

pub fn detect(bytes: &[u8]) -> Result<InputKind, ImportError> {
    if let Some(head) = bytes.get(..4) {
        for (magic, kind) in MAGICS {
            if head == magic {
                return Ok(*kind);
            }
        }
    }
    let text = bytes
        .iter()
        .skip_while(|b| b.is_ascii_whitespace() || **b == 0xef || **b == 0xbb || **b == 0xbf);
    if let Some(b'{') = text.clone().next() {
        return Ok(InputKind::Json);
    }
    let shown: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
    Err(ImportError::UnknownFormat(if shown.is_empty() {
        "missing: the file is empty".into()
    } else {
        shown.join(" ")
    }))
}

/// The kind of a [`Record`], as in the JSON report's `kind` (docs/json-schema.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Connected,
    Header,
    Element,
    StreamClose,
    Whitespace,
    Undecodable,
    Eof,
    Reset,
    Note,
    Tls,
    Sip,
    /// A UDP retransmission the SIP transaction layer absorbed or resent: timing, not
    /// content, so the draft leaves it out (RFC 3261 §17).
    SipRetransmission,
}

/// One wire unit or transport event at an actor.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub at: Duration,
    pub actor: String,
    pub stream: String,
    pub dir: Dir,
    pub kind: Kind,
    pub raw: Vec<u8>,
    /// The note text, for [`Kind::Note`]; free text otherwise.
    pub detail: String,
}

impl Record {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.raw).into_owned()
    }
}

/// How an actor of the draft is declared.
#[derive(Debug, Clone, PartialEq)]
pub enum ActorSpec {
    Xmpp {
        domain: String,
        /// The dialback secret, when it is not the default `fedcheck-secret-<domain>`.
        secret: Option<String>,
        /// The certificate preset, when not `valid`.
        cert: Option<String>,
        /// `partner = { … }` as TOML inline-table text.
        partner: Option<String>,
    },
    Component {
        domain: String,
        secret: String,
    },
    Sip {
        uri: String,
        transport: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct ActorDecl {
    pub name: String,
    pub spec: ActorSpec,
    /// Why a value is a guess (shown as a comment above the declaration).
    pub comment: Option<String>,
    /// Inferred from traffic: its secret is a default, not the one the recording used, so
    /// a key or handshake it sent cannot be checked against it.
    pub inferred: bool,
}

impl ActorDecl {
    pub fn domain(&self) -> &str {
        match &self.spec {
            ActorSpec::Xmpp { domain, .. } | ActorSpec::Component { domain, .. } => domain,
            ActorSpec::Sip { uri, .. } => uri,
        }
    }

    /// The secret the harness will use for this actor in the draft.
    pub fn secret(&self) -> String {
        match &self.spec {
            ActorSpec::Xmpp { domain, secret, .. } => secret
                .clone()
                .unwrap_or_else(|| format!("fedcheck-secret-{domain}")),
            ActorSpec::Component { secret, .. } => secret.clone(),
            ActorSpec::Sip { .. } => String::new(),
        }
    }
}

/// Where the input stopped the SUT's run short: the expectation that did not hold, so the
/// draft ends with it and reproduces the failure (a report of a failed run).
#[derive(Debug, Clone, PartialEq)]
pub struct FailureHint {
    pub stream: String,
    /// The template as the report shows it (variables substituted).
    pub expected: String,
    /// Whether something came instead (then the last unit on `stream` is that mismatch).
    pub got_unit: bool,
}

/// The input, ready to be drafted.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Trace {
    /// The input file as named on the command line.
    pub source: String,
    /// One line per flow or outcome taken, for the draft's header.
    pub taken: Vec<String>,
    /// What the reader skipped or worked around.
    pub notes: Vec<String>,
    pub title: Option<String>,
    /// The SUT's own domains (written `{sut}`); the first is the one `{sut}` stands for.
    pub sut_domains: Vec<String>,
    pub requires: Vec<String>,
    pub actors: Vec<ActorDecl>,
    pub records: Vec<Record>,
    pub failure: Option<FailureHint>,
    /// True when the records come from fedcheck's own transcript (exact secrets known,
    /// leftovers marked); false for a packet capture.
    pub from_report: bool,
}

/// Parse `--sut` values: `IP` or `IP:PORT` (IPv6 as `[::1]:5269`).
pub fn parse_sut(spec: &str) -> Result<SutAddr, ImportError> {
    if let Ok(sa) = spec.parse::<std::net::SocketAddr>() {
        return Ok(SutAddr {
            ip: sa.ip(),
            port: Some(sa.port()),
        });
    }
    let bare = spec.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<IpAddr>()
        .map(|ip| SutAddr { ip, port: None })
        .map_err(|_| ImportError::BadSutAddr(spec.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case(&[0xd4, 0xc3, 0xb2, 0xa1, 2, 0], InputKind::Pcap)]
    #[case(&[0xa1, 0xb2, 0x3c, 0x4d, 0, 2], InputKind::Pcap)]
    #[case(&[0x0a, 0x0d, 0x0d, 0x0a, 0, 0], InputKind::Pcapng)]
    #[case(b"  {\"schema_version\": 1}", InputKind::Json)]
    fn detects_by_magic(#[case] bytes: &[u8], #[case] kind: InputKind) {
        assert_eq!(detect(bytes).ok(), Some(kind));
    }

    #[test]
    fn unknown_and_empty_inputs_are_errors() {
        assert!(matches!(
            detect(b"GIF89a"),
            Err(ImportError::UnknownFormat(s)) if s.starts_with("47 49")
        ));
        assert!(matches!(detect(b""), Err(ImportError::UnknownFormat(s)) if s.contains("empty")));
    }

    #[test]
    fn sut_addresses_with_and_without_port() {
        let a = parse_sut("127.0.0.1:5269").ok();
        assert_eq!(a.map(|a| a.port), Some(Some(5269)));
        let b = parse_sut("127.0.0.2").ok();
        assert_eq!(b.map(|a| a.port), Some(None));
        assert!(parse_sut("[::1]:5060").is_ok());
        assert!(parse_sut("sut.test").is_err());
    }
}
