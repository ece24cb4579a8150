//! Controlling a running `mfe dev` from another process: `mfe migrate cutover` and `rollback`
//! stop the services before they freeze a database and start them again in the new topology
//! afterwards; `mfe dev hold | restart | status` do the same by hand.
//!
//! The protocol is two files and two signals. `mfe dev` writes its pid to `MFE_DEV_PIDFILE`
//! (default `data/dev.pid`) and its state to `dev.state.json` beside it, rewritten atomically
//! (temporary file, then rename) on every change. SIGUSR1 asks it to stop every service and hold
//! them stopped; SIGHUP to start them all again, re-reading the topology. The state's
//! `generation` grows with each request `mfe dev` takes, so a waiter never mistakes the state from
//! before its signal for the answer to it.
//!
//! ```ignore
//! if let Some(dev) = devctl::running() {
//!     dev.hold(Duration::from_secs(30)).await?;   // every service stopped
//!     // ... freeze, switch the topology file ...
//!     dev.restart(Duration::from_secs(120)).await?; // every service ready in the new topology
//! }
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use serde::{Deserialize, Serialize};

/// Where `mfe dev` writes its pid unless `MFE_DEV_PIDFILE` says otherwise.
pub const DEFAULT_PIDFILE: &str = "data/dev.pid";

/// How often a waiter reads the state file again.
const POLL: Duration = Duration::from_millis(100);

/// The pid file `mfe dev` uses: `MFE_DEV_PIDFILE`, else [`DEFAULT_PIDFILE`].
pub fn pidfile() -> PathBuf {
    match std::env::var_os("MFE_DEV_PIDFILE") {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => PathBuf::from(DEFAULT_PIDFILE),
    }
}

/// The state file beside `pidfile`: `data/dev.pid` -> `data/dev.state.json`.
pub fn state_file(pidfile: &Path) -> PathBuf {
    let stem = pidfile
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "dev".into());
    pidfile.with_file_name(format!("{stem}.state.json"))
}

/// What `mfe dev` says about itself in its state file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DevState {
    /// `mfe dev`'s own pid.
    pub pid: u32,
    /// The topology the services were (last) started in: `split` or `shared`.
    pub topology: String,
    /// Stopped on request (SIGUSR1) until SIGHUP.
    pub held: bool,
    /// Counts the requests (SIGUSR1, SIGHUP) taken so far.
    pub generation: u64,
    /// Why the last request could not be carried out (a topology that cannot be read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// By short name: `auth`, `payments`, `admin`, `profile`, `psp-sandbox`.
    pub services: BTreeMap<String, ServiceState>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceState {
    pub state: Phase,
    /// The child's pid while it runs.
    pub pid: Option<u32>,
    /// Where it listens, e.g. `http://127.0.0.1:3001`.
    pub url: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Started, not ready yet.
    Starting,
    /// Answered its readiness route with 200 since it was started.
    Ready,
    /// Not running, on request.
    Stopped,
    /// Died; waiting to be started again.
    Backoff,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Ready => "ready",
            Phase::Stopped => "stopped",
            Phase::Backoff => "backoff",
        }
    }
}

impl DevState {
    /// Whether every service is in `phase`.
    pub fn all(&self, phase: Phase) -> bool {
        self.services.values().all(|s| s.state == phase)
    }

    /// The services not in `phase`, as `name (state)`.
    pub fn not_in(&self, phase: Phase) -> Vec<String> {
        self.services
            .iter()
            .filter(|(_, s)| s.state != phase)
            .map(|(name, s)| format!("{name} ({})", s.state.as_str()))
            .collect()
    }
}

/// A running `mfe dev`.
#[derive(Debug, Clone)]
pub struct DevHandle {
    pid: u32,
    state_file: PathBuf,
}

/// The `mfe dev` of [`pidfile`], if its pid file is there and names a live process.
pub fn running() -> Option<DevHandle> {
    running_at(&pidfile())
}

/// The `mfe dev` whose pid file is `pidfile`, if it names a live process.
pub fn running_at(pidfile: &Path) -> Option<DevHandle> {
    let pid: u32 = std::fs::read_to_string(pidfile).ok()?.trim().parse().ok()?;
    alive(pid).then(|| DevHandle {
        pid,
        state_file: state_file(pidfile),
    })
}

/// Whether a process `pid` exists (signal 0 checks without sending anything).
pub fn alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill with signal 0 sends nothing; it only reports whether the process exists.
    let sent = unsafe { libc::kill(pid, 0) };
    sent == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

impl DevHandle {
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The state file as `mfe dev` last wrote it.
    pub fn state(&self) -> anyhow::Result<DevState> {
        let text = std::fs::read_to_string(&self.state_file)
            .with_context(|| format!("cannot read {}", self.state_file.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{} is not mfe dev's state", self.state_file.display()))
    }

    /// Stops every service (SIGUSR1: SIGTERM to each, SIGKILL after 10 s) and waits until the
    /// state says they are all stopped and held.
    pub async fn hold(&self, timeout: Duration) -> anyhow::Result<()> {
        let before = self.state()?.generation;
        self.signal(libc::SIGUSR1)?;
        let (state, done) = self
            .wait(timeout, |s| {
                s.generation > before && s.held && s.all(Phase::Stopped)
            })
            .await?;
        if done {
            return Ok(());
        }
        Err(anyhow!(
            "mfe dev (pid {}) did not stop every service within {timeout:?}; still running: {}",
            self.pid,
            state
                .map(|s| s.not_in(Phase::Stopped).join(", "))
                .unwrap_or_default()
        ))
    }

    /// Starts every service again (SIGHUP: stopped first if running, the topology re-read) and
    /// waits until the state says none is held and all are ready; the error names those that
    /// are not.
    pub async fn restart(&self, timeout: Duration) -> anyhow::Result<()> {
        let before = self.state()?.generation;
        self.signal(libc::SIGHUP)?;
        let (state, done) = self
            .wait(timeout, |s| {
                s.generation > before && (s.error.is_some() || (!s.held && s.all(Phase::Ready)))
            })
            .await?;
        match state {
            Some(state) if done => match state.error {
                None => Ok(()),
                Some(error) => Err(anyhow!("mfe dev (pid {}) refused: {error}", self.pid)),
            },
            state => Err(anyhow!(
                "mfe dev (pid {}): services not ready within {timeout:?}: {}",
                self.pid,
                state
                    .map(|s| s.not_in(Phase::Ready).join(", "))
                    .unwrap_or_default()
            )),
        }
    }

    fn signal(&self, signal: libc::c_int) -> anyhow::Result<()> {
        let pid = i32::try_from(self.pid).context("pid out of range")?;
        // SAFETY: plain kill(2) on the pid mfe dev wrote; no memory is involved.
        if unsafe { libc::kill(pid, signal) } != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("cannot signal mfe dev (pid {pid})"));
        }
        Ok(())
    }

    /// Reads the state until `done` holds or `timeout` passes: the last state read and whether
    /// it was done. An error if `mfe dev` exits meanwhile.
    async fn wait(
        &self,
        timeout: Duration,
        done: impl Fn(&DevState) -> bool,
    ) -> anyhow::Result<(Option<DevState>, bool)> {
        let deadline = Instant::now() + timeout;
        let mut last = None;
        loop {
            if let Ok(state) = self.state() {
                if done(&state) {
                    return Ok((Some(state), true));
                }
                last = Some(state);
            }
            if !alive(self.pid) {
                return Err(anyhow!("mfe dev (pid {}) exited", self.pid));
            }
            if Instant::now() >= deadline {
                return Ok((last, false));
            }
            tokio::time::sleep(POLL).await;
        }
    }
}
