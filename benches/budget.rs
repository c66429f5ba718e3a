//! `cargo bench`: the DESIGN §6 performance budget, as figures (no timed assertions).
//! The same measurements as `fedcheck bench`; the proxy process is the `fedcheck` binary
//! Cargo built for this bench profile. Options: `cargo bench -- [--streams N]
//! [--stanzas N] [--json]`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

fn arg_value(args: &[String], name: &str, default: usize) -> Result<usize, String> {
    match args.iter().position(|a| a == name) {
        None => Ok(default),
        Some(i) => args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("{name} needs a number")),
    }
}

fn main() -> ExitCode {
    // Cargo passes `--bench` (and maybe a filter) to every bench target: ignore them.
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (streams, stanzas) = match (
        arg_value(&args, "--streams", 500),
        arg_value(&args, "--stanzas", 20000),
    ) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("budget bench: {e}");
            return ExitCode::from(2);
        }
    };
    let json = args.iter().any(|a| a == "--json");
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("budget bench: no runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let catalogue = match fedcheck::harness::catalogue::Catalogue::builtin() {
        Ok(c) => Arc::new(c),
        Err(e) => {
            eprintln!("budget bench: catalogue: {e}");
            return ExitCode::from(2);
        }
    };
    let opts = fedcheck::bench::Options {
        streams,
        stanzas,
        proxy_exe: PathBuf::from(env!("CARGO_BIN_EXE_fedcheck")),
        scenarios: Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scenarios")),
        jobs: 8,
    };
    match rt.block_on(fedcheck::bench::run(&opts, catalogue)) {
        Ok(r) => {
            print!("{}", if json { r.to_json() } else { r.to_text() });
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("budget bench: {e}");
            ExitCode::FAILURE
        }
    }
}
