//! Human-readable reports: a progress line per scenario, a verdict table, and for every
//! scenario that did not pass, what was expected, what came instead, and the transcript.

use std::fmt::Write as _;
use std::path::Path;

use super::catalogue::Catalogue;
use super::verdict::{Outcome, Verdict};

/// Exit codes (as ripgrep): 0 all held, 1 a failure, 2 a harness or input error.
/// `xfail` (a waived failure) holds; `xpass` (a waiver gone stale) is a failure.
pub fn exit_code(outcomes: &[Outcome], strict: bool) -> i32 {
    if outcomes.iter().any(|o| o.verdict == Verdict::Error) {
        2
    } else if outcomes.iter().any(|o| {
        matches!(o.verdict, Verdict::Fail | Verdict::XPass)
            || (strict && o.verdict == Verdict::Warn)
    }) {
        1
    } else {
        0
    }
}

fn display_path(p: &Path) -> String {
    let s = p.display().to_string();
    s.strip_prefix("./").map(str::to_string).unwrap_or(s)
}

pub fn progress_line(o: &Outcome) -> String {
    format!(
        "{:<12} {}  [{}]  ({} ms)",
        o.verdict.as_str().to_uppercase(),
        o.name(),
        o.covers.join(" "),
        o.elapsed.as_millis()
    )
}

/// The full report for a finished run.
pub fn summary(outcomes: &[Outcome], catalogue: &Catalogue, target: &str) -> String {
    let mut out = String::new();
    for o in outcomes.iter().filter(|o| o.verdict != Verdict::Pass) {
        out.push_str(&details(o, catalogue));
        out.push('\n');
    }
    let count = |v: Verdict| outcomes.iter().filter(|o| o.verdict == v).count();
    let _ = writeln!(out, "verdicts against target `{target}`:");
    let _ = writeln!(out, "  {:<10} {:<70} covers", "verdict", "scenario");
    for o in outcomes {
        let _ = writeln!(
            out,
            "  {:<10} {:<70} {}",
            o.verdict.as_str(),
            o.name(),
            o.covers.join(" ")
        );
    }
    let _ = write!(
        out,
        "{} scenarios: {} passed, {} failed, {} warned, {} inconclusive, {} errors",
        outcomes.len(),
        count(Verdict::Pass),
        count(Verdict::Fail),
        count(Verdict::Warn),
        count(Verdict::Inconclusive),
        count(Verdict::Error)
    );
    let (xfail, xpass) = (count(Verdict::XFail), count(Verdict::XPass));
    if xfail + xpass > 0 {
        let _ = write!(
            out,
            ", {xfail} expected failures, {xpass} unexpected passes"
        );
    }
    out.push('\n');
    out
}

/// What a user needs to act on one non-passing scenario.
pub fn details(o: &Outcome, catalogue: &Catalogue) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "── {} ({}) ──",
        o.name(),
        o.verdict.as_str().to_uppercase()
    );
    if !o.title.is_empty() {
        let _ = writeln!(out, "   {}", o.title);
    }
    if let Some(c) = &o.cell {
        let _ = writeln!(out, "   matrix cell: {c}");
    }
    if let Some(w) = &o.waiver {
        let what = if o.verdict == Verdict::XPass {
            "passed, but the target lists it as an expected failure (remove the entry)"
        } else {
            "expected failure"
        };
        let _ = writeln!(out, "   {what}: {} ({})", w.reason, w.link);
    }
    if let Some(r) = &o.reason {
        for l in r.lines() {
            let _ = writeln!(out, "   {l}");
        }
    }
    if let Some(f) = &o.failure {
        let _ = writeln!(
            out,
            "   at {}:{} (step {}, stream `{}`)",
            display_path(&o.path),
            f.line,
            f.step,
            f.stream
        );
        for id in &f.covers {
            match catalogue.get(id) {
                Some(r) => {
                    let _ = writeln!(
                        out,
                        "   requirement {id} [{}] {} — {}",
                        r.levels_text, r.title, r.source
                    );
                }
                None => {
                    let _ = writeln!(out, "   requirement {id}");
                }
            }
        }
        let _ = writeln!(out, "   expected:");
        for l in f.expected.lines() {
            let _ = writeln!(out, "     {l}");
        }
        let _ = writeln!(out, "   got:");
        for l in f.got.lines() {
            let _ = writeln!(out, "     {l}");
        }
    }
    if !o.normalised.is_empty() {
        let lines: Vec<&str> = o.normalised.lines().collect();
        let skip = lines.len().saturating_sub(40);
        let _ = writeln!(
            out,
            "   transcript{}:",
            if skip > 0 { " (last 40 lines)" } else { "" }
        );
        for l in &lines[skip..] {
            let _ = writeln!(out, "     {l}");
        }
    }
    out
}
