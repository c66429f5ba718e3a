//! Every scenario file under `scenarios/` as its own test, against the bundled pair.
//!
//! The explicit expectations inside each scenario decide the verdict; the normalised
//! transcript is also compared with its snapshot under `snapshots/` as a regression
//! record (`cargo insta review` to accept a change after reading it against the spec).

use std::path::{Path, PathBuf};

use fedcheck::harness::catalogue::Catalogue;
use fedcheck::harness::report;
use fedcheck::harness::suite;
use fedcheck::harness::target::Target;
use fedcheck::harness::verdict::Verdict;
use rstest::rstest;

/// `scenarios/s2s/str-02-x.toml` → `s2s__str-02-x`.
fn snapshot_name(path: &Path) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let rel = path.strip_prefix(&root).unwrap_or(path).with_extension("");
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("__")
}

#[rstest]
fn scenario(#[files("scenarios/**/*.toml")] path: PathBuf) {
    let catalogue = Catalogue::builtin().expect("the built-in catalogue parses");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // A matrix file yields one outcome per cell: each must pass and has its own snapshot.
    let outcomes = rt.block_on(suite::run_file(&path, &Target::Bundled, &catalogue));
    let failed: Vec<String> = outcomes
        .iter()
        .filter(|o| o.verdict != Verdict::Pass)
        .map(|o| {
            format!(
                "{} against the bundled pair:\n{}",
                o.verdict,
                report::details(o, &catalogue)
            )
        })
        .collect();
    assert!(failed.is_empty(), "{}", failed.join("\n"));
    for o in &outcomes {
        let mut name = snapshot_name(&path);
        if let Some(cell) = &o.cell {
            name = format!("{name}@{}", cell.replace('=', "-").replace(',', "__"));
        }
        insta::with_settings!({
            snapshot_path => Path::new(env!("CARGO_MANIFEST_DIR")).join("snapshots"),
            prepend_module_to_snapshot => false,
            input_file => &path,
            description => o.cell.clone().unwrap_or_default(),
            omit_expression => true,
        }, {
            insta::assert_snapshot!(name, o.normalised);
        });
    }
}
