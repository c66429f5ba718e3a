//! Machine-readable reports for CI: JSON (a documented, versioned schema that
//! `fedcheck import` can read back — docs/json-schema.md), JUnit XML (the shape Jenkins,
//! GitLab and GitHub test reporters accept), and a markdown summary (docs/interop.md is
//! made of these).
//!
//! Every sink reads the same [`TargetRun`]: one target's outcomes plus what the report
//! needs about the target. None of them prints timings where a document should be
//! reproducible (markdown); JSON and JUnit carry them, as consumers expect.

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::catalogue::Catalogue;
use super::target::Target;
use super::transcript::{Dir, Unit};
use super::verdict::{Outcome, Verdict};
use super::waivers::Waiver;

/// The JSON schema's version: bumped on any incompatible change (a removed or renamed
/// field, a changed meaning); additions keep it.
pub const JSON_SCHEMA_VERSION: u32 = 1;

/// One target's finished run, as every sink sees it.
pub struct TargetRun<'a> {
    pub target: &'a Target,
    pub outcomes: &'a [Outcome],
    /// Exit code of the run (report::exit_code).
    pub exit_code: i32,
    pub elapsed: std::time::Duration,
    /// The SUT's version, when the target can tell (Target::probe_version).
    pub version: Option<String>,
}

/// `s2s` for `scenarios/s2s/x.toml`: the scenario's folder, which is its area.
pub fn area(o: &Outcome) -> String {
    o.path
        .parent()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "scenarios".into())
}

/// The scenario path without a leading `./` or `scenarios/`.
pub fn short_name(o: &Outcome) -> String {
    let name = o.name();
    name.strip_prefix("scenarios/")
        .map(str::to_string)
        .unwrap_or(name)
}

/// Counts per verdict, in [`Verdict::ALL`] order.
pub fn counts(outcomes: &[Outcome]) -> Vec<(Verdict, usize)> {
    Verdict::ALL
        .iter()
        .map(|v| (*v, outcomes.iter().filter(|o| o.verdict == *v).count()))
        .collect()
}

// ─── JSON ────────────────────────────────────────────────────────────────────────────

/// The top-level JSON document (docs/json-schema.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JsonReport {
    pub schema_version: u32,
    pub tool: JsonTool,
    pub target: JsonTarget,
    pub exit_code: i32,
    pub elapsed_ms: u64,
    /// Verdict name → count, every verdict present.
    pub summary: std::collections::BTreeMap<String, usize>,
    pub outcomes: Vec<JsonOutcome>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JsonTool {
    pub name: String,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JsonTarget {
    pub name: String,
    pub kind: String,
    pub description: Option<String>,
    /// The SUT's version, when known (schema 1 addition; absent in older documents).
    #[serde(default)]
    pub version: Option<String>,
    pub capabilities: Vec<String>,
    pub domains: Vec<String>,
    pub expected_failures: Vec<Waiver>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JsonOutcome {
    /// The scenario file as given to the run.
    pub scenario: String,
    pub cell: Option<String>,
    pub area: String,
    pub title: String,
    pub covers: Vec<String>,
    pub verdict: String,
    pub reason: Option<String>,
    pub failure: Option<JsonFailure>,
    pub waiver: Option<Waiver>,
    pub elapsed_ms: u64,
    pub sut_log: String,
    /// The normalised transcript (the snapshot text).
    pub normalised: String,
    pub transcript: Vec<JsonEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JsonFailure {
    pub step: usize,
    pub line: usize,
    pub covers: Vec<String>,
    pub level: String,
    pub stream: String,
    pub expected: String,
    pub got: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JsonEntry {
    pub seq: usize,
    /// Microseconds since the scenario started.
    pub at_us: u64,
    pub actor: String,
    pub stream: String,
    /// `to_sut` or `from_sut`.
    pub dir: String,
    /// `connected`, `header`, `element`, `stream_close`, `whitespace`, `undecodable`,
    /// `eof`, `reset`, `note`, `tls`, `sip`.
    pub kind: String,
    /// The wire bytes as text when they are UTF-8 (else absent, see `raw_hex`).
    pub raw: Option<String>,
    /// The wire bytes in hex when they are not UTF-8.
    pub raw_hex: Option<String>,
    /// Kind-specific detail: the note text, the undecodable reason, `local -> peer` of a
    /// connection, the whitespace length.
    pub detail: Option<String>,
}

fn unit_kind(u: &Unit) -> (&'static str, Option<String>) {
    match u {
        Unit::Connected { local, peer } => ("connected", Some(format!("{local} -> {peer}"))),
        Unit::Header(_) => ("header", None),
        Unit::Element(_) => ("element", None),
        Unit::StreamClose => ("stream_close", None),
        Unit::Whitespace(n) => ("whitespace", Some(n.to_string())),
        Unit::Undecodable { reason, .. } => ("undecodable", Some(reason.clone())),
        Unit::Eof => ("eof", None),
        Unit::Reset => ("reset", None),
        Unit::Note(n) => ("note", Some(n.clone())),
        Unit::Sip { retransmission, .. } => {
            ("sip", retransmission.then(|| "retransmission".to_string()))
        }
        Unit::Tls {
            version,
            alpn,
            peer,
        } => (
            "tls",
            Some(format!(
                "{version}; alpn {}; peer certificate: {peer}",
                alpn.as_deref().unwrap_or("none")
            )),
        ),
    }
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

pub fn json_report(run: &TargetRun<'_>) -> JsonReport {
    let outcomes = run
        .outcomes
        .iter()
        .map(|o| JsonOutcome {
            scenario: o.path.display().to_string(),
            cell: o.cell.clone(),
            area: area(o),
            title: o.title.clone(),
            covers: o.covers.clone(),
            verdict: o.verdict.as_str().to_string(),
            reason: o.reason.clone(),
            failure: o.failure.as_ref().map(|f| JsonFailure {
                step: f.step,
                line: f.line,
                covers: f.covers.clone(),
                level: f.level.as_str().to_string(),
                stream: f.stream.clone(),
                expected: f.expected.clone(),
                got: f.got.clone(),
            }),
            waiver: o.waiver.clone(),
            elapsed_ms: millis(o.elapsed),
            sut_log: o.sut_log.clone(),
            normalised: o.normalised.clone(),
            transcript: o
                .transcript
                .entries
                .iter()
                .map(|e| {
                    let (kind, detail) = unit_kind(&e.unit);
                    let (raw, raw_hex) = match std::str::from_utf8(&e.raw) {
                        Ok(s) => (Some(s.to_string()), None),
                        Err(_) => (None, Some(hex::encode(&e.raw))),
                    };
                    JsonEntry {
                        seq: e.seq,
                        at_us: u64::try_from(e.at.as_micros()).unwrap_or(u64::MAX),
                        actor: e.actor.clone(),
                        stream: e.stream.clone(),
                        dir: match e.dir {
                            Dir::ToSut => "to_sut",
                            Dir::FromSut => "from_sut",
                        }
                        .to_string(),
                        kind: kind.to_string(),
                        raw,
                        raw_hex,
                        detail,
                    }
                })
                .collect(),
        })
        .collect();
    JsonReport {
        schema_version: JSON_SCHEMA_VERSION,
        tool: JsonTool {
            name: "fedcheck".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        },
        target: JsonTarget {
            name: run.target.name().to_string(),
            kind: run.target.kind().to_string(),
            description: run.target.description().map(str::to_string),
            version: run.version.clone(),
            capabilities: run.target.capabilities(),
            domains: run.target.domains(),
            expected_failures: run.target.waivers().to_vec(),
        },
        exit_code: run.exit_code,
        elapsed_ms: millis(run.elapsed),
        summary: counts(run.outcomes)
            .into_iter()
            .map(|(v, n)| (v.as_str().to_string(), n))
            .collect(),
        outcomes,
    }
}

/// The JSON document as pretty-printed text (with a final newline).
pub fn json(run: &TargetRun<'_>) -> String {
    let mut s = serde_json::to_string_pretty(&json_report(run)).unwrap_or_else(|e| {
        // Serialising plain structs of strings and numbers cannot fail; say so if it does.
        format!("{{\"schema_version\": {JSON_SCHEMA_VERSION}, \"error\": \"{e}\"}}")
    });
    s.push('\n');
    s
}

// ─── JUnit XML ───────────────────────────────────────────────────────────────────────

/// Escape text for XML 1.0 content and attribute values. Characters XML 1.0 cannot carry
/// at all (most C0 controls, XML 1.0 §2.2 `Char`) become U+FFFD, so a transcript with
/// garbage bytes still yields a well-formed report.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// How a verdict appears in JUnit: consumers know pass, failure, error and skipped only.
/// Inconclusive and xfail are skipped *with* their reason (never a pass); warn is a pass
/// with the finding in system-out unless `strict`; xpass is a failure (a stale waiver).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JunitStatus {
    Passed,
    Failure,
    Error,
    Skipped,
}

fn junit_status(v: Verdict, strict: bool) -> JunitStatus {
    match v {
        Verdict::Pass => JunitStatus::Passed,
        Verdict::Warn if strict => JunitStatus::Failure,
        Verdict::Warn => JunitStatus::Passed,
        Verdict::Inconclusive | Verdict::XFail => JunitStatus::Skipped,
        Verdict::Fail | Verdict::XPass => JunitStatus::Failure,
        Verdict::Error => JunitStatus::Error,
    }
}

/// One line for a `message` attribute.
fn one_line(o: &Outcome) -> String {
    let base = match (&o.failure, &o.reason) {
        (Some(f), _) => format!(
            "step {} (line {}) [{}] on `{}`: expected {}",
            f.step,
            f.line,
            f.covers.join(" "),
            f.stream,
            f.expected.split_whitespace().collect::<Vec<_>>().join(" ")
        ),
        (None, Some(r)) => r.lines().next().unwrap_or_default().to_string(),
        (None, None) => o.verdict.as_str().to_string(),
    };
    match (&o.waiver, o.verdict) {
        (Some(w), Verdict::XFail) => format!("expected failure: {} ({})", w.reason, w.link),
        (Some(w), Verdict::XPass) => format!(
            "passed but listed as an expected failure; remove the waiver: {} ({})",
            w.reason, w.link
        ),
        _ => base,
    }
}

/// The JUnit document: one `<testsuite>` per target, one `<testcase>` per scenario or
/// matrix cell (classname = area, requirement IDs as testcase properties, the normalised
/// transcript in system-out, the SUT's log tail in system-err).
pub fn junit(runs: &[TargetRun<'_>], catalogue: &Catalogue, strict: bool) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let mut total = [0usize; 4]; // tests, failures, errors, skipped
    let mut suites = String::new();
    let mut total_time = 0.0;
    for run in runs {
        let mut n = [0usize; 4];
        let mut cases = String::new();
        for o in run.outcomes {
            n[0] += 1;
            let status = junit_status(o.verdict, strict);
            match status {
                JunitStatus::Failure => n[1] += 1,
                JunitStatus::Error => n[2] += 1,
                JunitStatus::Skipped => n[3] += 1,
                JunitStatus::Passed => {}
            }
            let _ = writeln!(
                cases,
                "    <testcase name=\"{}\" classname=\"{}\" time=\"{:.3}\">",
                xml_escape(&short_name(o)),
                xml_escape(&area(o)),
                o.elapsed.as_secs_f64()
            );
            cases.push_str("      <properties>\n");
            let mut props: Vec<(&str, String)> = vec![("verdict", o.verdict.as_str().into())];
            for id in &o.covers {
                props.push(("requirement", id.clone()));
            }
            if let Some(f) = &o.failure {
                for id in &f.covers {
                    props.push(("failed_requirement", id.clone()));
                }
                props.push(("level", f.level.as_str().into()));
            }
            if let Some(w) = &o.waiver {
                props.push(("waiver_link", w.link.clone()));
            }
            for (k, v) in props {
                let _ = writeln!(
                    cases,
                    "        <property name=\"{k}\" value=\"{}\"/>",
                    xml_escape(&v)
                );
            }
            cases.push_str("      </properties>\n");
            let msg = xml_escape(&one_line(o));
            let body = xml_escape(&super::report::details(o, catalogue));
            match status {
                JunitStatus::Skipped => {
                    let _ = writeln!(cases, "      <skipped message=\"{msg}\"/>");
                }
                JunitStatus::Failure => {
                    let _ = writeln!(
                        cases,
                        "      <failure message=\"{msg}\" type=\"{}\">{body}</failure>",
                        o.verdict.as_str()
                    );
                }
                JunitStatus::Error => {
                    let _ = writeln!(
                        cases,
                        "      <error message=\"{msg}\" type=\"error\">{body}</error>"
                    );
                }
                JunitStatus::Passed => {}
            }
            let mut system_out = o.normalised.clone();
            if o.verdict == Verdict::Warn && !strict {
                system_out = format!("{}\n{system_out}", super::report::details(o, catalogue));
            }
            let _ = writeln!(
                cases,
                "      <system-out>{}</system-out>",
                xml_escape(&system_out)
            );
            if !o.sut_log.is_empty() {
                let _ = writeln!(
                    cases,
                    "      <system-err>{}</system-err>",
                    xml_escape(&o.sut_log)
                );
            }
            cases.push_str("    </testcase>\n");
        }
        let time = run.elapsed.as_secs_f64();
        total_time += time;
        let _ = writeln!(
            suites,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{time:.3}\">",
            xml_escape(&format!("fedcheck: {}", run.target.name())),
            n[0],
            n[1],
            n[2],
            n[3]
        );
        suites.push_str("    <properties>\n");
        let _ = writeln!(
            suites,
            "      <property name=\"target\" value=\"{}\"/>",
            xml_escape(run.target.name())
        );
        let _ = writeln!(
            suites,
            "      <property name=\"target_kind\" value=\"{}\"/>",
            run.target.kind()
        );
        for c in run.target.capabilities() {
            let _ = writeln!(
                suites,
                "      <property name=\"capability\" value=\"{}\"/>",
                xml_escape(&c)
            );
        }
        suites.push_str("    </properties>\n");
        suites.push_str(&cases);
        suites.push_str("  </testsuite>\n");
        for (t, x) in total.iter_mut().zip(n) {
            *t += x;
        }
    }
    let _ = writeln!(
        out,
        "<testsuites name=\"fedcheck\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{total_time:.3}\">",
        total[0], total[1], total[2], total[3]
    );
    out.push_str(&suites);
    out.push_str("</testsuites>\n");
    out
}

// ─── Markdown ────────────────────────────────────────────────────────────────────────

/// Text for a markdown table cell: one line, pipes escaped.
fn cell(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

/// Transcript lines quoted per deviation in markdown (the JSON report has all of them).
const MARKDOWN_TRANSCRIPT_LINES: usize = 8;

/// Shortest run of hex digits and dashes taken for a volatile value (a stream id, a UUID,
/// a dialback key) in markdown.
const VOLATILE_MIN: usize = 16;

/// Replace volatile values (runs of at least [`VOLATILE_MIN`] hex digits and dashes that
/// contain a digit: UUIDs, HMAC keys, random ids) with `[…]`, so a document made from two
/// runs of the same SUT reads the same. The JSON and JUnit reports keep the raw text.
pub fn scrub(s: &str) -> String {
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    let volatile = |w: &str| {
        w.len() >= VOLATILE_MIN
            && w.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
            && w.chars().any(|c| c.is_ascii_digit())
    };
    let mut out = String::with_capacity(s.len());
    let mut word = String::new();
    for c in s.chars() {
        if is_word(c) {
            word.push(c);
            continue;
        }
        out.push_str(if volatile(&word) { "[…]" } else { &word });
        word.clear();
        out.push(c);
    }
    out.push_str(if volatile(&word) { "[…]" } else { &word });
    out
}

/// A fenced code block that the content cannot close early.
fn fenced(s: &str) -> String {
    let mut fence = "```".to_string();
    while s.contains(&fence) {
        fence.push('`');
    }
    format!("{fence}\n{}\n{fence}\n", s.trim_end())
}

/// What a failure saw, for a reproducible document: the mismatch explanation when there is
/// one (the unit itself is in the normalised transcript, attributes sorted — a SUT's own
/// attribute order may change from run to run), else the whole text ("nothing after 2s").
fn observed(got: &str) -> String {
    let lines: Vec<&str> = got.lines().collect();
    match lines
        .iter()
        .position(|l| l.trim_start().starts_with("mismatch:"))
    {
        Some(i) => lines
            .get(i..)
            .unwrap_or_default()
            .iter()
            .map(|l| l.trim())
            .collect::<Vec<_>>()
            .join("\n"),
        None => got.to_string(),
    }
}

/// The markdown summary of one target: a verdict table, then for every outcome that did
/// not pass the requirement and the observed deviation. No timings, so a fresh run of an
/// unchanged SUT yields the same text.
pub fn markdown_target(run: &TargetRun<'_>, catalogue: &Catalogue) -> String {
    let t = run.target;
    let mut out = String::new();
    let _ = writeln!(out, "## Target `{}` ({})\n", t.name(), t.kind());
    if let Some(d) = t.description() {
        let _ = writeln!(out, "{}\n", d.trim());
    }
    if let Some(v) = &run.version {
        let _ = writeln!(out, "Version: `{}`.\n", v);
    }
    let caps = t.capabilities();
    let _ = writeln!(
        out,
        "Capabilities claimed: {}.\n",
        if caps.is_empty() {
            "none".to_string()
        } else {
            caps.iter()
                .map(|c| format!("`{c}`"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
    let totals: Vec<String> = counts(run.outcomes)
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(v, n)| format!("{n} {v}"))
        .collect();
    let _ = writeln!(
        out,
        "{} scenarios: {}.\n",
        run.outcomes.len(),
        totals.join(", ")
    );
    out.push_str("| verdict | scenario | requirements | note |\n|---|---|---|---|\n");
    for o in run.outcomes {
        let note = match (&o.waiver, &o.failure, &o.reason) {
            (Some(_), _, _) => "known deviation, see below".to_string(),
            (None, Some(f), _) => format!("step {} `{}`: {}", f.step, f.stream, f.covers.join(" ")),
            (None, None, Some(r)) => r.lines().next().unwrap_or_default().to_string(),
            (None, None, None) => String::new(),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            o.verdict.as_str(),
            cell(&short_name(o)),
            o.covers.join(" "),
            cell(&note)
        );
    }
    let gaps: Vec<&Outcome> = run
        .outcomes
        .iter()
        .filter(|o| o.verdict == Verdict::Inconclusive)
        .collect();
    if !gaps.is_empty() {
        let _ = writeln!(
            out,
            "\nNot run against `{}` (a capability it does not claim):\n",
            t.name()
        );
        for o in gaps {
            let _ = writeln!(
                out,
                "- {}: {}",
                short_name(o),
                o.reason.as_deref().unwrap_or_default()
            );
        }
    }
    let deviations: Vec<&Outcome> = run
        .outcomes
        .iter()
        .filter(|o| {
            matches!(
                o.verdict,
                Verdict::Fail | Verdict::Warn | Verdict::XFail | Verdict::XPass | Verdict::Error
            )
        })
        .collect();
    if deviations.is_empty() {
        return out;
    }
    let _ = writeln!(out, "\n### Deviations and problems (`{}`)\n", t.name());
    for o in deviations {
        let _ = writeln!(out, "#### {} — {}\n", short_name(o), o.verdict.as_str());
        if !o.title.is_empty() {
            let _ = writeln!(out, "{}\n", o.title);
        }
        if let Some(w) = &o.waiver {
            let _ = writeln!(out, "- waiver: {} ({})", w.reason, w.link);
        }
        if let Some(f) = &o.failure {
            for id in &f.covers {
                match catalogue.get(id) {
                    Some(r) => {
                        let _ = writeln!(
                            out,
                            "- requirement {id} [{}]: {} — {}",
                            r.levels_text, r.title, r.source
                        );
                    }
                    None => {
                        let _ = writeln!(out, "- requirement {id}");
                    }
                }
            }
            let _ = writeln!(
                out,
                "- at step {} (line {}), stream `{}`",
                f.step, f.line, f.stream
            );
            let _ = writeln!(out, "\nexpected:\n\n{}", fenced(&scrub(&f.expected)));
            let _ = writeln!(out, "observed:\n\n{}", fenced(&scrub(&observed(&f.got))));
        }
        if let Some(r) = &o.reason {
            let _ = writeln!(out, "{}", fenced(&scrub(r)));
        }
        let lines: Vec<&str> = o.normalised.lines().collect();
        if !lines.is_empty() {
            let tail = lines
                .get(lines.len().saturating_sub(MARKDOWN_TRANSCRIPT_LINES)..)
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "normalised transcript (last {} lines):\n\n{}",
                tail.len(),
                fenced(&tail.join("\n"))
            );
        }
    }
    out
}

/// The interop matrix: a header naming the command that regenerates it, then one section
/// per target.
pub fn markdown_matrix(runs: &[TargetRun<'_>], catalogue: &Catalogue, command: &str) -> String {
    let mut out = String::from("# Interop matrix\n\n");
    let _ = writeln!(
        out,
        "Generated by fedcheck {} from real runs; do not edit by hand. Regenerate with:\n\n```sh\n{command}\n```\n\nTarget files and waivers (`[[expected_failure]]`): docs/targets.md.\n",
        env!("CARGO_PKG_VERSION")
    );
    out.push_str(
        "Verdicts: `pass`; `fail` (a MUST-level expectation did not hold); `warn` (a SHOULD/MAY \
         one did not); `xfail` (a failure the target lists as a known deviation, with its \
         reason and link); `xpass` (a listed deviation that no longer happens: fails the run); \
         `inconclusive` (the target does not claim a capability the scenario needs); `error` \
         (the harness or scenario is broken).\n\n",
    );
    for run in runs {
        out.push_str(&markdown_target(run, catalogue));
        out.push('\n');
    }
    out
}

/// Write `text` to `path`, or to stdout when `path` is `-`.
pub fn write_out(path: &Path, text: &str) -> std::io::Result<()> {
    if path == Path::new("-") {
        use std::io::Write as _;
        let mut so = std::io::stdout().lock();
        so.write_all(text.as_bytes())?;
        so.flush()
    } else {
        std::fs::write(path, text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::catalogue::Level;
    use crate::harness::transcript::Transcript;
    use crate::harness::verdict::Failure;
    use std::path::PathBuf;
    use std::time::Duration;

    fn outcome(path: &str, verdict: Verdict) -> Outcome {
        let mut t = Transcript::default();
        t.push(
            Duration::from_millis(3),
            "rx",
            "in",
            Dir::ToSut,
            Unit::Note("hello".into()),
            Vec::new(),
        );
        t.push(
            Duration::from_millis(4),
            "rx",
            "in",
            Dir::FromSut,
            Unit::Undecodable {
                bytes: vec![0xff, 0x00],
                reason: "bad".into(),
            },
            vec![0xff, 0x00],
        );
        Outcome {
            path: PathBuf::from(path),
            cell: None,
            title: "A title & <more>".into(),
            covers: vec!["DB-06".into()],
            verdict,
            failure: (verdict == Verdict::Fail).then(|| Failure {
                step: 2,
                line: 17,
                covers: vec!["DB-06".into()],
                level: Level::Must,
                stream: "in".into(),
                expected: "<db:result type='valid'/>".into(),
                got: "nothing after 2s".into(),
            }),
            reason: (verdict == Verdict::Inconclusive).then(|| "does not claim: x".to_string()),
            transcript: t,
            normalised: "rx in → <x a='\u{1}'/>".into(),
            elapsed: Duration::from_millis(12),
            sut_log: String::new(),
            waiver: None,
        }
    }

    #[test]
    fn xml_escape_keeps_reports_well_formed() {
        assert_eq!(
            xml_escape("a<b&'\"\u{1}>"),
            "a&lt;b&amp;&apos;&quot;\u{FFFD}&gt;"
        );
    }

    #[test]
    fn volatile_values_are_scrubbed_from_markdown() {
        assert_eq!(
            scrub("id='4b48baee-f70d-4603-bbed-b39c124c9d8b'>8401118b7b5366ff07144989885a0e8d</x>"),
            "id='[…]'>[…]</x>"
        );
        assert_eq!(
            scrub("ping1 db-06 2s deadbeefcafe"),
            "ping1 db-06 2s deadbeefcafe"
        );
        assert_eq!(scrub("x0123456789abcdef0123"), "x0123456789abcdef0123");
    }

    #[test]
    fn markdown_cells_stay_on_one_line() {
        assert_eq!(cell("a |\n b"), "a \\| b");
        assert_eq!(fenced("x ``` y"), "````\nx ``` y\n````\n");
    }

    #[test]
    fn json_entries_keep_raw_bytes_as_text_or_hex() {
        let o = outcome("scenarios/s2s/a.toml", Verdict::Pass);
        let target = Target::Bundled;
        let run = TargetRun {
            target: &target,
            outcomes: std::slice::from_ref(&o),
            exit_code: 0,
            elapsed: Duration::ZERO,
            version: None,
        };
        let r = json_report(&run);
        let entries = &r.outcomes[0].transcript;
        assert_eq!(entries[0].raw.as_deref(), Some(""));
        assert_eq!(entries[1].raw_hex.as_deref(), Some("ff00"));
        assert_eq!(entries[1].kind, "undecodable");
        assert_eq!(r.outcomes[0].area, "s2s");
    }

    #[test]
    fn junit_maps_verdicts_never_passing_a_skip() {
        assert_eq!(
            junit_status(Verdict::Inconclusive, false),
            JunitStatus::Skipped
        );
        assert_eq!(junit_status(Verdict::XFail, false), JunitStatus::Skipped);
        assert_eq!(junit_status(Verdict::XPass, false), JunitStatus::Failure);
        assert_eq!(junit_status(Verdict::Warn, true), JunitStatus::Failure);
        assert_eq!(junit_status(Verdict::Error, false), JunitStatus::Error);
    }
}
