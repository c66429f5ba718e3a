//! The `fedcheck` command line. `anyhow` lives here only.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use fedcheck::harness::catalogue::Catalogue;
use fedcheck::harness::target::Target;
use fedcheck::harness::{load, report, sinks, suite};

#[derive(Parser)]
#[command(
    name = "fedcheck",
    version,
    about = "Conformance test harness for SIP <-> XMPP federation gateways"
)]
struct Cli {
    /// Log filter (tracing env-filter syntax), e.g. `fedcheck=debug`. By default the
    /// bundled proxy's own warnings stay quiet during `run`: what it did wrong shows in
    /// the verdicts and transcripts, not as log noise.
    #[arg(long, global = true)]
    log: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run scenarios against a target (default: every scenario against the bundled pair).
    Run {
        /// Scenario files or folders (default: scenarios/).
        paths: Vec<PathBuf>,
        /// Target file (TOML); default: the bundled reference proxy.
        #[arg(long)]
        target: Option<PathBuf>,
        /// Scenarios run at once (bundled target only; a remote target runs one at a time).
        #[arg(long, default_value_t = 8)]
        jobs: usize,
        /// Treat failed SHOULD-level expectations as failures.
        #[arg(long)]
        strict: bool,
        /// Print every scenario's normalised transcript, not only failing ones.
        #[arg(long)]
        verbose: bool,
        /// Write a JUnit XML report (one testcase per scenario or matrix cell).
        #[arg(long, value_name = "FILE")]
        junit: Option<PathBuf>,
        /// Write the JSON report (schema: docs/json-schema.md).
        #[arg(long, value_name = "FILE")]
        json: Option<PathBuf>,
        /// Summary format on stdout: `human` (default) or `markdown`.
        #[arg(long, value_enum, default_value_t = ReportFormat::Human)]
        report: ReportFormat,
        /// Write the `--report` summary to FILE instead of stdout.
        #[arg(long, value_name = "FILE")]
        report_file: Option<PathBuf>,
        /// Write the run's traffic as a pcapng file (synthesised from the transcripts:
        /// TCP and UDP on loopback with the real ports, no capture privileges needed), for
        /// Wireshark or `fedcheck import`.
        #[arg(long, value_name = "FILE")]
        pcap: Option<PathBuf>,
    },
    /// Run the scenarios against several targets and write the interop matrix (markdown),
    /// e.g. `fedcheck interop-matrix --target bundled --target fixtures/targets/prosody.toml
    /// --out docs/interop.md scenarios/s2s`.
    InteropMatrix {
        /// Scenario files or folders (default: scenarios/).
        paths: Vec<PathBuf>,
        /// Target files, in matrix order; `bundled` is the bundled reference proxy.
        #[arg(long = "target", required = true)]
        targets: Vec<String>,
        /// Output file (`-` for stdout).
        #[arg(long, default_value = "-")]
        out: PathBuf,
        #[arg(long, default_value_t = 8)]
        jobs: usize,
    },
    /// List scenarios with their titles and the requirements they cover.
    List { paths: Vec<PathBuf> },
    /// Requirement × scenario matrix: which catalogue requirements the scenarios cover.
    Coverage {
        paths: Vec<PathBuf>,
        /// Show only requirements no scenario covers.
        #[arg(long)]
        missing: bool,
    },
    /// Measure the bundled proxy (a separate process) and the suite against the
    /// performance budget; prints figures, asserts nothing.
    Bench {
        /// Remote domains authenticating by dialback (one stream in, one out each).
        #[arg(long, default_value_t = 500)]
        streams: usize,
        /// Pings answered in the stanza phase.
        #[arg(long, default_value_t = 20000)]
        stanzas: usize,
        /// Print the figures as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Turn a capture (pcap/pcapng) or a `--json` report into a draft scenario
    /// (docs/import.md).
    Import {
        /// The capture or JSON report.
        capture: PathBuf,
        /// The SUT's address, `IP` or `IP:PORT` (repeatable). Required for a capture; a
        /// JSON report already knows its SUT.
        #[arg(long = "sut", value_name = "ADDR[:PORT]")]
        sut: Vec<String>,
        /// Write the draft here instead of stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// From a report with several outcomes: the scenario to import (its path or a
        /// part of it).
        #[arg(long)]
        scenario: Option<String>,
        /// From a report with matrix cells: the cell to import, e.g. `transport=udp`.
        #[arg(long)]
        cell: Option<String>,
    },
    /// Run the reference XMPP proxy alone.
    Proxy {
        #[arg(long)]
        config: PathBuf,
    },
    /// Run the reference SIP/SIMPLE ↔ XMPP gateway alone (an XEP-0114 component of a proxy).
    Gateway {
        #[arg(long)]
        config: PathBuf,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ReportFormat {
    Human,
    Markdown,
}

fn load_target(spec: &str) -> anyhow::Result<Target> {
    if spec == "bundled" {
        Ok(Target::Bundled)
    } else {
        Ok(Target::from_file(std::path::Path::new(spec))?)
    }
}

fn default_paths(paths: Vec<PathBuf>) -> Vec<PathBuf> {
    if paths.is_empty() {
        vec![PathBuf::from("scenarios")]
    } else {
        paths
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default = match cli.command {
        Command::Run { .. } | Command::Bench { .. } | Command::InteropMatrix { .. } => {
            "warn,fedcheck::proxy=error,fedcheck::xmpp=error"
        }
        _ => "info",
    };
    let filter = match cli.log.as_deref() {
        Some(f) => match tracing_subscriber::EnvFilter::try_new(f) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("fedcheck: error: --log {f:?}: {e}");
                return ExitCode::from(2);
            }
        },
        None => tracing_subscriber::EnvFilter::new(default),
    };
    use std::io::IsTerminal as _;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match real_main(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("fedcheck: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn real_main(cli: Cli) -> anyhow::Result<u8> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let catalogue = Catalogue::builtin().context("loading the requirement catalogue")?;
    match cli.command {
        Command::Run {
            paths,
            target,
            jobs,
            strict,
            verbose,
            junit,
            json,
            report: format,
            report_file,
            pcap,
        } => {
            let target = match target {
                Some(p) => Target::from_file(&p)?,
                None => Target::Bundled,
            };
            let files = suite::discover(&default_paths(paths))?;
            if files.is_empty() {
                anyhow::bail!("no scenario files found");
            }
            eprintln!(
                "running {} scenarios against target `{}`",
                files.len(),
                target.name()
            );
            let catalogue = Arc::new(catalogue);
            let target = Arc::new(target);
            let started = std::time::Instant::now();
            let outcomes = rt.block_on(suite::run_all(
                files,
                target.clone(),
                catalogue.clone(),
                jobs,
                |o| {
                    eprintln!("{}", report::progress_line(o));
                },
            ));
            if verbose {
                for o in &outcomes {
                    println!("── {} ──\n{}", o.name(), o.normalised);
                }
            }
            let code = report::exit_code(&outcomes, strict);
            let elapsed = started.elapsed();
            let run = sinks::TargetRun {
                target: &target,
                outcomes: &outcomes,
                exit_code: code,
                elapsed,
                version: rt.block_on(target.probe_version()),
            };
            if let Some(p) = &junit {
                sinks::write_out(
                    p,
                    &sinks::junit(std::slice::from_ref(&run), &catalogue, strict),
                )
                .with_context(|| format!("writing {}", p.display()))?;
            }
            if let Some(p) = &json {
                sinks::write_out(p, &sinks::json(&run))
                    .with_context(|| format!("writing {}", p.display()))?;
            }
            if let Some(p) = &pcap {
                let capture = fedcheck::import::capture_from_report(&sinks::json_report(&run));
                let bytes = fedcheck::capture::write_pcapng(&capture.flows, &Default::default())
                    .context("writing the run's traffic as pcapng")?;
                std::fs::write(p, bytes).with_context(|| format!("writing {}", p.display()))?;
            }
            let text = match format {
                ReportFormat::Human => format!(
                    "{}finished in {:.2}s\n",
                    report::summary(&outcomes, &catalogue, target.name()),
                    elapsed.as_secs_f64()
                ),
                ReportFormat::Markdown => sinks::markdown_target(&run, &catalogue),
            };
            let out = report_file.unwrap_or_else(|| PathBuf::from("-"));
            sinks::write_out(&out, &text).with_context(|| format!("writing {}", out.display()))?;
            Ok(code as u8)
        }
        Command::InteropMatrix {
            paths,
            targets,
            out,
            jobs,
        } => {
            let mut command = String::from("fedcheck interop-matrix");
            for t in &targets {
                command.push_str(&format!(" --target {t}"));
            }
            command.push_str(&format!(" --out {}", out.display()));
            for p in &paths {
                command.push_str(&format!(" {}", p.display()));
            }
            let loaded: Vec<Target> = targets
                .iter()
                .map(|t| load_target(t))
                .collect::<anyhow::Result<_>>()?;
            let files = suite::discover(&default_paths(paths))?;
            if files.is_empty() {
                anyhow::bail!("no scenario files found");
            }
            let catalogue = Arc::new(catalogue);
            let mut results = Vec::new();
            for t in loaded {
                eprintln!(
                    "running {} scenarios against target `{}`",
                    files.len(),
                    t.name()
                );
                let t = Arc::new(t);
                let started = std::time::Instant::now();
                let outcomes = rt.block_on(suite::run_all(
                    files.clone(),
                    t.clone(),
                    catalogue.clone(),
                    jobs,
                    |o| eprintln!("{}", report::progress_line(o)),
                ));
                let code = report::exit_code(&outcomes, false);
                let elapsed = started.elapsed();
                let version = rt.block_on(t.probe_version());
                results.push((t, outcomes, code, elapsed, version));
            }
            let runs: Vec<sinks::TargetRun<'_>> = results
                .iter()
                .map(|(t, o, code, e, v)| sinks::TargetRun {
                    target: t,
                    outcomes: o,
                    exit_code: *code,
                    elapsed: *e,
                    version: v.clone(),
                })
                .collect();
            sinks::write_out(&out, &sinks::markdown_matrix(&runs, &catalogue, &command))
                .with_context(|| format!("writing {}", out.display()))?;
            // The matrix records findings; only a broken harness or scenario fails it.
            Ok(if runs.iter().any(|r| r.exit_code == 2) {
                2
            } else {
                0
            })
        }
        Command::List { paths } => {
            let files = suite::discover(&default_paths(paths))?;
            let mut bad = false;
            for f in files {
                match load::load_file_cells(&f, &catalogue) {
                    Ok(cells) => {
                        let s = &cells[0];
                        let n = if cells.len() > 1 {
                            format!(" ({} matrix cells)", cells.len())
                        } else {
                            String::new()
                        };
                        println!(
                            "{}{n}\n    {}\n    covers: {}",
                            f.display(),
                            s.title,
                            s.covers.join(" ")
                        );
                    }
                    Err(e) => {
                        bad = true;
                        println!("{}\n    error: {e}", f.display());
                    }
                }
            }
            Ok(if bad { 2 } else { 0 })
        }
        Command::Coverage { paths, missing } => {
            let files = suite::discover(&default_paths(paths))?;
            let mut by_req: std::collections::BTreeMap<String, Vec<String>> = Default::default();
            let mut bad = false;
            for f in files {
                match load::load_file_cells(&f, &catalogue) {
                    Ok(cells) => {
                        let mut ids = Vec::new();
                        for s in &cells {
                            ids.extend(s.covers.iter().cloned());
                            for st in &s.steps {
                                ids.extend(st.covers.iter().cloned());
                            }
                        }
                        ids.sort();
                        ids.dedup();
                        let name = f.display().to_string();
                        for id in ids {
                            by_req.entry(id).or_default().push(name.clone());
                        }
                    }
                    Err(e) => {
                        bad = true;
                        eprintln!("error: {e}");
                    }
                }
            }
            let (mut covered, mut total) = (0, 0);
            for r in catalogue.iter() {
                total += 1;
                let scen = by_req.get(&r.id);
                if scen.is_some() {
                    covered += 1;
                }
                if missing && scen.is_some() {
                    continue;
                }
                let n = scen.map(|v| v.len()).unwrap_or(0);
                println!("{:<10} {:<13} {:>3}  {}", r.id, r.levels_text, n, r.title);
                if !missing {
                    for s in scen.into_iter().flatten() {
                        println!("{:<28}{s}", "");
                    }
                }
            }
            println!("{covered} of {total} requirements covered by at least one scenario");
            Ok(if bad { 2 } else { 0 })
        }
        Command::Bench {
            streams,
            stanzas,
            json,
        } => {
            let opts = fedcheck::bench::Options {
                streams,
                stanzas,
                proxy_exe: std::env::current_exe().context("locating this executable")?,
                scenarios: Some(PathBuf::from("scenarios")),
                jobs: 8,
            };
            let r = rt.block_on(fedcheck::bench::run(&opts, Arc::new(catalogue)))?;
            print!("{}", if json { r.to_json() } else { r.to_text() });
            Ok(0)
        }
        Command::Import {
            capture,
            sut,
            out,
            scenario,
            cell,
        } => {
            let pick = fedcheck::import::Pick { scenario, cell };
            let text = import_file(&capture, &sut, &pick, &catalogue)
                .with_context(|| format!("importing {}", capture.display()))?;
            let out = out.unwrap_or_else(|| PathBuf::from("-"));
            sinks::write_out(&out, &text).with_context(|| format!("writing {}", out.display()))?;
            Ok(0)
        }
        Command::Proxy { config } => {
            let cfg = fedcheck::proxy::ProxyConfig::from_file(&config)?;
            rt.block_on(fedcheck::proxy::run(cfg))?;
            Ok(0)
        }
        Command::Gateway { config } => {
            let cfg = fedcheck::gateway::GatewayConfig::from_file(&config)?;
            rt.block_on(fedcheck::gateway::run(cfg))?;
            Ok(0)
        }
    }
}

/// Read a capture or report and draft a scenario from it. For a report, the scenario the
/// outcome names is loaded when it can be found (next to the working directory or the
/// report), for the actor settings the wire does not show.
fn import_file(
    path: &std::path::Path,
    sut: &[String],
    pick: &fedcheck::import::Pick,
    catalogue: &Catalogue,
) -> anyhow::Result<String> {
    use fedcheck::import::{self, InputKind};
    let bytes = std::fs::read(path).context("reading the file")?;
    let source = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    let suts = sut
        .iter()
        .map(|s| import::parse_sut(s))
        .collect::<Result<Vec<_>, _>>()?;
    let trace = match import::detect(&bytes)? {
        InputKind::Json => {
            let report = import::report::parse_report(&bytes)?;
            let outcome = import::select_outcome(&report, pick)?;
            let candidates = [
                PathBuf::from(&outcome.scenario),
                path.parent()
                    .unwrap_or(std::path::Path::new("."))
                    .join(&outcome.scenario),
            ];
            let scenario = candidates
                .iter()
                .filter(|p| p.is_file())
                .find_map(|p| load::load_file_cells(p, catalogue).ok())
                .and_then(|cells| cells.into_iter().find(|c| c.cell == outcome.cell));
            import::trace_from_report(&report, outcome, &source, scenario.as_ref())?
        }
        InputKind::Pcap | InputKind::Pcapng => {
            if suts.is_empty() {
                return Err(import::ImportError::NoSut.into());
            }
            let capture = fedcheck::capture::read(&bytes)
                .with_context(|| format!("{source}: not a readable capture"))?;
            import::trace_from_capture(&capture, &source, &suts)?
        }
    };
    Ok(import::render(&import::draft(&trace)))
}
