//! The scenario file as written (docs/scenarios.md): serde types that mirror the TOML
//! exactly. Unknown keys are errors everywhere (`deny_unknown_fields`), and the values the
//! loader reports about keep their byte span so an error can name file:line.
//!
//! Nothing here is validated beyond TOML types; `load` turns this into an executable
//! [`crate::harness::load::Scenario`].

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// A whole scenario file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioFile {
    pub title: Spanned<String>,
    pub covers: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub requires: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub timeout: Option<Spanned<String>>,
    /// `[xmpp.<name>]`: simulated remote XMPP servers.
    #[serde(default)]
    pub xmpp: BTreeMap<String, Spanned<XmppActorFile>>,
    /// `[component.<name>]`: simulated XEP-0114 components.
    #[serde(default)]
    pub component: BTreeMap<String, Spanned<ComponentActorFile>>,
    /// `[sip.<name>]`: simulated SIP user agents (src/harness/sip_actor.rs).
    #[serde(default)]
    pub sip: BTreeMap<String, Spanned<SipActorFile>>,
    /// `[[step]]`, in file order.
    #[serde(default)]
    pub step: Vec<Spanned<StepFile>>,
    /// `[matrix]`: read by [`crate::harness::matrix`] before this model is parsed.
    #[serde(default)]
    pub matrix: Option<toml::Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct XmppActorFile {
    pub domain: Spanned<String>,
    #[serde(default)]
    pub secret: Option<String>,
    /// The certificate it presents in TLS (a preset of the run's test PKI).
    #[serde(default)]
    pub cert: Option<Spanned<String>>,
    /// How the SUT must be configured for this partner domain (Lync's per-partner settings,
    /// MS-06..MS-09): the bundled target applies it, a third-party target must declare it.
    #[serde(default)]
    pub partner: Option<Spanned<PartnerFile>>,
}

/// `partner = { tls = "required", sasl = "optional", dialback = true, keepalive = false }`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PartnerFile {
    #[serde(default)]
    pub tls: Option<String>,
    #[serde(default)]
    pub sasl: Option<String>,
    #[serde(default, deserialize_with = "bool_or_text")]
    pub dialback: Option<bool>,
    #[serde(default, deserialize_with = "bool_or_text")]
    pub keepalive: Option<bool>,
}

/// A boolean written as `true` or as `"true"` (matrix files put `${axis}` values in strings).
fn bool_or_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum B {
        Bool(bool),
        Text(String),
    }
    match B::deserialize(d)? {
        B::Bool(b) => Ok(Some(b)),
        B::Text(t) => match t.as_str() {
            "true" => Ok(Some(true)),
            "false" => Ok(Some(false)),
            other => Err(serde::de::Error::custom(format!(
                "expected true or false, found {other:?}"
            ))),
        },
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentActorFile {
    pub domain: Spanned<String>,
    pub secret: String,
}

/// `[sip.<name>]`: a simulated SIP user agent.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SipActorFile {
    /// Its address of record, e.g. `sip:alice@sip.example`.
    pub uri: Spanned<String>,
    /// `"udp"` (default) or `"tcp"`.
    #[serde(default)]
    pub transport: Option<Spanned<String>>,
    /// The SIP dialect it speaks: `"rfc7572"` (default; page mode, RFC 3428).
    #[serde(default)]
    pub profile: Option<Spanned<String>>,
    /// Default final status for requests `expect` steps match (see docs/scenarios.md).
    #[serde(default)]
    pub answer: Option<Spanned<u16>>,
}

/// One `[[step]]` table: exactly one action key plus the keys that action uses.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepFile {
    // --- action keys (the value names the stream)
    pub connect: Option<Spanned<String>>,
    pub accept: Option<Spanned<String>>,
    pub send: Option<Spanned<String>>,
    pub expect: Option<Spanned<String>>,
    pub expect_eof: Option<Spanned<String>>,
    pub expect_none: Option<Spanned<String>>,
    pub expect_all: Option<Spanned<Vec<Spanned<ExpectItemFile>>>>,
    pub close: Option<Spanned<String>>,
    pub reset: Option<Spanned<String>>,
    pub dialback: Option<Spanned<String>>,
    pub accept_dialback: Option<Spanned<String>>,
    pub starttls: Option<Spanned<String>>,
    pub accept_starttls: Option<Spanned<String>>,
    pub sasl_external: Option<Spanned<String>>,
    pub accept_sasl: Option<Spanned<String>>,
    /// The value names an actor (not a stream): the SUT must not connect to it.
    pub expect_no_connection: Option<Spanned<String>>,
    // --- other keys
    pub actor: Option<Spanned<String>>,
    pub port: Option<Spanned<String>>,
    pub xml: Option<Spanned<String>>,
    /// A SIP message (`send`/`expect` on a SIP actor), see src/harness/sip_match.rs.
    pub sip: Option<Spanned<String>>,
    /// `send` with `sip`: the bytes as written, not parsed or completed (hostile input).
    pub raw: Option<Spanned<bool>>,
    /// Alternatives to `xml` for `expect` (`"{nothing}"`: no unit within the timeout).
    pub or: Option<Spanned<Vec<Spanned<String>>>>,
    /// `expect`: alternatives on this or another stream that may end the scenario
    /// (docs/scenarios.md "Branches").
    pub branch: Option<Spanned<Vec<Spanned<BranchFile>>>>,
    pub timeout: Option<Spanned<String>>,
    pub exact: Option<Spanned<bool>>,
    pub window: Option<Spanned<String>>,
    pub from: Option<Spanned<String>>,
    pub to: Option<Spanned<String>>,
    pub verify_stream: Option<Spanned<String>>,
    /// `accept_dialback`: act only if the SUT's next unit on the stream is its own
    /// `<db:result/>`; anything else is left for the following steps.
    pub if_requested: Option<Spanned<bool>>,
    /// `sasl_external`: what to send as authorization identity (D-06).
    pub authzid: Option<Spanned<String>>,
    pub covers: Option<Spanned<Vec<Spanned<String>>>>,
    pub note: Option<Spanned<String>>,
    /// Matrix files: keep the step only in cells where every clause holds.
    pub when: Option<Spanned<Vec<Spanned<String>>>>,
}

/// One `branch` of an `expect`: `{ stream?, xml, end?, note? }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BranchFile {
    /// Default: the step's stream.
    #[serde(default)]
    pub stream: Option<Spanned<String>>,
    pub xml: Spanned<String>,
    /// `"pass"` or `"inconclusive"`: the scenario ends here when this branch matched.
    #[serde(default)]
    pub end: Option<Spanned<String>>,
    #[serde(default)]
    pub note: Option<Spanned<String>>,
}

/// One item of `expect_all`: `{ stream, xml }` or `{ stream, eof = true }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectItemFile {
    pub stream: Spanned<String>,
    #[serde(default)]
    pub xml: Option<Spanned<String>>,
    #[serde(default)]
    pub eof: Option<Spanned<bool>>,
}

/// Keys of a step table other than the action key, with presence and span, so the loader
/// can check them against [`crate::harness::load`]'s table of keys each action uses.
impl StepFile {
    pub fn other_keys(&self) -> Vec<(&'static str, std::ops::Range<usize>)> {
        let mut v = Vec::new();
        macro_rules! key {
            ($($f:ident),*) => { $( if let Some(x) = &self.$f { v.push((stringify!($f), x.span())); } )* };
        }
        key!(
            actor,
            port,
            xml,
            sip,
            raw,
            or,
            branch,
            timeout,
            exact,
            window,
            from,
            to,
            verify_stream,
            if_requested,
            authzid,
            covers,
            note,
            when
        );
        v
    }

    /// The action keys present, with the span of their value.
    pub fn action_keys(&self) -> Vec<(&'static str, std::ops::Range<usize>)> {
        let mut v = Vec::new();
        macro_rules! key {
            ($($f:ident),*) => { $( if let Some(x) = &self.$f { v.push((stringify!($f), x.span())); } )* };
        }
        key!(
            connect,
            accept,
            send,
            expect,
            expect_eof,
            expect_none,
            expect_all,
            close,
            reset,
            dialback,
            accept_dialback,
            starttls,
            accept_starttls,
            sasl_external,
            accept_sasl,
            expect_no_connection
        );
        v
    }
}
