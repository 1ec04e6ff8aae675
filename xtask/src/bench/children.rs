//! The processes a benchmark starts, and the promise that none outlives it.
//!
//! Every child is owned by a [`ChildGuard`] that kills and reaps it when
//! dropped: at the end of its contender's turn, on an error (the `?` unwinds
//! the guards), on a panic, and on Ctrl-C / SIGTERM / SIGHUP, which only set
//! a flag that every wait loop here checks (see [`check_interrupted`]), so
//! that the run returns an error through the same path.

use std::ffi::c_int;
use std::fs::File;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::cmd::describe;

/// How often wait loops look at the condition they wait for.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Lines of a child's log quoted in an error.
const LOG_TAIL_LINES: usize = 15;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_signal: c_int) {
    // Only an atomic store: async-signal-safe.
    INTERRUPTED.store(true, Ordering::SeqCst);
}

// libc's `signal(2)`, declared here because xtask takes no libc crate. Its return value (the previous handler) is pointer-sized.
unsafe extern "C" {
    fn signal(signum: c_int, handler: extern "C" fn(c_int)) -> usize;
}

/// Turns SIGINT, SIGTERM and SIGHUP into a flag instead of an abrupt exit,
/// so that the guards get to kill the children.
pub(crate) fn catch_interrupts() {
    const SIGHUP: c_int = 1;
    const SIGINT: c_int = 2;
    const SIGTERM: c_int = 15;
    for signum in [SIGHUP, SIGINT, SIGTERM] {
        // SAFETY: installs a handler that only stores to an atomic; the
        // signal numbers are Linux's.
        unsafe {
            signal(signum, on_signal);
        }
    }
}

/// An error once Ctrl-C (or SIGTERM/SIGHUP) arrived.
pub(crate) fn check_interrupted() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

/// Waits one poll interval, or fails if the run was interrupted.
pub(crate) fn pause() -> Result<()> {
    check_interrupted()?;
    std::thread::sleep(POLL_INTERVAL);
    check_interrupted()
}

/// A running child process, killed and reaped when dropped.
#[derive(Debug)]
pub(crate) struct ChildGuard {
    name: String,
    child: Child,
    log: PathBuf,
}

impl ChildGuard {
    /// Starts `cmd` with stdin closed and stdout and stderr going to `log`.
    pub(crate) fn spawn(name: &str, cmd: &mut Command, log: &Path) -> Result<Self> {
        let out = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone().context("duplicating a log file handle")?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("{name}: could not start `{}`", describe(cmd)))?;
        Ok(Self {
            name: name.to_string(),
            child,
            log: log.to_path_buf(),
        })
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The file its output goes to.
    pub(crate) fn log(&self) -> &Path {
        &self.log
    }

    /// An error if the process has exited, quoting the end of its log.
    pub(crate) fn check_running(&mut self) -> Result<()> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => bail!(
                "{} exited ({status}); end of {}:\n{}",
                self.name,
                self.log.display(),
                self.log_tail()
            ),
            Err(e) => bail!("{}: waiting for it: {e}", self.name),
        }
    }

    /// The exit status, once it has exited (`None` while it runs).
    pub(crate) fn try_exit(&mut self) -> Result<Option<std::process::ExitStatus>> {
        self.child
            .try_wait()
            .with_context(|| format!("{}: waiting for it", self.name))
    }

    /// Polls until something accepts TCP connections on `address`, failing
    /// when the process exits first or `timeout` passes.
    pub(crate) fn wait_listening(&mut self, address: SocketAddr, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            self.check_running()?;
            if TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
                // Connected to our child, unless it died in the meantime.
                return self.check_running();
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} did not listen on {address} within {timeout:?}; end of {}:\n{}",
                    self.name,
                    self.log.display(),
                    self.log_tail()
                );
            }
            pause()?;
        }
    }

    /// The last lines of the log.
    pub(crate) fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}
