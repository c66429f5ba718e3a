//! Running scenarios: one file end to end, or a whole suite with bounded parallelism.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use super::catalogue::Catalogue;
use super::load::{self, Scenario};
use super::normalise::{NormaliseContext, normalise};
use super::run::Runner;
use super::target::{self, Target};
use super::transcript::Transcript;
use super::verdict::{Outcome, Verdict};

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
        }],
    }
}

pub async fn run_scenario(s: &Scenario, target: &Target, catalogue: &Catalogue) -> Outcome {
    let started = Instant::now();
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
        if let Some(p) = &a.partner {
            if let Some(why) = target.partner_mismatch(a.domain(), p) {
                return base(Verdict::Inconclusive, Some(why));
            }
        }
    }
    let prepared = match target::prepare(target, s).await {
        Ok(x) => x,
        Err(e) => {
            return base(
                Verdict::Error,
                Some(format!("could not start the target: {e}")),
            );
        }
    };
    let result = Runner::new(
        s,
        catalogue,
        prepared.endpoints,
        prepared.listeners,
        prepared.pki,
    )
    .run()
    .await;
    prepared.running.stop().await;
    let normalised = normalise(
        &result.transcript,
        &NormaliseContext {
            sut_domains: target.domains(),
        },
    );
    Outcome {
        path: s.path.clone(),
        cell: s.cell.clone(),
        title: s.title.clone(),
        covers: s.covers.clone(),
        verdict: result.verdict,
        failure: result.failure,
        reason: result.reason,
        transcript: result.transcript,
        normalised,
        elapsed: started.elapsed(),
    }
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
    out.into_iter()
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
                }]
            })
        })
        .collect()
}
