//! The harness reports broken scenarios and failed expectations clearly: file, line,
//! requirement, exit code.

use std::path::{Path, PathBuf};
use std::process::Command;

use fedcheck::harness::catalogue::Catalogue;
use fedcheck::harness::suite;
use fedcheck::harness::target::Target;
use fedcheck::harness::verdict::Verdict;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn run(name: &str) -> fedcheck::harness::verdict::Outcome {
    let catalogue = Catalogue::builtin().expect("catalogue");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(suite::run_file(&data(name), &Target::Bundled, &catalogue))
        .remove(0)
}

#[test]
fn toml_syntax_error_names_file_and_line() {
    let o = run("syntax-error.toml");
    assert_eq!(o.verdict, Verdict::Error);
    let reason = o.reason.unwrap_or_default();
    assert!(reason.contains("syntax-error.toml:"), "{reason}");
    // The unclosed array starts on line 3; the parser notices by line 5 at the latest.
    assert!(
        reason.contains(":3:") || reason.contains(":5:") || reason.contains(":4:"),
        "{reason}"
    );
}

#[test]
fn unknown_step_action_names_the_step_line() {
    let o = run("unknown-action.toml");
    assert_eq!(o.verdict, Verdict::Error);
    let reason = o.reason.unwrap_or_default();
    assert!(reason.contains("unknown-action.toml:13:"), "{reason}");
    assert!(reason.contains("unknown field `shout`"), "{reason}");
}

#[test]
fn failed_expectation_names_line_requirement_and_what_came() {
    let o = run("expects-too-much.toml");
    assert_eq!(o.verdict, Verdict::Fail);
    let f = o.failure.expect("a failure record");
    assert_eq!(f.line, 18, "the [[step]] line of the failing expect");
    assert_eq!(f.covers, vec!["STR-02".to_string()]);
    assert!(f.got.contains("version"), "{}", f.got);
}

#[test]
fn cli_exit_codes_follow_the_verdicts() {
    let exe = env!("CARGO_BIN_EXE_fedcheck");
    let fail = Command::new(exe)
        .arg("run")
        .arg(data("expects-too-much.toml"))
        .output()
        .expect("run fedcheck");
    assert_eq!(
        fail.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&fail.stdout)
    );
    let stdout = String::from_utf8_lossy(&fail.stdout);
    assert!(stdout.contains("expects-too-much.toml:18"), "{stdout}");
    assert!(stdout.contains("STR-02"), "{stdout}");
    let err = Command::new(exe)
        .arg("run")
        .arg(data("syntax-error.toml"))
        .output()
        .expect("run fedcheck");
    assert_eq!(err.status.code(), Some(2));
}

#[test]
fn a_repeated_value_fails_a_freshness_capture() {
    let o = run("fresh-id-repeats.toml");
    assert_eq!(o.verdict, Verdict::Fail, "{:?}", o.reason);
    let f = o.failure.expect("a failure record");
    assert!(
        f.got.contains("already seen as the stream id of `in`"),
        "{}",
        f.got
    );
}
