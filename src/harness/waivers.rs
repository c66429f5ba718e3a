//! Known deviations as data: a target file lists the scenarios it is expected to fail,
//! each with a reason and a link (a bug report, or the interop note that records it).
//!
//! Why this shape: as in tlsfuzzer's expected-failure lists and BoringSSL's runner
//! (`-allow-unimplemented`/shim config), a waived failure is visible (`xfail`), and a waived
//! scenario that starts passing (`xpass`) fails the run, so the list cannot rot silently.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::verdict::{Outcome, Verdict};

/// One `[[expected_failure]]` entry of a target file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Waiver {
    /// Scenario path relative to the target's scenario root (`s2s/db-09-….toml`).
    pub scenario: String,
    /// A matrix cell (`version=2.0`), or every cell when absent.
    #[serde(default)]
    pub cell: Option<String>,
    /// Why the SUT deviates (mandatory).
    pub reason: String,
    /// A bug report URL or `interop-notes: …` (mandatory).
    pub link: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WaiverError {
    #[error("expected_failure #{index} ({scenario}): `{field}` must not be empty")]
    Empty {
        index: usize,
        scenario: String,
        field: &'static str,
    },
    #[error(
        "expected_failure #{index}: scenario {scenario:?} does not exist under {}",
        .root.display()
    )]
    Unknown {
        index: usize,
        scenario: String,
        root: PathBuf,
    },
    #[error("expected_failure #{index}: {scenario} is listed twice")]
    Duplicate { index: usize, scenario: String },
}

/// Check every entry: reason and link filled in, the scenario file exists under `root`,
/// no entry repeated. `index` in errors is 1-based, in file order.
pub fn validate(waivers: &[Waiver], root: &Path) -> Result<(), WaiverError> {
    for (i, w) in waivers.iter().enumerate() {
        let index = i + 1;
        for (field, v) in [
            ("scenario", &w.scenario),
            ("reason", &w.reason),
            ("link", &w.link),
        ] {
            if v.trim().is_empty() {
                return Err(WaiverError::Empty {
                    index,
                    scenario: w.scenario.clone(),
                    field,
                });
            }
        }
        if !root.join(&w.scenario).is_file() {
            return Err(WaiverError::Unknown {
                index,
                scenario: w.scenario.clone(),
                root: root.to_path_buf(),
            });
        }
        if waivers
            .iter()
            .take(i)
            .any(|o| o.scenario == w.scenario && o.cell == w.cell)
        {
            return Err(WaiverError::Duplicate {
                index,
                scenario: w.scenario.clone(),
            });
        }
    }
    Ok(())
}

/// The waiver covering an outcome: same scenario (its path ends with the waiver's path,
/// compared by components) and the same cell, or a waiver without a cell.
pub fn find<'a>(waivers: &'a [Waiver], path: &Path, cell: Option<&str>) -> Option<&'a Waiver> {
    waivers.iter().find(|w| {
        path.ends_with(Path::new(&w.scenario)) && w.cell.as_deref().is_none_or(|c| Some(c) == cell)
    })
}

/// Turn a waived outcome's verdict into `xfail` (it failed or warned, as expected) or
/// `xpass` (it passed: the entry is stale). Inconclusive and error stay as they are: they
/// say nothing about the deviation.
pub fn apply(outcome: &mut Outcome, waivers: &[Waiver]) {
    let Some(w) = find(waivers, &outcome.path, outcome.cell.as_deref()) else {
        return;
    };
    let verdict = match outcome.verdict {
        Verdict::Fail | Verdict::Warn => Verdict::XFail,
        Verdict::Pass => Verdict::XPass,
        _ => return,
    };
    outcome.verdict = verdict;
    outcome.waiver = Some(w.clone());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::transcript::Transcript;
    use rstest::rstest;
    use std::time::Duration;

    fn waiver(scenario: &str, cell: Option<&str>) -> Waiver {
        Waiver {
            scenario: scenario.into(),
            cell: cell.map(str::to_string),
            reason: "does not bounce".into(),
            link: "interop-notes: prosody".into(),
        }
    }

    fn outcome(path: &str, cell: Option<&str>, verdict: Verdict) -> Outcome {
        Outcome {
            path: PathBuf::from(path),
            cell: cell.map(str::to_string),
            title: String::new(),
            covers: Vec::new(),
            verdict,
            failure: None,
            reason: None,
            transcript: Transcript::default(),
            normalised: String::new(),
            elapsed: Duration::ZERO,
            sut_log: String::new(),
            waiver: None,
        }
    }

    #[rstest]
    #[case(Verdict::Fail, Verdict::XFail)]
    #[case(Verdict::Warn, Verdict::XFail)]
    #[case(Verdict::Pass, Verdict::XPass)]
    #[case(Verdict::Inconclusive, Verdict::Inconclusive)]
    #[case(Verdict::Error, Verdict::Error)]
    fn waived_verdicts(#[case] got: Verdict, #[case] want: Verdict) {
        let ws = [waiver("s2s/db-09-x.toml", None)];
        let mut o = outcome("scenarios/s2s/db-09-x.toml", None, got);
        apply(&mut o, &ws);
        assert_eq!(o.verdict, want);
        assert_eq!(
            o.waiver.is_some(),
            want == Verdict::XFail || want == Verdict::XPass
        );
    }

    #[test]
    fn a_cell_waiver_covers_only_its_cell() {
        let ws = [waiver("s2s/m.toml", Some("version=2.0"))];
        let mut a = outcome("scenarios/s2s/m.toml", Some("version=2.0"), Verdict::Fail);
        let mut b = outcome("scenarios/s2s/m.toml", Some("version=1.0"), Verdict::Fail);
        apply(&mut a, &ws);
        apply(&mut b, &ws);
        assert_eq!((a.verdict, b.verdict), (Verdict::XFail, Verdict::Fail));
    }

    #[test]
    fn paths_match_by_whole_components() {
        let ws = [waiver("s2s/db-09-x.toml", None)];
        assert!(find(&ws, Path::new("scenarios/s2s/db-09-x.toml"), None).is_some());
        assert!(find(&ws, Path::new("scenarios/xs2s/db-09-x.toml"), None).is_none());
    }

    #[test]
    fn entries_are_validated() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        let ok = waiver("s2s/db-06-receiving-verifies.toml", None);
        assert_eq!(validate(std::slice::from_ref(&ok), &root), Ok(()));
        let unknown = waiver("s2s/no-such.toml", None);
        assert!(matches!(
            validate(&[unknown], &root),
            Err(WaiverError::Unknown { index: 1, .. })
        ));
        let mut no_link = ok.clone();
        no_link.link = " ".into();
        assert!(matches!(
            validate(&[no_link], &root),
            Err(WaiverError::Empty { field: "link", .. })
        ));
        assert!(matches!(
            validate(&[ok.clone(), ok], &root),
            Err(WaiverError::Duplicate { index: 2, .. })
        ));
    }
}
