//! Running scenarios: one file end to end, or a whole suite with bounded parallelism.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use super::catalogue::Catalogue;
use super::load::{self, Scenario};
use super::normalise::{NormaliseContext, normalise};
use super::run::Runner;
use super::target::{self, PrepareError, Target};
use super::transcript::Transcript;
use super::verdict::{Outcome, Verdict};
use super::waivers;

#[derive(Debug, thiserror::Error)]
pub enum SuiteError {
    #[error("{path}: {message}")]
    Discover { path: PathBuf, message: String },
}

/// Every `*.toml` scenario file under the given paths (files are taken as they are),
/// sorted, so runs and reports are in a stable order.
pub fn discover(paths: &[PathBuf]) -> Result<Vec<PathBuf>, SuiteError> {
    let mut out = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p).map_err(|e| SuiteError::Discover {
            path: p.clone(),
            message: e.to_string(),
        })?;
        if meta.is_dir() {
            walk(p, &mut out)?;
        } else {
            out.push(p.clone());
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), SuiteError> {
    let rd = std::fs::read_dir(dir).map_err(|e| SuiteError::Discover {
        path: dir.to_path_buf(),
        message: e.to_string(),
    })?;
    for entry in rd {
        let entry = entry.map_err(|e| SuiteError::Discover {
            path: dir.to_path_buf(),
            message: e.to_string(),
        })?;
        let p = entry.path();
        if p.is_dir() {
            walk(&p, out)?;
        } else if p.extension().is_some_and(|e| e == "toml") {
            out.push(p);
        }
    }
    Ok(())
}

/// Load and run one scenario file against `target`: one outcome, or one per matrix cell.
/// Never panics on a bad file: a file that does not load is one `error` outcome naming
/// file:line.
pub async fn run_file(path: &Path, target: &Target, catalogue: &Catalogue) -> Vec<Outcome> {
    let started = Instant::now();
    match load::load_file_cells(path, catalogue) {
        Ok(cells) => {
            let mut out = Vec::with_capacity(cells.len());
            for s in &cells {
                out.push(run_scenario(s, target, catalogue).await);
            }
            out
        }
        Err(e) => vec![Outcome {
            path: path.to_path_buf(),
            cell: None,
            title: String::new(),
            covers: Vec::new(),
            verdict: Verdict::Error,
            failure: None,
            reason: Some(e.to_string()),
            transcript: Transcript::default(),
            normalised: String::new(),
            elapsed: started.elapsed(),
            sut_log: String::new(),
            waiver: None,
        }],
    }
}

pub async fn run_scenario(s: &Scenario, target: &Target, catalogue: &Catalogue) -> Outcome {
    let started = Instant::now();
    // `{gw}` in the SIP actors' declarations is this target's gateway domain.
    let bound = s.with_gateway(target.gateway_domain().as_deref());
    let s = &bound;
    let base = |verdict, reason: Option<String>| Outcome {
        path: s.path.clone(),
        cell: s.cell.clone(),
        title: s.title.clone(),
        covers: s.covers.clone(),
        verdict,
        failure: None,
        reason,
        transcript: Transcript::default(),
        normalised: String::new(),
        elapsed: started.elapsed(),
        sut_log: String::new(),
        waiver: None,
    };
    let caps = target.capabilities();
    let missing: Vec<&String> = s.requires.iter().filter(|r| !caps.contains(r)).collect();
    if !missing.is_empty() {
        let list: Vec<&str> = missing.iter().map(|s| s.as_str()).collect();
        return base(
            Verdict::Inconclusive,
            Some(format!(
                "target `{}` does not claim: {}",
                target.name(),
                list.join(", ")
            )),
        );
    }
    for a in &s.actors {
        if let Some(p) = &a.partner
            && let Some(why) = target.partner_mismatch(a.domain(), p)
        {
            return base(Verdict::Inconclusive, Some(why));
        }
    }
    let target::Prepared {
        endpoints,
        listeners,
        mut running,
        pki,
    } = match target::prepare(target, s).await {
        Ok(x) => x,
        Err(PrepareError::Harness(e)) => {
            return base(
                Verdict::Error,
                Some(format!("could not start the target: {e}")),
            );
        }
        // The SUT died or never listened: that is a finding about the SUT.
        Err(PrepareError::SutDown { message, log }) => {
            let mut o = base(Verdict::Fail, Some(with_last_lines(&message, &log)));
            o.sut_log = log;
            waivers::apply(&mut o, target.waivers());
            return o;
        }
    };
    let sut_s2s = endpoints.s2s;
    let result = Runner::new(s, catalogue, endpoints, listeners, pki)
        .run()
        .await;
    // Every step is bounded, so the run ends even if the SUT died; then its death decides.
    let mut died = running.died().await;
    // A crashing SUT drops its connections a while before its process ends (a supervisor
    // such as Kamailio's main process notices the crashed child first and then stops the
    // others): when the run did not pass and the SUT dropped a connection, give its process
    // a grace to end, so the verdict names the exit instead of the bare EOF. A SUT whose S2S
    // listener still accepts once the dust has settled is alive, and is not waited for.
    if died.is_none()
        && matches!(target, Target::Process(_))
        && result.verdict != Verdict::Pass
        && sut_dropped_a_connection(&result.transcript)
    {
        let start = Instant::now();
        let mut probed = false;
        while died.is_none() && start.elapsed() < SUT_EXIT_GRACE {
            if !probed && start.elapsed() >= SUT_EXIT_SETTLE {
                probed = true;
                if accepts(sut_s2s).await {
                    break;
                }
            }
            tokio::time::sleep(SUT_EXIT_POLL).await;
            died = running.died().await;
        }
    }
    let sut_log = match &died {
        Some(d) => d.log.clone(),
        None => running.log_tail().await,
    };
    running.stop().await;
    let normalised = normalise(
        &result.transcript,
        &NormaliseContext {
            sut_domains: target.domains(),
            gw_domains: target.gateway_domain().into_iter().collect(),
        },
    );
    let (verdict, reason) = match died {
        Some(d) => (
            Verdict::Fail,
            Some(with_last_lines(
                &format!("the SUT process {} during the scenario", d.how),
                &d.log,
            )),
        ),
        None => (result.verdict, result.reason),
    };
    let mut o = Outcome {
        path: s.path.clone(),
        cell: s.cell.clone(),
        title: s.title.clone(),
        covers: s.covers.clone(),
        verdict,
        failure: result.failure,
        reason,
        transcript: result.transcript,
        normalised,
        elapsed: started.elapsed(),
        sut_log,
        waiver: None,
    };
    waivers::apply(&mut o, target.waivers());
    o
}

/// How long a SUT that dropped a connection of a failed run and stopped listening gets to
/// end its process (Kamailio under load needs more than a second to stop its processes).
const SUT_EXIT_GRACE: std::time::Duration = std::time::Duration::from_secs(5);
const SUT_EXIT_POLL: std::time::Duration = std::time::Duration::from_millis(20);
/// When the listener is probed: a dying process may still accept for a few milliseconds.
const SUT_EXIT_SETTLE: std::time::Duration = std::time::Duration::from_millis(300);
/// Bound on the probe of the SUT's listener.
const LISTENER_PROBE: std::time::Duration = std::time::Duration::from_millis(500);

/// Whether `addr` still accepts a TCP connection (closed again at once).
async fn accepts(addr: std::net::SocketAddr) -> bool {
    matches!(
        tokio::time::timeout(LISTENER_PROBE, tokio::net::TcpStream::connect(addr)).await,
        Ok(Ok(_))
    )
}

/// True when the SUT closed or reset one of the connections in the transcript.
fn sut_dropped_a_connection(t: &Transcript) -> bool {
    use super::transcript::{Dir, Unit};
    t.entries
        .iter()
        .any(|e| e.dir == Dir::FromSut && matches!(e.unit, Unit::Eof | Unit::Reset))
}

/// Lines of the SUT's log quoted in a failure reason (the whole tail is in `sut_log`).
const REASON_LOG_LINES: usize = 12;

fn with_last_lines(message: &str, log: &str) -> String {
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return message.to_string();
    }
    let tail = lines
        .get(lines.len().saturating_sub(REASON_LOG_LINES)..)
        .unwrap_or_default();
    format!("{message}; last log lines:\n{}", tail.join("\n"))
}

/// Run many files with at most `jobs` at once (1 for targets whose routes are fixed).
/// `progress` sees each outcome as it completes; the result is in file (then cell) order.
pub async fn run_all(
    files: Vec<PathBuf>,
    target: Arc<Target>,
    catalogue: Arc<Catalogue>,
    jobs: usize,
    mut progress: impl FnMut(&Outcome),
) -> Vec<Outcome> {
    let jobs = if target.parallel_safe() {
        jobs.max(1)
    } else {
        1
    };
    let sem = Arc::new(tokio::sync::Semaphore::new(jobs));
    let mut set = tokio::task::JoinSet::new();
    for (i, f) in files.iter().cloned().enumerate() {
        let (sem, target, catalogue) = (sem.clone(), target.clone(), catalogue.clone());
        set.spawn(async move {
            let _permit = sem.acquire_owned().await;
            (i, run_file(&f, &target, &catalogue).await)
        });
    }
    let mut out: Vec<Option<Vec<Outcome>>> = (0..files.len()).map(|_| None).collect();
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok((i, os)) => {
                for o in &os {
                    progress(o);
                }
                if let Some(slot) = out.get_mut(i) {
                    *slot = Some(os);
                }
            }
            Err(e) => tracing::error!("a scenario task failed: {e}"),
        }
    }
    target.finish().await;
    let mut outcomes: Vec<Outcome> = out
        .into_iter()
        .zip(files)
        .flat_map(|(o, f)| {
            o.unwrap_or_else(|| {
                vec![Outcome {
                    path: f,
                    cell: None,
                    title: String::new(),
                    covers: Vec::new(),
                    verdict: Verdict::Error,
                    failure: None,
                    reason: Some("the harness task running this scenario panicked".into()),
                    transcript: Transcript::default(),
                    normalised: String::new(),
                    elapsed: std::time::Duration::ZERO,
                    sut_log: String::new(),
                    waiver: None,
                }]
            })
        })
        .collect();
    let stale = unmatched_cell_waivers(&outcomes, target.waivers());
    outcomes.extend(stale);
    outcomes
}

/// A waiver naming a matrix cell its scenario does not have would never match: once the
/// scenario ran, report it as an `error` (a typo in the target file), not silently ignore it.
fn unmatched_cell_waivers(outcomes: &[Outcome], waivers: &[waivers::Waiver]) -> Vec<Outcome> {
    let mut out = Vec::new();
    for w in waivers {
        let Some(cell) = &w.cell else { continue };
        let ran: Vec<&Outcome> = outcomes
            .iter()
            .filter(|o| o.path.ends_with(Path::new(&w.scenario)))
            .collect();
        let Some(first) = ran.first() else { continue };
        if ran.iter().any(|o| o.cell.as_deref() == Some(cell.as_str())) {
            continue;
        }
        let cells: Vec<&str> = ran.iter().filter_map(|o| o.cell.as_deref()).collect();
        out.push(Outcome {
            path: first.path.clone(),
            cell: Some(cell.clone()),
            title: first.title.clone(),
            covers: first.covers.clone(),
            verdict: Verdict::Error,
            failure: None,
            reason: Some(format!(
                "the target's expected_failure names cell `{cell}`, which {} does not have (cells: {})",
                w.scenario,
                if cells.is_empty() { "none".to_string() } else { cells.join(", ") }
            )),
            transcript: Transcript::default(),
            normalised: String::new(),
            elapsed: std::time::Duration::ZERO,
            sut_log: String::new(),
            waiver: None,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::transcript::{Dir, Unit};

    fn outcome(path: &str, cell: Option<&str>) -> Outcome {
        Outcome {
            path: PathBuf::from(path),
            cell: cell.map(str::to_string),
            title: String::new(),
            covers: Vec::new(),
            verdict: Verdict::Pass,
            failure: None,
            reason: None,
            transcript: Transcript::default(),
            normalised: String::new(),
            elapsed: std::time::Duration::ZERO,
            sut_log: String::new(),
            waiver: None,
        }
    }

    #[test]
    fn a_waiver_for_a_missing_cell_is_an_error_once_its_scenario_ran() {
        let w = |cell: &str| waivers::Waiver {
            scenario: "s2s/m.toml".into(),
            cell: Some(cell.into()),
            reason: "r".into(),
            link: "l".into(),
        };
        let ran = [
            outcome("scenarios/s2s/m.toml", Some("v=1")),
            outcome("scenarios/s2s/m.toml", Some("v=2")),
        ];
        assert!(unmatched_cell_waivers(&ran, &[w("v=1")]).is_empty());
        let errs = unmatched_cell_waivers(&ran, &[w("v=3")]);
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].verdict, Verdict::Error);
        assert!(errs[0].reason.as_deref().unwrap_or("").contains("v=1, v=2"));
        // Not run at all: nothing to say.
        assert!(unmatched_cell_waivers(&[], &[w("v=3")]).is_empty());
    }

    /// Only the SUT closing or resetting a connection earns its process the exit grace.
    #[rstest::rstest]
    #[case(Dir::FromSut, Unit::Eof, true)]
    #[case(Dir::FromSut, Unit::Reset, true)]
    #[case(Dir::ToSut, Unit::Eof, false)]
    #[case(Dir::FromSut, Unit::Whitespace(1), false)]
    fn the_exit_grace_needs_a_connection_the_sut_dropped(
        #[case] dir: Dir,
        #[case] unit: Unit,
        #[case] dropped: bool,
    ) {
        let mut t = Transcript::default();
        t.push(std::time::Duration::ZERO, "rx", "in", dir, unit, Vec::new());
        assert_eq!(sut_dropped_a_connection(&t), dropped);
        assert!(!sut_dropped_a_connection(&Transcript::default()));
    }
}
