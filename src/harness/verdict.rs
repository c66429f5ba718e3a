//! Verdicts and the facts behind them.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::catalogue::Level;
use super::transcript::Transcript;
use super::waivers::Waiver;

/// The outcome class of one scenario (or one matrix cell).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    /// A SHOULD/MAY-level expectation failed: reported, but only `--strict` fails the run.
    Warn,
    /// The target does not claim a capability the scenario needs (a PICS gap).
    Inconclusive,
    /// A failure the target file waives as a known deviation (`[[expected_failure]]`):
    /// reported with its reason and link, does not fail the run.
    #[serde(rename = "xfail")]
    XFail,
    /// A waived scenario passed: the waiver is stale and fails the run until removed.
    #[serde(rename = "xpass")]
    XPass,
    /// A MUST-level expectation failed.
    Fail,
    /// The scenario file or the harness is broken; says nothing about the SUT.
    Error,
}

impl Verdict {
    /// Every verdict, in report order.
    pub const ALL: [Verdict; 7] = [
        Verdict::Pass,
        Verdict::Warn,
        Verdict::Inconclusive,
        Verdict::XFail,
        Verdict::XPass,
        Verdict::Fail,
        Verdict::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Warn => "warn",
            Verdict::Inconclusive => "inconclusive",
            Verdict::XFail => "xfail",
            Verdict::XPass => "xpass",
            Verdict::Fail => "fail",
            Verdict::Error => "error",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an expectation did not hold.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// 1-based step number and the line of its `[[step]]` table.
    pub step: usize,
    pub line: usize,
    /// The requirements the step checks, with the strongest level among them.
    pub covers: Vec<String>,
    pub level: Level,
    /// The stream the expectation was about.
    pub stream: String,
    /// What the step expected (template text or a description).
    pub expected: String,
    /// What came instead: a unit, a mismatch explanation, or "nothing after 2s".
    pub got: String,
}

/// The full result of one scenario run.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub path: PathBuf,
    /// The matrix cell, for a matrix file.
    pub cell: Option<String>,
    pub title: String,
    pub covers: Vec<String>,
    pub verdict: Verdict,
    pub failure: Option<Failure>,
    /// For `error` and `inconclusive`: the reason.
    pub reason: Option<String>,
    pub transcript: Transcript,
    /// The normalised transcript (the snapshot text).
    pub normalised: String,
    pub elapsed: Duration,
    /// The tail of the SUT's logs (process targets; empty otherwise).
    pub sut_log: String,
    /// The waiver that turned this outcome into `xfail`/`xpass`.
    pub waiver: Option<Waiver>,
}

impl Outcome {
    /// `path` or `path [cell]`: how reports name this outcome.
    pub fn name(&self) -> String {
        let p = self.path.display().to_string();
        let p = p.strip_prefix("./").map(str::to_string).unwrap_or(p);
        match &self.cell {
            Some(c) => format!("{p} [{c}]"),
            None => p,
        }
    }
}
