//! `mfe dev`: the whole platform on one machine, supervised, for development and for rehearsing a
//! cutover. The four services and the PSP sandbox run as child processes from the binaries next to
//! `mfe`; their output comes out on `mfe dev`'s stdout, each line prefixed with the child's name.
//!
//! One task per child keeps it in the state it is asked for (running in a topology, or stopped):
//! it starts the child, polls its readiness route, restarts it with a backoff when it dies, stops it
//! with SIGTERM (SIGKILL after 10 s) when asked. The main loop turns signals into those requests
//! and keeps the state file that [`crate::devctl`] reads. Children are in process groups of their
//! own (a Ctrl-C in the terminal reaches `mfe dev` only, which stops them in order) and get SIGTERM
//! from the kernel if `mfe dev` dies without stopping them (`PR_SET_PDEATHSIG`).

use std::convert::Infallible;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use platform::config::{DEFAULT_TOPOLOGY_FILE, Topology};
use platform::{Env, Service};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::devctl::{self, DevState, Phase, ServiceState};

pub const AFTER_HELP: &str = "\
Runs psp-sandbox and auth-service first, then payments-, admin- and profile-service, as child
processes from the binaries next to mfe (or in MFE_BIN_DIR), every line of their output on stdout
prefixed with the child's name. A child that dies is started again after 0.5 s, doubling up to 30 s
(back to 0.5 s once it ran 60 s).

Every child inherits mfe dev's environment, plus:
  DATABASE_TOPOLOGY   split or shared, as the configuration names it: the environment, else the
                      topology file (MFE_TOPOLOGY_FILE, default data/topology.env); read again on
                      every start of the whole set
  AUTH_SERVICE_URL, PSP_URL, PSP_WEBHOOK_URL
                      derived from the ports below, where the environment does not set them
  EVENTS_QUEUE        <PREFIX>_EVENTS_QUEUE of that service when set (e.g. PAYMENTS_EVENTS_QUEUE);
                      a plain EVENTS_QUEUE is refused, it would give all services one queue
Ports: AUTH_SERVICE_PORT (3001), PAYMENTS_SERVICE_PORT (3002), ADMIN_SERVICE_PORT (3003),
PROFILE_SERVICE_PORT (3004), PSP_SANDBOX_PORT (3010). A child is ready when GET /ready (the
sandbox: /health) answers 200 on 127.0.0.1 (or its *_HOST).

Control: mfe dev writes its pid to MFE_DEV_PIDFILE (default data/dev.pid) and its state to
dev.state.json beside it (both removed at exit). Signals:
  SIGINT, SIGTERM   stop every child (SIGTERM, SIGKILL after 10 s) and exit 0
  SIGUSR1           stop every child and hold them stopped            (mfe dev hold)
  SIGHUP            start every child again, re-reading the topology  (mfe dev restart)

Exit codes: 0 stopped by a signal, or done; 1 no mfe dev running (hold, restart, status);
2 usage, setup or control error.";

/// `mfe dev [hold | restart | status]`.
#[derive(Args)]
pub struct DevArgs {
    #[command(subcommand)]
    action: Option<DevAction>,
}

#[derive(Subcommand)]
enum DevAction {
    /// Stop the services of the running `mfe dev` and hold them stopped (its SIGUSR1).
    Hold {
        /// Seconds to wait until every service stopped.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
    },
    /// Start them again, re-reading the topology, and wait until all are ready (its SIGHUP).
    Restart {
        /// Seconds to wait until every service is ready.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
    },
    /// Show the running `mfe dev`'s state (`--json`: its state file).
    Status,
}

/// Runs `mfe dev` or one of its control commands; the exit code.
pub async fn run(args: DevArgs, json: bool) -> u8 {
    match args.action {
        None => match supervise().await {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("mfe dev: {e:#}");
                2
            }
        },
        Some(action) => control(action, json).await,
    }
}

/// A child is stopped with SIGTERM, then SIGKILL after this.
const STOP_GRACE: Duration = Duration::from_secs(10);
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A child that ran this long before dying starts again after [`FIRST_BACKOFF`].
const STABLE: Duration = Duration::from_secs(60);
/// How long the others wait for the sandbox and auth before they are started anyway.
const FIRST_READY_LIMIT: Duration = Duration::from_secs(60);
const READY_POLL: Duration = Duration::from_millis(200);
/// The longest name, `psp-sandbox`, so the prefixes line up.
const WIDTH: usize = 11;
const DEV: &str = "mfe dev";

/// One child: what to run and where it listens.
struct Spec {
    /// `auth`, `payments`, `admin`, `profile`, `psp-sandbox`.
    name: &'static str,
    binary: PathBuf,
    /// `http://127.0.0.1:<port>`.
    url: String,
    /// `/ready`, or the sandbox's `/health` (it has no dependencies to be ready for).
    ready_path: &'static str,
    /// Set on top of the inherited environment (DATABASE_TOPOLOGY comes with each start).
    env: Vec<(String, String)>,
    /// Started, and waited for, before the others: the sandbox and auth (whose JWKS they need).
    first: bool,
}

/// What a child's task is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Desired {
    Run(Topology),
    Stop,
    /// Stop and end the task: `mfe dev` is exiting.
    Exit,
}

/// The children, the requests to their tasks and the state everybody watches.
struct Platform {
    specs: Vec<Arc<Spec>>,
    desired: Vec<watch::Sender<Desired>>,
    state: Arc<watch::Sender<DevState>>,
}

impl Platform {
    fn desire(&self, which: impl Fn(&Spec) -> bool, want: Desired) {
        for (spec, tx) in self.specs.iter().zip(&self.desired) {
            if which(spec) {
                tx.send_if_modified(|current| {
                    let changed = *current != want;
                    *current = want;
                    changed
                });
            }
        }
    }

    /// Waits until the state satisfies `done`.
    async fn until(&self, done: impl FnMut(&DevState) -> bool) -> DevState {
        let mut rx = self.state.subscribe();
        // The sender lives in `self`, so the channel cannot close while this waits.
        let state = rx.wait_for(done).await.map(|state| state.clone());
        match state {
            Ok(state) => state,
            Err(_) => std::future::pending().await,
        }
    }
}

async fn supervise() -> anyhow::Result<()> {
    let env = Env::from_process();
    let bin_dir = bin_dir()?;
    let specs = specs(&bin_dir, &env)?;
    let pidfile = devctl::pidfile();
    let state_path = devctl::state_file(&pidfile);
    if let Some(other) = devctl::running_at(&pidfile) {
        bail!(
            "already running (pid {}, {}); stop it first",
            other.pid(),
            pidfile.display()
        );
    }
    let (topology, source) = read_topology()?;

    // Before the pid file exists: SIGUSR1 and SIGHUP would otherwise end the process.
    let mut signals = Signals::new()?;

    if let Some(dir) = pidfile.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let initial = initial_state(&specs, topology);
    let files = Files {
        pidfile: pidfile.clone(),
        state: state_path.clone(),
    };
    write_json(&state_path, &initial)
        .with_context(|| format!("cannot write {}", state_path.display()))?;
    write_atomically(&pidfile, format!("{}\n", std::process::id()).as_bytes())
        .with_context(|| format!("cannot write {}", pidfile.display()))?;
    note(&format!(
        "pid {} ({}), binaries from {}; topology {} ({source})",
        std::process::id(),
        pidfile.display(),
        bin_dir.display(),
        topology_name(topology)
    ));

    let (state_tx, state_rx) = watch::channel(initial);
    let writer = tokio::spawn(write_states(state_rx, state_path));
    let state = Arc::new(state_tx);
    let mut desired = Vec::new();
    let mut children = Vec::new();
    for spec in &specs {
        let (tx, rx) = watch::channel(Desired::Stop);
        desired.push(tx);
        children.push(tokio::spawn(keep(spec.clone(), rx, state.clone())));
    }
    let platform = Arc::new(Platform {
        specs,
        desired,
        state,
    });

    let mut action: Option<JoinHandle<()>> =
        Some(tokio::spawn(start_all(platform.clone(), topology)));
    let why = loop {
        tokio::select! {
            _ = signals.interrupt.recv() => break "SIGINT",
            _ = signals.terminate.recv() => break "SIGTERM",
            _ = signals.user1.recv() => hold(&platform, &mut action),
            _ = signals.hangup.recv() => restart(&platform, &mut action),
        }
    };

    abort(&mut action);
    note(&format!("{why}: stopping every service"));
    platform.desire(|_| true, Desired::Exit);
    for child in children {
        let _ = child.await;
    }
    // The writer only awaits between whole writes, so aborting it leaves no half-written file.
    writer.abort();
    let _ = writer.await;
    drop(files);
    note("stopped");
    Ok(())
}

/// The signals `mfe dev` takes.
struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    user1: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Self> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            user1: signal(SignalKind::user_defined1())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }
}

/// Every service stopped, in `topology`.
fn initial_state(specs: &[Arc<Spec>], topology: Topology) -> DevState {
    DevState {
        pid: std::process::id(),
        topology: topology_name(topology).into(),
        held: false,
        generation: 0,
        error: None,
        services: specs
            .iter()
            .map(|s| {
                let entry = ServiceState {
                    state: Phase::Stopped,
                    pid: None,
                    url: s.url.clone(),
                };
                (s.name.to_string(), entry)
            })
            .collect(),
    }
}

/// SIGUSR1: every service stopped, and held so.
fn hold(platform: &Arc<Platform>, action: &mut Option<JoinHandle<()>>) {
    abort(action);
    platform.state.send_modify(|s| {
        s.held = true;
        s.generation += 1;
        s.error = None;
    });
    note("SIGUSR1: stopping every service; they stay stopped until SIGHUP");
    *action = Some(tokio::spawn(hold_all(platform.clone())));
}

/// SIGHUP: every service started again, in the topology read now.
fn restart(platform: &Arc<Platform>, action: &mut Option<JoinHandle<()>>) {
    abort(action);
    match read_topology() {
        Ok((topology, source)) => {
            platform.state.send_modify(|s| {
                s.held = false;
                s.generation += 1;
                s.error = None;
                s.topology = topology_name(topology).into();
            });
            note(&format!(
                "SIGHUP: restarting every service, topology {} ({source})",
                topology_name(topology)
            ));
            *action = Some(tokio::spawn(start_all(platform.clone(), topology)));
        }
        Err(e) => {
            // Starting in the previous topology after a switch would be worse than not
            // starting at all.
            let error = format!("cannot read the topology: {e}");
            note(&format!("SIGHUP: {error}; every service stays stopped"));
            platform.state.send_modify(|s| {
                s.held = true;
                s.generation += 1;
                s.error = Some(error);
            });
            *action = Some(tokio::spawn(hold_all(platform.clone())));
        }
    }
}

/// Stops every child, then starts the sandbox and auth, then (once they are ready, or after
/// [`FIRST_READY_LIMIT`]) the others, and says where everything listens once all are ready.
async fn start_all(platform: Arc<Platform>, topology: Topology) {
    platform.desire(|_| true, Desired::Stop);
    platform.until(|s| s.all(Phase::Stopped)).await;
    platform.desire(|s| s.first, Desired::Run(topology));
    let first: Vec<&str> = platform
        .specs
        .iter()
        .filter(|s| s.first)
        .map(|s| s.name)
        .collect();
    let first_ready = platform.until(|s| {
        first.iter().all(|name| {
            s.services
                .get(*name)
                .is_some_and(|e| e.state == Phase::Ready)
        })
    });
    if tokio::time::timeout(FIRST_READY_LIMIT, first_ready)
        .await
        .is_err()
    {
        note(&format!(
            "{} not ready after {} s; starting the others anyway",
            first.join(" and "),
            FIRST_READY_LIMIT.as_secs()
        ));
    }
    platform.desire(|s| !s.first, Desired::Run(topology));
    platform.until(|s| s.all(Phase::Ready)).await;
    let listening: Vec<String> = platform
        .specs
        .iter()
        .map(|s| format!("{} {}", s.name, s.url))
        .collect();
    note(&format!(
        "all ready, topology {}: {}",
        topology_name(topology),
        listening.join(", ")
    ));
}

async fn hold_all(platform: Arc<Platform>) {
    platform.desire(|_| true, Desired::Stop);
    platform.until(|s| s.all(Phase::Stopped)).await;
    note("every service stopped; held until SIGHUP");
}

fn abort(action: &mut Option<JoinHandle<()>>) {
    if let Some(task) = action.take() {
        task.abort();
    }
}

/// Keeps one child as `desired` says, until asked to exit.
async fn keep(
    spec: Arc<Spec>,
    mut desired: watch::Receiver<Desired>,
    state: Arc<watch::Sender<DevState>>,
) {
    let mut backoff = FIRST_BACKOFF;
    loop {
        let want = *desired.borrow_and_update();
        let topology = match want {
            Desired::Run(topology) => topology,
            Desired::Stop | Desired::Exit => {
                set_phase(&state, spec.name, Phase::Stopped, None);
                backoff = FIRST_BACKOFF;
                if want == Desired::Exit || desired.changed().await.is_err() {
                    return;
                }
                continue;
            }
        };
        let mut child = match start(&spec, topology) {
            Ok(child) => child,
            Err(e) => {
                note(&format!(
                    "cannot start {} ({}): {e}; trying again in {}",
                    spec.name,
                    spec.binary.display(),
                    seconds(backoff)
                ));
                set_phase(&state, spec.name, Phase::Backoff, None);
                pause(&mut desired, &mut backoff).await;
                continue;
            }
        };
        let pid = child.process.id();
        set_phase(&state, spec.name, Phase::Starting, pid);
        note(&format!(
            "started {} (pid {}, topology {})",
            spec.name,
            pid.unwrap_or_default(),
            topology_name(topology)
        ));
        let started = Instant::now();
        let died = tokio::select! {
            status = child.process.wait() => Some(status),
            _ = desired.changed() => None,
            never = become_ready(&spec, &state, pid) => match never {},
        };
        match died {
            None => {
                let status = child.stop(spec.name).await;
                note(&format!("{} stopped ({})", spec.name, describe(&status)));
                set_phase(&state, spec.name, Phase::Stopped, None);
            }
            Some(status) => {
                child.drain().await;
                if started.elapsed() >= STABLE {
                    backoff = FIRST_BACKOFF;
                }
                note(&format!(
                    "{} exited ({}); restarting in {}",
                    spec.name,
                    describe(&status),
                    seconds(backoff)
                ));
                set_phase(&state, spec.name, Phase::Backoff, None);
                pause(&mut desired, &mut backoff).await;
            }
        }
    }
}

/// Waits out `backoff` (doubling it for next time) unless a new request comes first.
async fn pause(desired: &mut watch::Receiver<Desired>, backoff: &mut Duration) {
    let delay = *backoff;
    *backoff = (delay * 2).min(MAX_BACKOFF);
    tokio::select! {
        _ = tokio::time::sleep(delay) => {}
        _ = desired.changed() => {}
    }
}

/// Polls the child's readiness route until it answers 200, records it, then waits forever (the
/// caller's other branches end the wait).
async fn become_ready(
    spec: &Spec,
    state: &watch::Sender<DevState>,
    pid: Option<u32>,
) -> Infallible {
    // The children are local: a proxy from the environment must not stand in between.
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap_or_default();
    let url = format!("{}{}", spec.url, spec.ready_path);
    loop {
        if let Ok(response) = client.get(&url).send().await
            && response.status() == reqwest::StatusCode::OK
        {
            break;
        }
        tokio::time::sleep(READY_POLL).await;
    }
    set_phase(state, spec.name, Phase::Ready, pid);
    note(&format!("{} ready at {}", spec.name, spec.url));
    std::future::pending().await
}

fn set_phase(state: &watch::Sender<DevState>, name: &str, phase: Phase, pid: Option<u32>) {
    state.send_if_modified(|s| match s.services.get_mut(name) {
        Some(entry) if entry.state != phase || entry.pid != pid => {
            entry.state = phase;
            entry.pid = pid;
            true
        }
        _ => false,
    });
}

/// A started child and the tasks copying its output.
struct Child {
    process: tokio::process::Child,
    pipes: Vec<JoinHandle<()>>,
}

fn start(spec: &Spec, topology: Topology) -> std::io::Result<Child> {
    let mut command = tokio::process::Command::new(&spec.binary);
    command
        .envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("DATABASE_TOPOLOGY", topology_name(topology))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    let parent = std::process::id();
    // SAFETY: between fork and exec the closure makes only async-signal-safe calls (prctl,
    // getppid) and allocates nothing.
    unsafe {
        command.pre_exec(move || die_with(parent));
    }
    let mut process = command.spawn()?;
    let mut pipes = Vec::new();
    if let Some(stdout) = process.stdout.take() {
        pipes.push(tokio::spawn(prefix_lines(stdout, spec.name)));
    }
    if let Some(stderr) = process.stderr.take() {
        pipes.push(tokio::spawn(prefix_lines(stderr, spec.name)));
    }
    Ok(Child { process, pipes })
}

/// In the child before exec: SIGTERM when `mfe dev` dies, SIGKILL included. The kernel sends it
/// when the *thread* that forked ends; children are started from the runtime's worker threads,
/// which live as long as `mfe dev`.
fn die_with(parent: u32) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: prctl and getppid touch no memory of ours.
        unsafe {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // mfe dev died between the fork and the prctl: the signal will never come.
            if u32::try_from(libc::getppid()).ok() != Some(parent) {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = parent;
    Ok(())
}

impl Child {
    /// SIGTERM, then SIGKILL after [`STOP_GRACE`]; the exit status.
    async fn stop(&mut self, name: &str) -> std::io::Result<ExitStatus> {
        if let Some(pid) = self.process.id().and_then(|p| i32::try_from(p).ok()) {
            // SAFETY: kill(2) on our own child, not yet reaped (its pid cannot have been reused).
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let status = match tokio::time::timeout(STOP_GRACE, self.process.wait()).await {
            Ok(status) => status,
            Err(_) => {
                note(&format!(
                    "{name} did not stop within {} s; killing it",
                    STOP_GRACE.as_secs()
                ));
                self.process.kill().await?;
                self.process.wait().await
            }
        };
        self.drain().await;
        status
    }

    /// Lets the output tasks print what the child wrote last (briefly: a grandchild could hold
    /// the pipe open).
    async fn drain(&mut self) {
        for pipe in self.pipes.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(1), pipe).await;
        }
    }
}

async fn prefix_lines(pipe: impl AsyncRead + Unpin, name: &'static str) {
    let mut reader = BufReader::new(pipe);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => say(
                name,
                String::from_utf8_lossy(&line).trim_end_matches(['\n', '\r']),
            ),
        }
    }
}

/// One line on stdout, prefixed with `name`.
fn say(name: &str, text: &str) {
    // A closed stdout (the terminal went away) must not end the supervision.
    let _ = writeln!(std::io::stdout().lock(), "{name:<WIDTH$} | {text}");
}

/// One line of `mfe dev`'s own.
fn note(text: &str) {
    say(DEV, text);
}

fn describe(status: &std::io::Result<ExitStatus>) -> String {
    match status {
        Ok(status) => status.to_string(),
        Err(e) => format!("status unknown: {e}"),
    }
}

fn seconds(d: Duration) -> String {
    format!("{} s", d.as_secs_f64())
}

fn topology_name(topology: Topology) -> &'static str {
    match topology {
        Topology::Split => "split",
        Topology::Shared => "shared",
    }
}

/// The topology the configuration names now, and where that came from.
fn read_topology() -> anyhow::Result<(Topology, String)> {
    let env = Env::from_process();
    let topology = env.parse_or("DATABASE_TOPOLOGY", Topology::Split)?;
    let in_process = std::env::var("DATABASE_TOPOLOGY").is_ok_and(|v| !v.trim().is_empty());
    let file = env.string_or("MFE_TOPOLOGY_FILE", DEFAULT_TOPOLOGY_FILE);
    let source = if in_process {
        "DATABASE_TOPOLOGY in the environment".to_string()
    } else if env.get("DATABASE_TOPOLOGY").is_some() {
        format!("from {file}")
    } else {
        format!("the default, {file} does not name one")
    };
    Ok((topology, source))
}

/// `MFE_BIN_DIR`, else the directory of the running `mfe`.
fn bin_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("MFE_BIN_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    let exe = std::env::current_exe().context("cannot find the mfe executable")?;
    exe.parent()
        .map(Path::to_path_buf)
        .context("the mfe executable has no directory")
}

/// The five children in start order, with their ports and the variables derived from them.
fn specs(bin_dir: &Path, env: &Env) -> anyhow::Result<Vec<Arc<Spec>>> {
    if env.get("EVENTS_QUEUE").is_some() {
        bail!(
            "EVENTS_QUEUE would give every service the same queue; set <PREFIX>_EVENTS_QUEUE \
             (e.g. PAYMENTS_EVENTS_QUEUE) per service instead"
        );
    }
    let (psp_port, psp_url) = endpoint(env, "PSP_SANDBOX_HOST", "PSP_SANDBOX_PORT", 3010)?;
    let mut services = Vec::new();
    for service in Service::ALL {
        let prefix = service.env_prefix();
        let port_var = format!("{prefix}_SERVICE_PORT");
        let (port, url) = endpoint(
            env,
            &format!("{prefix}_SERVICE_HOST"),
            &port_var,
            service.default_port(),
        )?;
        let mut vars = vec![(port_var, port.to_string())];
        if let Some(queue) = env.get(&format!("{prefix}_EVENTS_QUEUE")) {
            vars.push(("EVENTS_QUEUE".into(), queue.to_string()));
        }
        services.push((service, url, vars));
    }
    let url_of = |wanted: Service| -> String {
        services
            .iter()
            .find(|(s, _, _)| *s == wanted)
            .map(|(_, url, _)| url.clone())
            .unwrap_or_default()
    };
    let mut derived = Vec::new();
    for (var, value) in [
        ("AUTH_SERVICE_URL", url_of(Service::Auth)),
        ("PSP_URL", psp_url.clone()),
        (
            "PSP_WEBHOOK_URL",
            format!("{}/psp/webhooks", url_of(Service::Payments)),
        ),
    ] {
        if env.get(var).is_none() {
            derived.push((var.to_string(), value));
        }
    }

    let mut specs = vec![Spec {
        name: "psp-sandbox",
        binary: bin_dir.join("psp-sandbox"),
        url: psp_url,
        ready_path: "/health",
        env: [("PSP_SANDBOX_PORT".to_string(), psp_port.to_string())]
            .into_iter()
            .chain(derived.iter().cloned())
            .collect(),
        first: true,
    }];
    for (service, url, vars) in services {
        specs.push(Spec {
            name: service.name().trim_end_matches("-service"),
            binary: bin_dir.join(service.name()),
            url,
            ready_path: "/ready",
            env: vars.into_iter().chain(derived.iter().cloned()).collect(),
            first: service == Service::Auth,
        });
    }
    let missing: Vec<String> = specs
        .iter()
        .filter(|s| !s.binary.is_file())
        .map(|s| s.binary.display().to_string())
        .collect();
    if !missing.is_empty() {
        bail!(
            "missing {} (build them: cargo build --bin auth-service --bin payments-service \
             --bin admin-service --bin profile-service --bin psp-sandbox; or set MFE_BIN_DIR)",
            missing.join(", ")
        );
    }
    Ok(specs.into_iter().map(Arc::new).collect())
}

/// The port in `port_var` and the URL to reach it: 127.0.0.1 unless `host_var` names a
/// specific address.
fn endpoint(
    env: &Env,
    host_var: &str,
    port_var: &str,
    default: u16,
) -> anyhow::Result<(u16, String)> {
    let port: u16 = env.parse_or(port_var, default)?;
    if port == 0 {
        bail!("{port_var}=0: mfe dev needs every port up front to wait for it");
    }
    let host = match env.get(host_var).map(str::trim) {
        Some(host) if !matches!(host, "0.0.0.0" | "::" | "[::]") => host,
        _ => "127.0.0.1",
    };
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    Ok((port, format!("http://{host}:{port}")))
}

/// Writes every new state, one at a time (so one temporary file suffices).
async fn write_states(mut rx: watch::Receiver<DevState>, path: PathBuf) {
    loop {
        let state = rx.borrow_and_update().clone();
        if let Err(e) = write_json(&path, &state) {
            note(&format!("cannot write {}: {e}", path.display()));
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

fn write_json(path: &Path, state: &DevState) -> std::io::Result<()> {
    write_atomically(path, &serde_json::to_vec_pretty(state)?)
}

/// A reader sees the old file or the new one, never half of one.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = tmp_path(path);
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// The pid and state files, removed when `mfe dev` ends (or fails after writing them).
struct Files {
    pidfile: PathBuf,
    state: PathBuf,
}

impl Drop for Files {
    fn drop(&mut self) {
        for path in [
            &self.pidfile,
            &self.state,
            &tmp_path(&self.state),
            &tmp_path(&self.pidfile),
        ] {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// `mfe dev hold | restart | status`, against the `mfe dev` of `MFE_DEV_PIDFILE`.
async fn control(action: DevAction, json: bool) -> u8 {
    let Some(dev) = devctl::running() else {
        eprintln!(
            "mfe dev: not running (no live pid in {})",
            devctl::pidfile().display()
        );
        return 1;
    };
    let done = match action {
        DevAction::Hold { timeout } => dev.hold(Duration::from_secs(timeout)).await.map(|()| {
            format!(
                "every service of mfe dev (pid {}) stopped and held",
                dev.pid()
            )
        }),
        DevAction::Restart { timeout } => dev
            .restart(Duration::from_secs(timeout))
            .await
            .map(|()| format!("every service of mfe dev (pid {}) ready", dev.pid())),
        DevAction::Status => dev.state().map(|state| render(&state)),
    };
    let shown = done.and_then(|text| {
        if json {
            Ok(serde_json::to_string_pretty(&dev.state()?)?)
        } else {
            Ok(text)
        }
    });
    match shown {
        Ok(text) => {
            println!("{text}");
            0
        }
        Err(e) => {
            eprintln!("mfe dev: {e:#}");
            2
        }
    }
}

fn render(state: &DevState) -> String {
    let mut text = format!(
        "mfe dev pid {}, topology {}{}",
        state.pid,
        state.topology,
        if state.held { ", held" } else { "" }
    );
    if let Some(error) = &state.error {
        text.push_str(&format!("\nlast request failed: {error}"));
    }
    for (name, service) in &state.services {
        let pid = service
            .pid
            .map(|p| p.to_string())
            .unwrap_or_else(|| "-".into());
        text.push_str(&format!(
            "\n  {name:<WIDTH$}  {:<8}  pid {pid:<8}  {}",
            service.state.as_str(),
            service.url
        ));
    }
    text
}
