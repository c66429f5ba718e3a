//! The `fedcheck` command line. `anyhow` lives here only.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use fedcheck::harness::catalogue::Catalogue;
use fedcheck::harness::target::Target;
use fedcheck::harness::{load, report, suite};

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
    /// Run the reference XMPP proxy alone.
    Proxy {
        #[arg(long)]
        config: PathBuf,
    },
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
        Command::Run { .. } | Command::Bench { .. } => {
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
                    println!("── {} ──\n{}", o.path.display(), o.normalised);
                }
            }
            print!("{}", report::summary(&outcomes, &catalogue, target.name()));
            println!("finished in {:.2}s", started.elapsed().as_secs_f64());
            Ok(report::exit_code(&outcomes, strict) as u8)
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
        Command::Proxy { config } => {
            let cfg = fedcheck::proxy::ProxyConfig::from_file(&config)?;
            rt.block_on(fedcheck::proxy::run(cfg))?;
            Ok(0)
        }
    }
}
