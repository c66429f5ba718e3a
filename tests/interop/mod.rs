//! Interop tests against real third-party peers (Prosody, Kamailio's xmpp module, SIPp
//! and slixmpp). Each peer runs as a child process on loopback with a
//! generated config, so these tests need the Debian packages installed.
//!
//! Policy for a missing peer binary: under `CI=true` the test fails (CI
//! installs the packages, so absence is a broken pipeline); anywhere else it
//! prints a skip message and passes, so `cargo test` works on a bare machine.

pub mod chat;
pub mod kamailio;
pub mod pair;
pub mod prosody;
pub mod prosody_tls;
pub mod sim_xmpp;
pub mod sipp;

/// True when the environment says we run in CI (`CI=true`, as GitHub
/// Actions, GitLab and most CI systems set it).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// Decide what to do with a peer that may be missing: `Some` runs the test;
/// `None` means "skip" (message printed). Under CI a missing peer panics,
/// which fails the calling test with `what` and `hint` in its message.
pub fn require_peer<T>(found: Option<T>, what: &str, hint: &str) -> Option<T> {
    match found {
        Some(t) => Some(t),
        None if in_ci() => {
            panic!("{what} is required under CI=true but was not found ({hint})")
        }
        None => {
            eprintln!("SKIP: {what} not found ({hint}); set CI=true to make this a failure");
            None
        }
    }
}
