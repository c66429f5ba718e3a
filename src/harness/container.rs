//! `kind = "container"` targets: the SUT's main program runs from a container image
//! through a local Docker engine (crate `testcontainers`, cargo feature `containers`),
//! with the rest of a process target's machinery unchanged — free ports, config templates
//! rendered into the scratch dir and bind-mounted into the container, readiness by TCP
//! address, file and log text, log capture, services, waivers (docs/targets.md).
//!
//! Why host networking: the simulated servers and SIP peers listen on the host's loopback,
//! and the SUT must dial them there (no DNS, `@ROUTES@`); with `network = host` the
//! container shares the host's 127.0.0.1, so a container target needs no address
//! translation and its config reads exactly like a process target's.
//!
//! Without the `containers` feature the spec still parses (a target file is checked the
//! same way), and starting it is a harness `error` saying how to build fedcheck for it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::process::ProcessError;

/// `[container]` of a target file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerSpec {
    /// Image name, e.g. `prosody/prosody`.
    pub image: String,
    /// Image tag (default `latest`).
    pub tag: String,
    /// Replaces the image's command when not empty; `{…}` variables expanded.
    pub command: Vec<String>,
    /// Environment of the container; values `{…}`-expanded.
    pub env: BTreeMap<String, String>,
    /// Scratch-dir path (a rendered config, `pki`) → path inside the container.
    pub mounts: BTreeMap<String, String>,
}

/// Where the container's stdout and stderr are copied, in the scratch dir.
pub const STDOUT_LOG: &str = "container.stdout.log";
pub const STDERR_LOG: &str = "container.stderr.log";

/// A started container (only with the `containers` feature).
#[cfg(feature = "containers")]
pub struct RunningContainer {
    inner: Option<std::sync::Arc<testcontainers::ContainerAsync<testcontainers::GenericImage>>>,
    /// The exit code once the container was seen stopped.
    exited: std::sync::Arc<std::sync::Mutex<Option<i64>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Stand-in without the `containers` feature: never constructed.
#[cfg(not(feature = "containers"))]
pub struct RunningContainer {
    never: std::convert::Infallible,
}

impl std::fmt::Debug for RunningContainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RunningContainer")
    }
}

/// The log files a container target's main program writes (besides its own `log_files`).
pub fn log_files(dir: &Path) -> Vec<PathBuf> {
    vec![dir.join(STDOUT_LOG), dir.join(STDERR_LOG)]
}

/// Start the container: host network, the mounts, env and command as expanded by the
/// caller. Readiness is the caller's (the same polling as a process).
#[cfg(feature = "containers")]
pub async fn start(
    spec: &ContainerSpec,
    dir: &Path,
    command: Vec<String>,
    env: BTreeMap<String, String>,
) -> Result<RunningContainer, ProcessError> {
    use std::sync::{Arc, Mutex};
    use testcontainers::core::Mount;
    use testcontainers::runners::AsyncRunner as _;
    use testcontainers::{GenericImage, ImageExt as _};
    use tokio::io::AsyncWriteExt as _;

    let tag = if spec.tag.is_empty() {
        "latest"
    } else {
        spec.tag.as_str()
    };
    let mut req = GenericImage::new(spec.image.as_str(), tag).with_network("host");
    for (host, inside) in &spec.mounts {
        // A scratch-dir path only: nothing else of the host is handed to the container.
        if host.starts_with('/') || host.split('/').any(|c| c == "..") {
            return Err(ProcessError::Template(format!(
                "container.mounts key {host:?} must be a path inside the scratch dir"
            )));
        }
        let source = dir.join(host).to_string_lossy().into_owned();
        req = req.with_mount(Mount::bind_mount(source, inside.as_str()));
    }
    for (k, v) in env {
        req = req.with_env_var(k, v);
    }
    if !command.is_empty() {
        req = req.with_cmd(command);
    }
    let container = req.start().await.map_err(|e| ProcessError::Io {
        doing: format!("starting container {}:{tag}", spec.image),
        source: std::io::Error::other(e.to_string()),
    })?;
    let container = Arc::new(container);
    let exited = Arc::new(Mutex::new(None));
    let mut tasks = Vec::new();
    // Copy the container's output into the scratch dir, as a process's goes to files.
    for (name, err) in [(STDOUT_LOG, false), (STDERR_LOG, true)] {
        let c = container.clone();
        let path = dir.join(name);
        tasks.push(tokio::spawn(async move {
            let Ok(mut file) = tokio::fs::File::create(&path).await else {
                return;
            };
            let mut reader = if err { c.stderr(true) } else { c.stdout(true) };
            let _ = tokio::io::copy_buf(&mut reader, &mut file).await;
            let _ = file.flush().await;
        }));
    }
    // Watch for the container ending: any process of the SUT dying is the SUT dying.
    {
        let c = container.clone();
        let exited = exited.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                if let Ok(false) = c.is_running().await {
                    let code = c.exit_code().await.ok().flatten().unwrap_or(-1);
                    if let Ok(mut g) = exited.lock() {
                        *g = Some(code);
                    }
                    return;
                }
            }
        }));
    }
    Ok(RunningContainer {
        inner: Some(container),
        exited,
        tasks,
    })
}

/// Without the `containers` feature a container target cannot start: a harness error.
#[cfg(not(feature = "containers"))]
pub async fn start(
    spec: &ContainerSpec,
    _dir: &Path,
    _command: Vec<String>,
    _env: BTreeMap<String, String>,
) -> Result<RunningContainer, ProcessError> {
    Err(ProcessError::Template(format!(
        "target image {}: this fedcheck was built without container support (cargo build --features containers)",
        spec.image
    )))
}

#[cfg(feature = "containers")]
impl RunningContainer {
    /// The exit status once the container stopped (the watcher polls every 200 ms).
    pub fn exited(&self) -> Option<std::process::ExitStatus> {
        use std::os::unix::process::ExitStatusExt as _;
        let code = (*self.exited.lock().ok()?)?;
        // An exit code as wait(2) reports it: the code in the second byte.
        let code = i32::try_from(code.clamp(0, 255)).unwrap_or(255);
        Some(std::process::ExitStatus::from_raw(code << 8))
    }

    /// Stop the container (SIGTERM, then SIGKILL after `grace`) and remove it.
    pub async fn stop(&mut self, grace: std::time::Duration) {
        for t in self.tasks.drain(..) {
            t.abort();
            let _ = t.await;
        }
        let Some(c) = self.inner.take() else { return };
        let secs = i32::try_from(grace.as_secs().max(1)).unwrap_or(i32::MAX);
        let _ = c.stop_with_timeout(Some(secs)).await;
        if let Ok(c) = std::sync::Arc::try_unwrap(c) {
            let _ = c.rm().await;
        }
    }
}

#[cfg(not(feature = "containers"))]
impl RunningContainer {
    pub fn exited(&self) -> Option<std::process::ExitStatus> {
        match self.never {}
    }

    pub async fn stop(&mut self, _grace: std::time::Duration) {
        match self.never {}
    }
}

#[cfg(all(test, not(feature = "containers")))]
mod tests {
    use super::*;

    /// Built without the feature, a container target is a harness error naming the fix.
    #[tokio::test]
    async fn starting_without_the_feature_is_an_error_naming_it() {
        let spec = ContainerSpec {
            image: "prosody/prosody".into(),
            tag: "0.12".into(),
            ..ContainerSpec::default()
        };
        let e = start(&spec, &std::env::temp_dir(), Vec::new(), BTreeMap::new())
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("--features containers"), "{e}");
        assert!(e.contains("prosody/prosody"), "{e}");
    }
}
