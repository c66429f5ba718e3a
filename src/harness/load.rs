//! Scenario loader: TOML file → validated, executable [`Scenario`].
//!
//! Every rule of docs/scenarios.md that can be checked without a SUT is checked here, so a
//! broken scenario is an `error` verdict before any socket opens, with `file:line:col` and
//! the rule broken. Several problems in one file are all reported.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::catalogue::Catalogue;
use super::matrix;
use super::model::{ExpectItemFile, ScenarioFile, StepFile};
use super::template::{self, RESERVED_NAMES, is_name};
use super::tls_io;

#[path = "sip_load.rs"]
mod sip_load;
use crate::xmpp::ns;

/// Capabilities a scenario may `require` of a target; a target lacking one makes the
/// scenario `inconclusive`.
pub const CAPABILITIES: &[&str] = &[
    // XEP-0220 server dialback.
    "dialback",
    // XEP-0114 component port.
    "component",
    // The SUT accepts inbound S2S streams (RFC 6120 §4.2, receiving entity).
    "s2s-in",
    // The SUT opens outbound S2S streams (RFC 6120 §4.2, initiating entity).
    "s2s-out",
    // STARTTLS on S2S (RFC 6120 §5).
    "starttls",
    // SASL EXTERNAL on S2S (RFC 6120 §6, XEP-0178).
    "sasl-external",
    // XEP-0288 bidirectional S2S.
    "bidi",
    // A SIP side (a gateway's UDP/TCP listeners) for SIP actors.
    "sip",
];

/// Default wait of `expect*` and `accept` steps (docs/scenarios.md "Top-level keys").
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
/// In an `or` list: "no unit arrives within the timeout".
pub const NOTHING: &str = "{nothing}";

/// Default `expect_none` window.
pub const DEFAULT_WINDOW: Duration = Duration::from_millis(300);
/// Longest duration a scenario may write.
pub const MAX_DURATION: Duration = Duration::from_secs(600);

/// A validated scenario, ready to run.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub path: PathBuf,
    /// The matrix cell this scenario is (`tls=required,peer=plain`), for matrix files.
    pub cell: Option<String>,
    pub title: String,
    pub description: Option<String>,
    pub covers: Vec<String>,
    pub requires: Vec<String>,
    /// Default timeout of `expect*` and `accept` steps (already applied to each step).
    pub timeout: Duration,
    /// Actors in file order.
    pub actors: Vec<Actor>,
    pub steps: Vec<Step>,
}

/// The built-in variable naming the SUT's gateway domain (`{gw}`).
pub const GW_VAR: &str = "gw";
/// `{gw}` as written in an actor declaration, before a target binds it.
pub const GW_PLACEHOLDER: &str = "{gw}";
/// The value `{gw}` stands for while a file is validated (no target yet).
pub const GW_PROBE: &str = "gw.invalid";

impl Scenario {
    /// The scenario as it runs against a SUT whose gateway serves `gw`: `{gw}` in the SIP
    /// actors' URIs (and so their domains) becomes that domain. Without a gateway domain
    /// the actors keep `{gw}`, which no SUT routes to.
    pub fn with_gateway(&self, gw: Option<&str>) -> Scenario {
        let mut s = self.clone();
        let Some(gw) = gw else { return s };
        for a in &mut s.actors {
            if let ActorKind::Sip(sip) = &mut a.kind {
                sip.uri = sip.uri.replace(GW_PLACEHOLDER, gw);
                if sip.domain == GW_PLACEHOLDER {
                    sip.domain = gw.to_ascii_lowercase();
                }
            }
        }
        s
    }

    /// Does any step negotiate TLS, or does a partner policy allow it? Then the run needs a
    /// test PKI (the SUT must hold a certificate to offer STARTTLS at all).
    pub fn uses_tls(&self) -> bool {
        let partner_tls = self.actors.iter().any(|a| {
            a.partner
                .is_some_and(|p| p.tls != Negotiation::NotSupported)
        });
        partner_tls
            || self.steps.iter().any(|s| {
                matches!(
                    s.action,
                    Action::StartTls { .. }
                        | Action::AcceptStartTls { .. }
                        | Action::SaslExternal { .. }
                        | Action::AcceptSasl { .. }
                )
            })
    }

    pub fn actor(&self, name: &str) -> Option<&Actor> {
        self.actors.iter().find(|a| a.name == name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub name: String,
    pub kind: ActorKind,
    /// XMPP actors: the TLS certificate preset it presents (`"valid"` by default,
    /// `"none"` for no certificate); see [`crate::harness::tls_io::CERT_PRESETS`].
    pub cert: String,
    /// XMPP actors: the partner policy the SUT must have for this domain, if the scenario
    /// depends on one.
    pub partner: Option<Partner>,
}

/// A per-partner policy (Lync's New-CsXmppAllowedPartner settings, MS-06..MS-09).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partner {
    pub tls: Negotiation,
    pub sasl: Negotiation,
    pub dialback: bool,
    pub keepalive: bool,
}

/// TlsNegotiation / SaslNegotiation values (MS-06, MS-07).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Negotiation {
    Required,
    Optional,
    NotSupported,
}

impl Negotiation {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "required" => Negotiation::Required,
            "optional" => Negotiation::Optional,
            "not_supported" => Negotiation::NotSupported,
            _ => return None,
        })
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Negotiation::Required => "required",
            Negotiation::Optional => "optional",
            Negotiation::NotSupported => "not_supported",
        }
    }
}

impl Partner {
    /// Lync's defaults (MS-06..MS-08): TLS required, SASL required, dialback on, keepalive on.
    pub const DEFAULT: Partner = Partner {
        tls: Negotiation::Required,
        sasl: Negotiation::Required,
        dialback: true,
        keepalive: true,
    };
}

impl Actor {
    pub fn domain(&self) -> &str {
        match &self.kind {
            ActorKind::Xmpp { domain, .. } | ActorKind::Component { domain, .. } => domain,
            ActorKind::Sip(s) => &s.domain,
        }
    }

    /// The dialback or handshake secret; empty for SIP actors.
    pub fn secret(&self) -> &str {
        match &self.kind {
            ActorKind::Xmpp { secret, .. } | ActorKind::Component { secret, .. } => secret,
            ActorKind::Sip(_) => "",
        }
    }

    /// What `{NAME}` of this actor stands for: its domain, or a SIP actor's URI.
    pub fn variable(&self) -> &str {
        match &self.kind {
            ActorKind::Sip(s) => &s.uri,
            _ => self.domain(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActorKind {
    /// A simulated remote XMPP server; `secret` is its XEP-0185 dialback secret.
    Xmpp { domain: String, secret: String },
    /// A simulated XEP-0114 component; `secret` is the handshake secret.
    Component { domain: String, secret: String },
    /// A simulated SIP user agent (src/harness/sip_actor.rs).
    Sip(super::sip_actor::SipActor),
}

#[derive(Debug, Clone)]
pub struct Step {
    /// Position in [`Scenario::steps`] (0-based).
    pub index: usize,
    /// 1-based line of the step's table in the file.
    pub line: usize,
    /// Requirements this step checks (the scenario's when the step names none).
    pub covers: Vec<String>,
    pub note: Option<String>,
    pub action: Action,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortKind {
    /// The SUT's S2S port (RFC 6120 §3.2, 5269 by default).
    S2s,
    /// The SUT's XEP-0114 component port.
    Component,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Connect {
        stream: String,
        actor: String,
        port: PortKind,
    },
    Accept {
        stream: String,
        actor: String,
        timeout: Duration,
    },
    /// `text` is raw: variables are substituted when the step runs.
    Send {
        stream: String,
        text: String,
    },
    /// `template` is raw: variables are substituted and the template parsed when it runs.
    Expect {
        stream: String,
        template: String,
        /// Alternatives: the step holds if the unit matches `template` or any of these;
        /// [`NOTHING`] stands for "no unit within the timeout" (a requirement that allows
        /// either a refusal or a silent drop).
        or: Vec<String>,
        /// Alternatives on this or another stream; the first unit on any of those streams
        /// decides (docs/scenarios.md "Branches").
        branches: Vec<Branch>,
        timeout: Duration,
        exact: bool,
    },
    /// The SUT must not open a connection to `actor` during `window` (e.g. never relay to a
    /// third domain, RFC 6120 §10.4).
    ExpectNoConnection {
        actor: String,
        window: Duration,
    },
    ExpectEof {
        stream: String,
        timeout: Duration,
    },
    ExpectNone {
        stream: String,
        window: Duration,
    },
    ExpectAll {
        items: Vec<ExpectItem>,
        timeout: Duration,
    },
    Close {
        stream: String,
    },
    Reset {
        stream: String,
    },
    Dialback {
        stream: String,
        actor: String,
        from: Option<String>,
        to: Option<String>,
        verify_stream: String,
    },
    AcceptDialback {
        stream: String,
        actor: String,
        timeout: Duration,
        verify_stream: String,
        /// Only if the SUT's next unit on `stream` is its own `<db:result/>`.
        if_requested: bool,
    },
    /// `send = "A"` with `sip`: actor `A` sends a request (completed as a SIP stack would)
    /// or answers a received request. `text` is raw: substituted when the step runs.
    SipSend {
        actor: String,
        text: String,
        /// Send the substituted text byte for byte, not parsed or completed.
        raw: bool,
    },
    /// `expect_none = "A"` on a SIP actor: the SUT sends `A` nothing during `window`.
    SipExpectNone {
        actor: String,
        window: Duration,
    },
    /// `expect = "A"` with `sip`: the next message the SUT sent to actor `A` matches.
    SipExpect {
        actor: String,
        template: String,
        or: Vec<String>,
        timeout: Duration,
        /// Answer a matched request at once with this status: the actor's `answer`,
        /// unless its next SIP step answers explicitly (set by the loader).
        answer: Option<u16>,
    },
    /// The actor, as initiator, negotiates TLS on `stream`: `<starttls/>`, `<proceed/>`,
    /// handshake (RFC 6120 §5.4). The stream then restarts.
    StartTls {
        stream: String,
        timeout: Duration,
    },
    /// The actor, as receiver, answers the SUT's `<starttls/>` with `<proceed/>` and the
    /// handshake as TLS server.
    AcceptStartTls {
        stream: String,
        timeout: Duration,
    },
    /// SASL EXTERNAL as initiator (RFC 6120 §6, XEP-0178): `<auth mechanism='EXTERNAL'>`,
    /// `<success/>`, then the stream restarts.
    SaslExternal {
        stream: String,
        authzid: Authzid,
        timeout: Duration,
    },
    /// The receiving side of SASL EXTERNAL on a stream the SUT opened and secured.
    AcceptSasl {
        stream: String,
        timeout: Duration,
    },
}

/// What an initiator sends as SASL EXTERNAL initial response (RFC 6120 §6.3.8, D-06).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authzid {
    /// base64 of the actor's domain (what Prosody sends).
    Domain,
    /// `=`: an empty response (XEP-0178 §3's example).
    Equals,
    /// No character data at all.
    Empty,
    /// Exactly this text (already base64), for hostile cases.
    Raw(String),
}

/// One `branch` of an `expect` step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Branch {
    pub stream: String,
    /// Raw template, substituted when the step runs.
    pub template: String,
    /// Where the scenario goes when this branch matched.
    pub end: BranchEnd,
    pub note: Option<String>,
}

/// What follows a matched branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BranchEnd {
    /// The next step, as after the main template.
    Continue,
    /// The scenario ends and passes: the rest of the steps describe the other behaviour.
    Pass,
    /// The scenario ends inconclusive: the SUT's (allowed) behaviour leaves the
    /// requirement unobservable here.
    Inconclusive,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectItem {
    pub stream: String,
    /// Raw template; `None` means the item expects EOF.
    pub template: Option<String>,
}

/// One problem found in a scenario file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// 1-based line and column; `None` when the problem has no location (e.g. a missing
    /// top-level key).
    pub line: Option<usize>,
    pub col: Option<usize>,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{}: cannot read: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not a valid scenario; one diagnostic per problem, in file order.
    #[error("{}", render(path, diagnostics))]
    Invalid {
        path: PathBuf,
        diagnostics: Vec<Diagnostic>,
    },
}

fn render(path: &Path, diags: &[Diagnostic]) -> String {
    let mut out = String::new();
    for (i, d) in diags.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&format!("{d}", d = DiagAt { path, d }));
    }
    out
}

struct DiagAt<'a> {
    path: &'a Path,
    d: &'a Diagnostic,
}

impl fmt::Display for DiagAt<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.d.line, self.d.col) {
            (Some(l), Some(c)) => write!(f, "{}:{l}:{c}: {}", self.path.display(), self.d.message),
            (Some(l), None) => write!(f, "{}:{l}: {}", self.path.display(), self.d.message),
            _ => write!(f, "{}: {}", self.path.display(), self.d.message),
        }
    }
}

/// Read and validate a scenario file.
pub fn load_file(path: &Path, cat: &Catalogue) -> Result<Scenario, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    load_str(&text, path, cat)
}

/// Load a file as the scenarios it stands for: one, or one per cell of its `[matrix]`
/// (see [`crate::harness::matrix`]).
pub fn load_file_cells(path: &Path, cat: &Catalogue) -> Result<Vec<Scenario>, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    load_str_cells(&text, path, cat)
}

pub fn load_str_cells(
    text: &str,
    origin: &Path,
    cat: &Catalogue,
) -> Result<Vec<Scenario>, LoadError> {
    match matrix::cells(text, origin)? {
        None => {
            let plain = matrix::expand(text, None, origin)?;
            Ok(vec![load_str(&plain, origin, cat)?])
        }
        Some(cells) => cells
            .iter()
            .map(|c| {
                let t = matrix::expand(text, Some(c), origin)?;
                let mut s = load_str(&t, origin, cat)?;
                s.cell = Some(c.name.clone());
                Ok(s)
            })
            .collect(),
    }
}

/// Validate scenario text; `origin` names it in errors and in [`Scenario::path`].
pub fn load_str(text: &str, origin: &Path, cat: &Catalogue) -> Result<Scenario, LoadError> {
    let lines = LineIndex::new(text);
    let file: ScenarioFile = match toml::from_str(text) {
        Ok(f) => f,
        Err(e) => {
            let (line, col) = match e.span() {
                Some(s) => {
                    let (l, c) = lines.at(s.start);
                    (Some(l), Some(c))
                }
                None => (None, None),
            };
            let message = format!("invalid scenario file: {}", e.message().trim());
            return Err(LoadError::Invalid {
                path: origin.to_path_buf(),
                diagnostics: vec![Diagnostic { line, col, message }],
            });
        }
    };
    let mut v = Validator {
        lines,
        cat,
        diags: Vec::new(),
    };
    let scenario = v.scenario(file, origin);
    if v.diags.is_empty() {
        Ok(scenario)
    } else {
        v.diags.sort_by_key(|d| (d.line, d.col));
        Err(LoadError::Invalid {
            path: origin.to_path_buf(),
            diagnostics: v.diags,
        })
    }
}

/// Byte offset → 1-based line and column (in characters).
struct LineIndex<'a> {
    text: &'a str,
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    fn new(text: &'a str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { text, starts }
    }

    fn at(&self, offset: usize) -> (usize, usize) {
        let line = self.starts.partition_point(|&s| s <= offset).max(1);
        let start = self.starts.get(line - 1).copied().unwrap_or(0);
        let col = self
            .text
            .get(start..offset)
            .map_or(1, |s| s.chars().count() + 1);
        (line, col)
    }
}

/// Parse a scenario duration: `"250ms"`, `"2s"`, `"1.5s"`; more than 0, at most 10 minutes,
/// millisecond precision.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {s:?}: write e.g. \"250ms\", \"2s\" or \"1.5s\"");
    let millis: u64 = if let Some(n) = s.strip_suffix("ms") {
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        n.parse().map_err(|_| bad())?
    } else if let Some(n) = s.strip_suffix('s') {
        let (int, frac) = n.split_once('.').unwrap_or((n, ""));
        let digits = |x: &str| x.bytes().all(|b| b.is_ascii_digit());
        if int.is_empty()
            || !digits(int)
            || !digits(frac)
            || frac.len() > 3
            || (n.contains('.') && frac.is_empty())
        {
            return Err(bad());
        }
        let int: u64 = int.parse().map_err(|_| bad())?;
        let frac_ms: u64 = if frac.is_empty() {
            0
        } else {
            format!("{frac:0<3}").parse().map_err(|_| bad())?
        };
        int.checked_mul(1000)
            .and_then(|m| m.checked_add(frac_ms))
            .ok_or_else(bad)?
    } else {
        return Err(bad());
    };
    let d = Duration::from_millis(millis);
    if d.is_zero() {
        return Err(format!("duration {s:?} must be more than 0"));
    }
    if d > MAX_DURATION {
        return Err(format!("duration {s:?} exceeds the 10 minute limit"));
    }
    Ok(d)
}

/// Keys each action uses besides `covers` and `note` (docs/scenarios.md "Steps").
const ACTION_KEYS: &[(&str, &[&str])] = &[
    ("connect", &["actor", "port"]),
    ("accept", &["actor", "timeout"]),
    ("send", &["xml", "sip", "raw"]),
    (
        "expect",
        &["xml", "sip", "or", "branch", "timeout", "exact"],
    ),
    ("expect_no_connection", &["window"]),
    ("expect_eof", &["timeout"]),
    ("expect_none", &["window"]),
    ("expect_all", &["timeout"]),
    ("close", &[]),
    ("reset", &[]),
    ("dialback", &["actor", "from", "to", "verify_stream"]),
    (
        "accept_dialback",
        &["actor", "timeout", "verify_stream", "if_requested"],
    ),
    ("starttls", &["timeout"]),
    ("accept_starttls", &["timeout"]),
    ("sasl_external", &["authzid", "timeout"]),
    ("accept_sasl", &["timeout"]),
];

/// What is known about a stream while walking the steps.
#[derive(Debug, Clone)]
struct StreamInfo {
    /// Content namespace element templates on it are parsed in.
    content_ns: &'static str,
}

struct Validator<'a> {
    lines: LineIndex<'a>,
    cat: &'a Catalogue,
    diags: Vec<Diagnostic>,
}

impl Validator<'_> {
    fn err(&mut self, span: Range<usize>, message: impl Into<String>) {
        let (l, c) = self.lines.at(span.start);
        self.diags.push(Diagnostic {
            line: Some(l),
            col: Some(c),
            message: message.into(),
        });
    }

    fn duration(&mut self, d: &Option<Spanned<String>>, default: Duration) -> Duration {
        match d {
            None => default,
            Some(s) => match parse_duration(s.get_ref()) {
                Ok(d) => d,
                Err(m) => {
                    self.err(s.span(), m);
                    default
                }
            },
        }
    }

    fn name(&mut self, s: &Spanned<String>, what: &str) {
        let n = s.get_ref();
        if !is_name(n) {
            self.err(
                s.span(),
                format!("{what} name {n:?} must match [a-z][a-z0-9_]*"),
            );
        } else if RESERVED_NAMES.contains(&n.as_str()) {
            self.err(s.span(), format!("{what} name {n:?} is reserved"));
        }
    }

    fn covers(&mut self, list: &Spanned<Vec<Spanned<String>>>) -> Vec<String> {
        if list.get_ref().is_empty() {
            self.err(list.span(), "covers must list at least one requirement ID");
        }
        let mut out = Vec::new();
        for id in list.get_ref() {
            if !self.cat.contains(id.get_ref()) {
                self.err(
                    id.span(),
                    format!(
                        "covers: unknown requirement ID {:?} (see `fedcheck coverage`)",
                        id.get_ref()
                    ),
                );
            }
            out.push(id.get_ref().clone());
        }
        out
    }

    fn scenario(&mut self, f: ScenarioFile, origin: &Path) -> Scenario {
        let title = f.title.get_ref().trim().to_string();
        if title.is_empty() || title.contains('\n') {
            self.err(f.title.span(), "title must be one non-empty line");
        }
        let covers = self.covers(&f.covers);
        let mut requires = Vec::new();
        for r in f.requires.iter().flatten() {
            if !CAPABILITIES.contains(&r.get_ref().as_str()) {
                self.err(
                    r.span(),
                    format!(
                        "requires: unknown capability {:?} (known: {})",
                        r.get_ref(),
                        CAPABILITIES.join(", ")
                    ),
                );
            }
            requires.push(r.get_ref().clone());
        }
        let timeout = self.duration(&f.timeout, DEFAULT_TIMEOUT);

        // Actors, in file order.
        let mut actors: Vec<(usize, Actor)> = Vec::new();
        for (name, a) in &f.xmpp {
            let domain = a.get_ref().domain.get_ref().clone();
            if domain.trim().is_empty() {
                self.err(a.get_ref().domain.span(), "actor domain must not be empty");
            }
            // docs/scenarios.md: the dialback secret defaults to one derived from the domain.
            let secret = a
                .get_ref()
                .secret
                .clone()
                .unwrap_or_else(|| format!("fedcheck-secret-{domain}"));
            let cert = match &a.get_ref().cert {
                Some(c) => {
                    if !tls_io::CERT_PRESETS.contains(&c.get_ref().as_str()) {
                        self.err(
                            c.span(),
                            format!(
                                "cert: unknown preset {:?} (known: {})",
                                c.get_ref(),
                                tls_io::CERT_PRESETS.join(", ")
                            ),
                        );
                    }
                    c.get_ref().clone()
                }
                None => "valid".to_string(),
            };
            let partner = a.get_ref().partner.as_ref().map(|p| {
                let f = p.get_ref();
                let mut neg = |v: &Option<String>, default: Negotiation, what: &str| match v.as_deref() {
                    None => default,
                    Some(x) => Negotiation::parse(x).unwrap_or_else(|| {
                        self.err(p.span(), format!("partner.{what}: {x:?} is not required, optional or not_supported"));
                        default
                    }),
                };
                let tls = neg(&f.tls, Partner::DEFAULT.tls, "tls");
                let sasl = neg(&f.sasl, Partner::DEFAULT.sasl, "sasl");
                let partner = Partner {
                    tls,
                    sasl,
                    dialback: f.dialback.unwrap_or(Partner::DEFAULT.dialback),
                    keepalive: f.keepalive.unwrap_or(Partner::DEFAULT.keepalive),
                };
                // MS-07: SASL needs TLS; MS-08: at least one of SASL or dialback.
                if partner.tls == Negotiation::NotSupported && partner.sasl != Negotiation::NotSupported {
                    self.err(p.span(), "partner: SASL needs TLS (tls = \"not_supported\" with sasl enabled, MS-07)");
                }
                if partner.sasl == Negotiation::NotSupported && !partner.dialback {
                    self.err(p.span(), "partner: no usable authentication (no SASL and no dialback, MS-08)");
                }
                partner
            });
            actors.push((
                a.span().start,
                Actor {
                    name: name.clone(),
                    kind: ActorKind::Xmpp { domain, secret },
                    cert,
                    partner,
                },
            ));
        }
        for (name, a) in &f.component {
            let domain = a.get_ref().domain.get_ref().clone();
            if domain.trim().is_empty() {
                self.err(a.get_ref().domain.span(), "actor domain must not be empty");
            }
            if f.xmpp.contains_key(name) {
                self.err(a.span(), format!("actor name {name:?} is declared twice"));
            }
            let secret = a.get_ref().secret.clone();
            actors.push((
                a.span().start,
                Actor {
                    name: name.clone(),
                    kind: ActorKind::Component { domain, secret },
                    cert: "none".to_string(),
                    partner: None,
                },
            ));
        }
        self.sip_actors(&f, &mut actors);
        actors.sort_by_key(|(pos, _)| *pos);
        for (pos, a) in &actors {
            if !is_name(&a.name) || RESERVED_NAMES.contains(&a.name.as_str()) {
                let pos = *pos;
                self.err(
                    pos..pos,
                    format!(
                        "actor name {:?} must match [a-z][a-z0-9_]* and not be reserved",
                        a.name
                    ),
                );
            }
        }
        let actors: Vec<Actor> = actors.into_iter().map(|(_, a)| a).collect();
        if actors.is_empty() {
            self.diags.push(Diagnostic {
                line: None,
                col: None,
                message: "a scenario needs at least one actor ([xmpp.NAME], [component.NAME] or [sip.NAME])"
                    .into(),
            });
        }
        if f.step.is_empty() {
            self.diags.push(Diagnostic {
                line: None,
                col: None,
                message: "a scenario needs at least one [[step]]".into(),
            });
        }

        let mut walk = Walk {
            streams: HashMap::new(),
            captures: Vec::new(),
            actors: &actors,
        };
        let mut steps = Vec::new();
        for (index, s) in f.step.iter().enumerate() {
            let (line, _) = self.lines.at(s.span().start);
            if let Some(when) = &s.get_ref().when {
                let clauses: Vec<String> =
                    when.get_ref().iter().map(|c| c.get_ref().clone()).collect();
                match matrix::when_holds(&clauses) {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(e) => {
                        self.err(when.span(), e);
                        continue;
                    }
                }
            }
            if let Some(step) = self.step(index, line, s, &covers, timeout, &mut walk) {
                steps.push(step);
            }
        }
        sip_load::plan_answers(&actors, &mut steps);

        Scenario {
            path: origin.to_path_buf(),
            cell: None,
            title,
            description: f.description,
            covers,
            requires,
            timeout,
            actors,
            steps,
        }
    }

    fn step(
        &mut self,
        index: usize,
        line: usize,
        s: &Spanned<StepFile>,
        default_covers: &[String],
        timeout: Duration,
        w: &mut Walk<'_>,
    ) -> Option<Step> {
        let st = s.get_ref();
        let actions = st.action_keys();
        let (action, _) = match actions.as_slice() {
            [one] => one.clone(),
            [] => {
                let names: Vec<&str> = ACTION_KEYS.iter().map(|(k, _)| *k).collect();
                self.err(
                    s.span(),
                    format!("step has no action key (one of {})", names.join(", ")),
                );
                return None;
            }
            many => {
                let names: Vec<&str> = many.iter().map(|(k, _)| *k).collect();
                let span = many.get(1).map_or(s.span(), |(_, sp)| sp.clone());
                self.err(
                    span,
                    format!(
                        "step has several action keys ({}); write one per step",
                        names.join(", ")
                    ),
                );
                return None;
            }
        };
        let allowed = ACTION_KEYS
            .iter()
            .find(|(k, _)| *k == action)
            .map_or(&[][..], |(_, a)| *a);
        for (key, span) in st.other_keys() {
            if key != "covers" && key != "note" && key != "when" && !allowed.contains(&key) {
                self.err(
                    span,
                    format!(
                        "key `{key}` is not used by `{action}` (it takes: {})",
                        allowed.join(", ")
                    ),
                );
            }
        }
        let covers = match &st.covers {
            Some(c) => self.covers(c),
            None => default_covers.to_vec(),
        };
        let note = st.note.as_ref().map(|n| n.get_ref().clone());

        let act = match action {
            "send" | "expect" if st.sip.is_some() => self.sip_step(action, st, timeout, w)?,
            "expect_none" if self.names_sip_actor(st.expect_none.as_ref(), w) => {
                Action::SipExpectNone {
                    actor: st.expect_none.as_ref()?.get_ref().clone(),
                    window: self.duration(&st.window, DEFAULT_WINDOW),
                }
            }
            "connect" => self.connect(st, w)?,
            "accept" => {
                let stream = self.new_stream(st.accept.as_ref()?, w)?;
                w.streams.insert(
                    stream.clone(),
                    StreamInfo {
                        content_ns: ns::SERVER,
                    },
                );
                let actor = self.actor(st, &stream, false, "accept", w)?;
                Action::Accept {
                    stream,
                    actor,
                    timeout: self.duration(&st.timeout, timeout),
                }
            }
            "send" => {
                let stream = self.existing(st.send.as_ref()?, w)?;
                let xml = self.required_xml(st, "send")?;
                if let Err(e) = template::substitute(xml.get_ref(), &|n| w.lookup(n)) {
                    self.err(xml.span(), format!("send: {e}"));
                }
                Action::Send {
                    stream,
                    text: xml.get_ref().clone(),
                }
            }
            "expect" => {
                let stream_s = st.expect.as_ref()?;
                let stream = self.existing(stream_s, w)?;
                let xml = self.required_xml(st, "expect")?;
                let ns_ = w.streams.get(&stream).map_or(ns::SERVER, |i| i.content_ns);
                let mut or = Vec::new();
                if let Some(list) = &st.or {
                    // Captures inside alternatives are not reliable (only one matches).
                    for alt in list.get_ref() {
                        if alt.get_ref().trim() != NOTHING {
                            let ctx = template::stream_context(ns_);
                            match template::prepare_template(alt.get_ref(), &|n| w.lookup(n), &ctx)
                            {
                                Ok(t) if !t.capture_names().is_empty() => {
                                    self.err(alt.span(), "an `or` alternative cannot capture")
                                }
                                Ok(_) => {}
                                Err(e) => self.err(alt.span(), format!("template: {e}")),
                            }
                        }
                        or.push(alt.get_ref().clone());
                    }
                }
                let mut branches = Vec::new();
                for b in st.branch.iter().flat_map(|l| l.get_ref()) {
                    let bf = b.get_ref();
                    let bstream = match &bf.stream {
                        Some(s) => match self.existing(s, w) {
                            Some(s) => s,
                            None => continue,
                        },
                        None => stream.clone(),
                    };
                    let bns = w.streams.get(&bstream).map_or(ns::SERVER, |i| i.content_ns);
                    let ctx = template::stream_context(bns);
                    match template::prepare_template(bf.xml.get_ref(), &|n| w.lookup(n), &ctx) {
                        Ok(t) if !t.capture_names().is_empty() => {
                            self.err(bf.xml.span(), "a branch cannot capture")
                        }
                        Ok(_) => {}
                        Err(e) => self.err(bf.xml.span(), format!("template: {e}")),
                    }
                    let end = match bf.end.as_ref().map(|e| e.get_ref().as_str()) {
                        None => BranchEnd::Continue,
                        Some("pass") => BranchEnd::Pass,
                        Some("inconclusive") => BranchEnd::Inconclusive,
                        Some(other) => {
                            let span = bf.end.as_ref().map_or(b.span(), Spanned::span);
                            self.err(
                                span,
                                format!(
                                    "branch end must be \"pass\" or \"inconclusive\", not {other:?}"
                                ),
                            );
                            BranchEnd::Continue
                        }
                    };
                    if end == BranchEnd::Inconclusive && bf.note.is_none() {
                        self.err(
                            b.span(),
                            "an inconclusive branch needs a `note` saying why the requirement is not observable",
                        );
                    }
                    branches.push(Branch {
                        stream: bstream,
                        template: bf.xml.get_ref().clone(),
                        end,
                        note: bf.note.as_ref().map(|n| n.get_ref().clone()),
                    });
                }
                self.template(xml, ns_, w);
                Action::Expect {
                    stream,
                    template: xml.get_ref().clone(),
                    or,
                    branches,
                    timeout: self.duration(&st.timeout, timeout),
                    exact: st.exact.as_ref().is_some_and(|e| *e.get_ref()),
                }
            }
            "expect_no_connection" => {
                let a = st.expect_no_connection.as_ref()?;
                match w.actors.iter().find(|x| x.name == *a.get_ref()) {
                    Some(x) if matches!(x.kind, ActorKind::Xmpp { .. }) => {}
                    Some(_) => self.err(a.span(), "expect_no_connection names a component actor; only XMPP server actors listen"),
                    None => self.err(a.span(), format!("unknown actor {:?}", a.get_ref())),
                }
                Action::ExpectNoConnection {
                    actor: a.get_ref().clone(),
                    window: self.duration(&st.window, DEFAULT_WINDOW),
                }
            }
            "starttls" => Action::StartTls {
                stream: self.existing(st.starttls.as_ref()?, w)?,
                timeout: self.duration(&st.timeout, timeout),
            },
            "accept_starttls" => Action::AcceptStartTls {
                stream: self.existing(st.accept_starttls.as_ref()?, w)?,
                timeout: self.duration(&st.timeout, timeout),
            },
            "accept_sasl" => Action::AcceptSasl {
                stream: self.existing(st.accept_sasl.as_ref()?, w)?,
                timeout: self.duration(&st.timeout, timeout),
            },
            "sasl_external" => Action::SaslExternal {
                stream: self.existing(st.sasl_external.as_ref()?, w)?,
                authzid: match st.authzid.as_ref().map(|a| a.get_ref().as_str()) {
                    None | Some("domain") => Authzid::Domain,
                    Some("=") => Authzid::Equals,
                    Some("") | Some("empty") => Authzid::Empty,
                    Some(other) => Authzid::Raw(other.to_string()),
                },
                timeout: self.duration(&st.timeout, timeout),
            },
            "expect_eof" => Action::ExpectEof {
                stream: self.existing(st.expect_eof.as_ref()?, w)?,
                timeout: self.duration(&st.timeout, timeout),
            },
            "expect_none" => Action::ExpectNone {
                stream: self.existing(st.expect_none.as_ref()?, w)?,
                window: self.duration(&st.window, DEFAULT_WINDOW),
            },
            "expect_all" => {
                let list = st.expect_all.as_ref()?;
                if list.get_ref().is_empty() {
                    self.err(list.span(), "expect_all needs at least one item");
                }
                let mut items = Vec::new();
                // Captures of one item become visible only after the whole step, since the
                // items may arrive in any order.
                let mut new_caps = Vec::new();
                for it in list.get_ref() {
                    if let Some(item) = self.expect_item(it, w, &mut new_caps) {
                        items.push(item);
                    }
                }
                w.captures.extend(new_caps);
                Action::ExpectAll {
                    items,
                    timeout: self.duration(&st.timeout, timeout),
                }
            }
            "close" => Action::Close {
                stream: self.existing(st.close.as_ref()?, w)?,
            },
            "reset" => Action::Reset {
                stream: self.existing(st.reset.as_ref()?, w)?,
            },
            "dialback" => {
                let stream_s = st.dialback.as_ref()?;
                self.name(stream_s, "stream");
                let stream = stream_s.get_ref().clone();
                let verify_stream = self.verify_stream(st, &stream);
                w.streams.entry(stream.clone()).or_insert(StreamInfo {
                    content_ns: ns::SERVER,
                });
                w.streams
                    .entry(verify_stream.clone())
                    .or_insert(StreamInfo {
                        content_ns: ns::SERVER,
                    });
                let actor = self.actor(st, &stream, false, "dialback", w)?;
                let mut sub = |f: &Option<Spanned<String>>| -> Option<String> {
                    let f = f.as_ref()?;
                    if let Err(e) = template::substitute(f.get_ref(), &|n| w.lookup(n)) {
                        self.err(f.span(), format!("dialback: {e}"));
                    }
                    Some(f.get_ref().clone())
                };
                let (from, to) = (sub(&st.from), sub(&st.to));
                Action::Dialback {
                    stream,
                    actor,
                    from,
                    to,
                    verify_stream,
                }
            }
            "accept_dialback" => {
                let stream_s = st.accept_dialback.as_ref()?;
                self.name(stream_s, "stream");
                let stream = stream_s.get_ref().clone();
                let verify_stream = self.verify_stream(st, &stream);
                w.streams.entry(stream.clone()).or_insert(StreamInfo {
                    content_ns: ns::SERVER,
                });
                w.streams
                    .entry(verify_stream.clone())
                    .or_insert(StreamInfo {
                        content_ns: ns::SERVER,
                    });
                let actor = self.actor(st, &stream, false, "accept_dialback", w)?;
                Action::AcceptDialback {
                    stream,
                    actor,
                    timeout: self.duration(&st.timeout, timeout),
                    verify_stream,
                    if_requested: st.if_requested.as_ref().is_some_and(|b| *b.get_ref()),
                }
            }
            _ => return None,
        };
        Some(Step {
            index,
            line,
            covers,
            note,
            action: act,
        })
    }

    fn connect(&mut self, st: &StepFile, w: &mut Walk<'_>) -> Option<Action> {
        let stream = self.new_stream(st.connect.as_ref()?, w)?;
        let port = match &st.port {
            None => PortKind::S2s,
            Some(p) => match p.get_ref().as_str() {
                "s2s" => PortKind::S2s,
                "component" => PortKind::Component,
                other => {
                    self.err(
                        p.span(),
                        format!("port must be \"s2s\" or \"component\", not {other:?}"),
                    );
                    return None;
                }
            },
        };
        // The stream counts as created even if the actor is wrong, so later steps do not
        // report follow-on errors.
        let content_ns = if port == PortKind::Component {
            ns::COMPONENT_ACCEPT
        } else {
            ns::SERVER
        };
        w.streams.insert(stream.clone(), StreamInfo { content_ns });
        let actor = self.actor(st, &stream, port == PortKind::Component, "connect", w)?;
        Some(Action::Connect {
            stream,
            actor,
            port,
        })
    }

    /// The step's `actor`: it must exist; component actors only on the component port
    /// (XEP-0114 §2), XMPP actors everywhere else.
    fn actor(
        &mut self,
        st: &StepFile,
        stream: &str,
        component: bool,
        action: &str,
        w: &Walk<'_>,
    ) -> Option<String> {
        let Some(a) = &st.actor else {
            return self.missing(
                st,
                action,
                "actor",
                &format!(" (the actor that owns stream {stream:?})"),
            );
        };
        let name = a.get_ref();
        match w.actors.iter().find(|x| x.name == *name) {
            None => {
                self.err(a.span(), format!("{action}: unknown actor {name:?}"));
                None
            }
            Some(x) if matches!(x.kind, ActorKind::Sip(_)) => {
                self.err(a.span(), format!("{action}: {name:?} is a SIP actor; it takes `send`/`expect` with `sip` only"));
                None
            }
            Some(x) => {
                let is_component = matches!(x.kind, ActorKind::Component { .. });
                if is_component && !component {
                    self.err(a.span(), format!("{action}: {name:?} is a component actor; it can only `connect` with port = \"component\""));
                    None
                } else if !is_component && component {
                    self.err(a.span(), format!("{action}: port = \"component\" needs a [component.NAME] actor, {name:?} is an XMPP server"));
                    None
                } else {
                    Some(name.clone())
                }
            }
        }
    }

    fn missing<T>(&mut self, st: &StepFile, action: &str, key: &str, why: &str) -> Option<T> {
        let span = st.action_keys().first().map_or(0..0, |(_, s)| s.clone());
        self.err(span, format!("{action} needs `{key}`{why}"));
        None
    }

    fn required_xml<'s>(&mut self, st: &'s StepFile, action: &str) -> Option<&'s Spanned<String>> {
        match &st.xml {
            Some(x) => Some(x),
            None => self.missing(st, action, "xml", " (the template or text)"),
        }
    }

    fn verify_stream(&mut self, st: &StepFile, stream: &str) -> String {
        match &st.verify_stream {
            Some(v) => {
                self.name(v, "stream");
                if v.get_ref() == stream {
                    self.err(
                        v.span(),
                        "verify_stream must differ from the stream being authenticated",
                    );
                }
                v.get_ref().clone()
            }
            None => format!("{stream}_verify"),
        }
    }

    /// A stream `connect`/`accept` creates: a valid name not used before.
    fn new_stream(&mut self, s: &Spanned<String>, w: &Walk<'_>) -> Option<String> {
        self.name(s, "stream");
        self.not_sip_actor(s, w);
        if w.streams.contains_key(s.get_ref()) {
            self.err(
                s.span(),
                format!(
                    "stream {:?} already exists; each stream name is created once",
                    s.get_ref()
                ),
            );
            return None;
        }
        Some(s.get_ref().clone())
    }

    /// A stream a step uses: created by an earlier step.
    fn existing(&mut self, s: &Spanned<String>, w: &Walk<'_>) -> Option<String> {
        if !w.streams.contains_key(s.get_ref()) {
            self.err(
                s.span(),
                format!("stream {:?} is used before a step creates it (connect, accept, dialback, accept_dialback)", s.get_ref()),
            );
            return None;
        }
        Some(s.get_ref().clone())
    }

    /// Check a template's variables and syntax now, with dummy values; record its captures.
    fn template(&mut self, xml: &Spanned<String>, content_ns: &str, w: &mut Walk<'_>) {
        let ctx = template::stream_context(content_ns);
        match template::prepare_template(xml.get_ref(), &|n| w.lookup(n), &ctx) {
            Ok(t) => {
                for c in t.capture_names() {
                    self.capture(&c, xml.span(), w, None);
                }
            }
            Err(e) => self.err(xml.span(), format!("template: {e}")),
        }
    }

    fn capture(
        &mut self,
        name: &str,
        span: Range<usize>,
        w: &mut Walk<'_>,
        pending: Option<&mut Vec<String>>,
    ) {
        if w.actors.iter().any(|a| a.name == name) {
            self.err(
                span,
                format!("capture {{id:{name}}} has the name of an actor"),
            );
            return;
        }
        match pending {
            Some(p) => p.push(name.to_string()),
            None => w.captures.push(name.to_string()),
        }
    }

    fn expect_item(
        &mut self,
        it: &Spanned<ExpectItemFile>,
        w: &mut Walk<'_>,
        caps: &mut Vec<String>,
    ) -> Option<ExpectItem> {
        let item = it.get_ref();
        let stream = self.existing(&item.stream, w)?;
        let eof = item.eof.as_ref().map(|e| *e.get_ref());
        match (&item.xml, eof) {
            (Some(xml), None) => {
                let ctx = template::stream_context(
                    w.streams.get(&stream).map_or(ns::SERVER, |i| i.content_ns),
                );
                match template::prepare_template(xml.get_ref(), &|n| w.lookup(n), &ctx) {
                    Ok(t) => {
                        for c in t.capture_names() {
                            self.capture(&c, xml.span(), w, Some(caps));
                        }
                    }
                    Err(e) => self.err(xml.span(), format!("template: {e}")),
                }
                Some(ExpectItem {
                    stream,
                    template: Some(xml.get_ref().clone()),
                })
            }
            (None, Some(true)) => Some(ExpectItem {
                stream,
                template: None,
            }),
            _ => {
                self.err(
                    it.span(),
                    "an expect_all item is { stream, xml } or { stream, eof = true }",
                );
                None
            }
        }
    }
}

/// Names defined at the current step.
struct Walk<'a> {
    streams: HashMap<String, StreamInfo>,
    captures: Vec<String>,
    actors: &'a [Actor],
}

impl Walk<'_> {
    /// Dummy values for every variable defined so far (docs/scenarios.md "Built-in
    /// variables"); `None` for an undefined one.
    fn lookup(&self, name: &str) -> Option<String> {
        if name == "sut" {
            return Some("sut.invalid".into());
        }
        if let Some((s, field)) = name.split_once('.') {
            return (self.streams.contains_key(s) && template::STREAM_FIELDS.contains(&field))
                .then(|| format!("{s}-{field}"));
        }
        if let Some(a) = self.actors.iter().find(|a| a.name == name) {
            return Some(a.variable().to_string());
        }
        if self.captures.iter().any(|c| c == name) {
            return Some(format!("{name}-value"));
        }
        // The gateway's domain (docs/scenarios.md "Built-in variables").
        (name == GW_VAR).then(|| GW_PROBE.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    const GOOD: &str = r#"title  = "Response header"
covers = ["STR-02", "STR-03"]
requires = ["dialback"]
timeout = "1.5s"

[xmpp.rx]
domain = "remote.test"

[component.comp]
domain = "c.sut.test"
secret = "s3"

[[step]]
connect = "in"
actor = "rx"

[[step]]
send = "in"
xml = """<?xml version='1.0'?><stream:stream xmlns='jabber:server'
  xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback'
  from='{rx}' to='{sut}' version='1.0'>"""

[[step]]
expect = "in"
covers = ["STR-02"]
xml = """<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams'
  from='{sut}' to='{rx}' id='{id:sid}' version='1.0'>"""

[[step]]
expect = "in"
exact = true
timeout = "250ms"
xml = "<stream:features><dialback xmlns='urn:xmpp:features:dialback'/></stream:features>"

[[step]]
dialback = "in"
actor = "rx"
note = "authenticate"

[[step]]
send = "in"
xml = "<message from='a@{rx}' to='b@{sut}' id='{sid}-{in.id}'><body>k={in.key} {{x}}</body></message>"

[[step]]
expect_all = [ { stream = "in", xml = "<message id='{id:m}'/>" }, { stream = "in_verify", eof = true } ]

[[step]]
expect_none = "in"

[[step]]
connect = "c"
actor = "comp"
port = "component"

[[step]]
expect = "c"
xml = "<handshake/>"

[[step]]
accept_dialback = "out"
actor = "rx"
verify_stream = "out_v"

[[step]]
send = "out_v"
xml = "{m}"

[[step]]
close = "in"

[[step]]
expect_eof = "in"
"#;

    fn cat() -> Catalogue {
        match Catalogue::builtin() {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        }
    }

    fn load(text: &str) -> Result<Scenario, LoadError> {
        load_str(text, Path::new("scenarios/t/x.toml"), &cat())
    }

    #[test]
    fn loads_a_full_scenario() {
        let s = match load(GOOD) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(s.title, "Response header");
        assert_eq!(s.covers, vec!["STR-02", "STR-03"]);
        assert_eq!(s.requires, vec!["dialback"]);
        assert_eq!(s.timeout, Duration::from_millis(1500));
        let names: Vec<&str> = s.actors.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, vec!["rx", "comp"]);
        assert_eq!(
            s.actors.first().map(|a| &a.kind),
            Some(&ActorKind::Xmpp {
                domain: "remote.test".into(),
                secret: "fedcheck-secret-remote.test".into()
            })
        );
        assert_eq!(s.steps.len(), 14);
        let lines: Vec<usize> = s.steps.iter().map(|s| s.line).take(3).collect();
        assert_eq!(lines, vec![13, 17, 23]);
        let st = &s.steps[2];
        assert_eq!(
            (st.index, st.covers.clone()),
            (2, vec!["STR-02".to_string()])
        );
        assert_eq!(s.steps[0].covers, vec!["STR-02", "STR-03"]);
        assert_eq!(
            s.steps[0].action,
            Action::Connect {
                stream: "in".into(),
                actor: "rx".into(),
                port: PortKind::S2s
            }
        );
        match &s.steps[3].action {
            Action::Expect { timeout, exact, .. } => {
                assert_eq!((*timeout, *exact), (Duration::from_millis(250), true))
            }
            other => panic!("{other:?}"),
        }
        match &s.steps[2].action {
            Action::Expect { timeout, exact, .. } => {
                assert_eq!((*timeout, *exact), (Duration::from_millis(1500), false))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(s.steps[4].note.as_deref(), Some("authenticate"));
        assert_eq!(
            s.steps[4].action,
            Action::Dialback {
                stream: "in".into(),
                actor: "rx".into(),
                from: None,
                to: None,
                verify_stream: "in_verify".into()
            }
        );
        assert_eq!(
            s.steps[7].action,
            Action::ExpectNone {
                stream: "in".into(),
                window: DEFAULT_WINDOW
            }
        );
        match &s.steps[6].action {
            Action::ExpectAll { items, .. } => {
                assert_eq!(
                    items.get(1),
                    Some(&ExpectItem {
                        stream: "in_verify".into(),
                        template: None
                    })
                )
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            s.steps[10].action,
            Action::AcceptDialback {
                stream: "out".into(),
                actor: "rx".into(),
                timeout: Duration::from_millis(1500),
                verify_stream: "out_v".into(),
                if_requested: false,
            }
        );
    }

    /// `if_requested` on `accept_dialback` (a receiving server may first send its own
    /// db:result on the stream it opened, XEP-0220 §2.1.2); absent means false.
    #[test]
    fn accept_dialback_if_requested_is_read() {
        let text = good_with(
            "verify_stream = \"out_v\"",
            "verify_stream = \"out_v\"\nif_requested = true",
        );
        let s = load(&text).expect("loads");
        assert!(matches!(
            s.steps[10].action,
            Action::AcceptDialback {
                if_requested: true,
                ..
            }
        ));
    }

    /// `branch` on `expect`: its stream must exist, `end` is pass or inconclusive (the
    /// latter with a note), and a branch cannot capture.
    #[rstest]
    #[case("{ stream = \"in\", xml = \"<a/>\", end = \"pass\" }", None)]
    #[case("{ xml = \"<a/>\" }", None)]
    #[case(
        "{ stream = \"nope\", xml = \"<a/>\" }",
        Some("used before a step creates it")
    )]
    #[case("{ xml = \"<a/>\", end = \"stop\" }", Some("branch end must be"))]
    #[case("{ xml = \"<a/>\", end = \"inconclusive\" }", Some("needs a `note`"))]
    #[case("{ xml = \"<a id='{id:x}'/>\" }", Some("cannot capture"))]
    #[case("{ xml = \"<a/>\", colour = 1 }", Some("unknown field `colour`"))]
    fn branches_are_checked(#[case] branch: &str, #[case] want: Option<&str>) {
        let text = good_with(
            "exact = true\ntimeout = \"250ms\"",
            &format!("exact = true\ntimeout = \"250ms\"\nbranch = [{branch}]"),
        );
        match (load(&text), want) {
            (Ok(s), None) => assert!(matches!(
                &s.steps[3].action,
                Action::Expect { branches, .. } if branches.len() == 1 && branches[0].stream == "in"
            )),
            (Err(e), Some(w)) => assert!(e.to_string().contains(w), "{e}"),
            (Ok(_), Some(w)) => panic!("loaded; wanted {w:?}"),
            (Err(e), None) => panic!("{e}"),
        }
    }

    /// Replace the first occurrence of `from` in GOOD.
    fn good_with(from: &str, to: &str) -> String {
        assert!(GOOD.contains(from), "{from}");
        GOOD.replacen(from, to, 1)
    }

    #[rstest]
    #[case(good_with("title  =", "titel ="), None, "unknown field `titel`")]
    #[case(
        good_with("domain = \"remote.test\"", "domain = \"remote.test\"\nport = 1"),
        Some(8),
        "unknown field `port`"
    )]
    #[case(
        good_with("[[step]]\nconnect = \"in\"", "[[step]]\nconect = \"in\""),
        Some(14),
        "unknown field `conect`"
    )]
    #[case(
        good_with("covers = [\"STR-02\", \"STR-03\"]", "covers = []"),
        Some(2),
        "at least one requirement"
    )]
    #[case(
        good_with("\"STR-03\"]", "\"STR-99\"]"),
        Some(2),
        "unknown requirement ID \"STR-99\""
    )]
    #[case(
        good_with("covers = [\"STR-02\"]\nxml", "covers = [\"XX-01\"]\nxml"),
        Some(25),
        "unknown requirement ID \"XX-01\""
    )]
    #[case(
        good_with("requires = [\"dialback\"]", "requires = [\"telepathy\"]"),
        Some(3),
        "unknown capability"
    )]
    #[case(
        good_with("timeout = \"1.5s\"", "timeout = \"2 s\""),
        Some(4),
        "invalid duration"
    )]
    #[case(
        good_with("timeout = \"1.5s\"", "timeout = \"0ms\""),
        Some(4),
        "more than 0"
    )]
    #[case(
        good_with("timeout = \"1.5s\"", "timeout = \"601s\""),
        Some(4),
        "10 minute"
    )]
    #[case(
        good_with("connect = \"in\"\nactor = \"rx\"", "connect = \"in\"\nactor = \"ry\""),
        Some(15),
        "unknown actor \"ry\""
    )]
    #[case(
        good_with("connect = \"in\"\nactor = \"rx\"", "connect = \"in\""),
        Some(14),
        "connect needs `actor"
    )]
    #[case(
        good_with(
            "connect = \"in\"\nactor = \"rx\"",
            "connect = \"in\"\nactor = \"comp\""
        ),
        Some(15),
        "component actor"
    )]
    #[case(
        good_with("actor = \"comp\"", "actor = \"rx\""),
        Some(52),
        "needs a [component.NAME] actor"
    )]
    #[case(
        good_with("port = \"component\"", "port = \"c2s\""),
        Some(53),
        "port must be"
    )]
    #[case(
        good_with("connect = \"in\"\nactor = \"rx\"", "connect = \"In\"\nactor = \"rx\""),
        Some(14),
        "must match [a-z][a-z0-9_]*"
    )]
    #[case(
        good_with("[[step]]\nsend = \"in\"", "[[step]]\nsend = \"nope\""),
        Some(18),
        "used before a step creates it"
    )]
    #[case(
        good_with("[[step]]\nsend = \"in\"", "[[step]]\nsend = \"in\"\nexpect = \"in\""),
        Some(19),
        "several action keys"
    )]
    #[case(
        good_with("note = \"authenticate\"", "xml = \"<x/>\""),
        Some(38),
        "key `xml` is not used by `dialback`"
    )]
    #[case(
        good_with("[[step]]\nclose = \"in\"", "[[step]]\nnote = \"x\""),
        Some(68),
        "no action key"
    )]
    #[case(
        good_with(
            "to='{sut}' version='1.0'>\"\"\"\n\n[[step]]\nexpect",
            "to='{sutt}' version='1.0'>\"\"\"\n\n[[step]]\nexpect"
        ),
        Some(19),
        "undefined variable {sutt}"
    )]
    #[case(
        good_with("id='{id:sid}'", "id='{id:sid'"),
        Some(26),
        "unterminated placeholder"
    )]
    #[case(good_with("<handshake/>", "<handshake>"), Some(57), "not well-formed")]
    #[case(
        good_with("{sid}-{in.id}", "{sid}-{out.id}"),
        Some(42),
        "undefined variable {out.id}"
    )]
    #[case(
        good_with("xml = \"{m}\"", "xml = \"{mm}\""),
        Some(66),
        "undefined variable {mm}"
    )]
    #[case(
        good_with("{ stream = \"in_verify\", eof = true }", "{ stream = \"in_verify\" }"),
        Some(45),
        "expect_all item"
    )]
    #[case(
        good_with(
            "{ stream = \"in_verify\", eof = true }",
            "{ stream = \"in_verify\", eof = true, xml = \"<a/>\" }"
        ),
        Some(45),
        "expect_all item"
    )]
    #[case(
        good_with("[component.comp]", "[component.rx]"),
        Some(9),
        "declared twice"
    )]
    #[case(
        good_with("connect = \"c\"", "connect = \"in\""),
        Some(51),
        "already exists"
    )]
    #[case(good_with("id='{id:m}'", "id='{id:rx}'"), Some(45), "name of an actor")]
    #[case(
        good_with("verify_stream = \"out_v\"", "verify_stream = \"out\""),
        Some(62),
        "must differ"
    )]
    #[case(good_with("xml = \"{m}\"", ""), Some(65), "send needs `xml`")]
    #[case(
        good_with(
            "dialback = \"in\"\nactor = \"rx\"",
            "dialback = \"in\"\nactor = \"rx\"\nif_requested = true"
        ),
        None,
        "if_requested"
    )]
    fn rejects(#[case] text: String, #[case] line: Option<usize>, #[case] msg: &str) {
        let e = match load(&text) {
            Ok(_) => panic!("accepted"),
            Err(e) => e,
        };
        let LoadError::Invalid { diagnostics, .. } = &e else {
            panic!("{e}")
        };
        let d = diagnostics.iter().find(|d| d.message.contains(msg));
        let d = match d {
            Some(d) => d,
            None => panic!("no diagnostic containing {msg:?}: {e}"),
        };
        if line.is_some() {
            assert_eq!(d.line, line, "{e}");
        }
        let shown = e.to_string();
        assert!(shown.starts_with("scenarios/t/x.toml:"), "{shown}");
    }

    #[test]
    fn several_errors_are_all_reported_with_positions() {
        let text = good_with("actor = \"rx\"", "actor = \"ry\"")
            .replace("close = \"in\"", "close = \"zz\"");
        let e = match load(&text) {
            Ok(_) => panic!("accepted"),
            Err(e) => e.to_string(),
        };
        let lines: Vec<&str> = e.lines().collect();
        assert_eq!(
            lines.len(),
            2,
            "one diagnostic per problem, no cascade: {e}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("scenarios/t/x.toml:15:9: connect: unknown actor")),
            "{e}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.contains(":69:") && l.contains("\"zz\"")),
            "{e}"
        );
    }

    #[test]
    fn load_file_reads_and_reports_io_errors() {
        let dir = match tempfile::tempdir() {
            Ok(d) => d,
            Err(e) => panic!("{e}"),
        };
        let p = dir.path().join("s.toml");
        assert!(std::fs::write(&p, GOOD).is_ok());
        let s = load_file(&p, &cat());
        assert_eq!(s.ok().map(|s| s.path), Some(p.clone()));
        let missing = dir.path().join("missing.toml");
        assert!(matches!(
            load_file(&missing, &cat()),
            Err(LoadError::Io { .. })
        ));
    }

    #[test]
    fn the_documented_example_loads() {
        // The first TOML block of docs/scenarios.md is the format's example; keep it valid.
        let doc = include_str!("../../docs/scenarios.md");
        let block = doc
            .split("```toml\n")
            .nth(1)
            .and_then(|b| b.split("```").next());
        let s = match block.map(load) {
            Some(Ok(s)) => s,
            Some(Err(e)) => panic!("{e}"),
            None => panic!("no toml block in docs/scenarios.md"),
        };
        assert_eq!(s.steps.len(), 3);
    }

    #[rstest]
    #[case("250ms", Some(250))]
    #[case("2s", Some(2000))]
    #[case("1.5s", Some(1500))]
    #[case("0.001s", Some(1))]
    #[case("600s", Some(600_000))]
    #[case("600.001s", None)]
    #[case("0s", None)]
    #[case("1.s", None)]
    #[case(".5s", None)]
    #[case("1.0005s", None)]
    #[case("1.5ms", None)]
    #[case("5", None)]
    #[case("-1s", None)]
    #[case("1m", None)]
    #[case("", None)]
    #[case("99999999999999999999s", None)]
    fn durations(#[case] s: &str, #[case] ms: Option<u64>) {
        assert_eq!(parse_duration(s).ok(), ms.map(Duration::from_millis));
    }
}
