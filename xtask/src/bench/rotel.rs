//! Getting Rotel, the Rust collector the benchmark compares against.
//!
//! PyPI's `rotel` wheel carries the agent binary (`rotel/rotel-agent`). It is
//! downloaded once with pip into `<cache>/rotel/`, unpacked beside the wheel
//! into a folder named after it, and reused from there. The binary links
//! libpython of the wheel's Python version, so it runs with the interpreter's
//! `LIBDIR` on `LD_LIBRARY_PATH`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::cmd::{is_executable, run_captured, which};
use crate::paths;

/// A runnable Rotel agent.
#[derive(Clone, Debug)]
pub(crate) struct Rotel {
    /// The `rotel-agent` binary.
    pub(crate) binary: PathBuf,
    /// What `rotel-agent version` printed.
    pub(crate) version: String,
    /// Prepended to `LD_LIBRARY_PATH` (the folder holding libpython).
    library_dir: Option<PathBuf>,
}

impl Rotel {
    /// A command running the agent with its library path set and no
    /// `ROTEL_*` variables inherited (they would override the flags' defaults).
    pub(crate) fn command(&self) -> Command {
        let mut command = Command::new(&self.binary);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("ROTEL_") {
                command.env_remove(name);
            }
        }
        if let Some(dir) = &self.library_dir {
            let mut value = OsString::from(dir);
            if let Some(old) = std::env::var_os("LD_LIBRARY_PATH").filter(|v| !v.is_empty()) {
                value.push(":");
                value.push(old);
            }
            command.env("LD_LIBRARY_PATH", value);
        }
        command
    }
}

/// Finds or fetches Rotel. `explicit` is a `rotel-agent` given on the command line.
pub(crate) fn obtain(explicit: Option<&Path>) -> Result<Rotel> {
    let python = python();
    let binary = match explicit {
        Some(path) => path.to_path_buf(),
        None => unpacked_binary(&python)?,
    };
    if !is_executable(&binary) {
        bail!("{} is not an executable file", binary.display());
    }
    let library_dir = python.as_deref().and_then(python_library_dir);
    let mut rotel = Rotel {
        binary,
        version: String::new(),
        library_dir,
    };
    let version = run_captured(rotel.command().arg("version"))
        .context("rotel-agent does not run on this machine")?;
    rotel.version = version.trim().to_string();
    Ok(rotel)
}

/// The Python whose pip downloads the wheel: the test venv's when set up, else `python3`.
fn python() -> Option<PathBuf> {
    let venv = paths::venv_python();
    if is_executable(&venv) {
        Some(venv)
    } else {
        which("python3")
    }
}

/// The binary unpacked from the newest cached wheel, downloading one first if none is cached.
fn unpacked_binary(python: &Option<PathBuf>) -> Result<PathBuf> {
    let dir = paths::cache_dir().join("rotel");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let wheel = match newest_wheel(&dir)? {
        Some(wheel) => wheel,
        None => {
            download_wheel(python.as_deref(), &dir)?;
            newest_wheel(&dir)?.with_context(|| {
                format!(
                    "pip reported success but left no rotel-*.whl in {}",
                    dir.display()
                )
            })?
        }
    };
    let stem = wheel
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let unpacked = dir.join(&stem);
    let binary = unpacked.join("rotel").join("rotel-agent");
    if !is_executable(&binary) {
        unpack(python.as_deref(), &wheel, &unpacked)?;
        make_executable(&binary)?;
    }
    Ok(binary)
}

fn newest_wheel(dir: &Path) -> Result<Option<PathBuf>> {
    let mut wheels: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            name.starts_with("rotel-") && name.ends_with(".whl")
        })
        .collect();
    // Newest last by modification time (versions like 0.0.1a15 do not sort as text).
    wheels.sort_by_key(|path| path.metadata().and_then(|m| m.modified()).ok());
    Ok(wheels.pop())
}

fn download_wheel(python: Option<&Path>, dir: &Path) -> Result<()> {
    let Some(python) = python else {
        bail!("no Python to run pip with (run `cargo xtask setup`, or install python3)");
    };
    eprintln!(
        "bench: downloading Rotel from PyPI into {} ...",
        dir.display()
    );
    run_captured(
        Command::new(python)
            .args([
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary=:all:",
                "--disable-pip-version-check",
                "--quiet",
                "rotel",
                "-d",
            ])
            .arg(dir),
    )
    .context("pip download rotel")?;
    Ok(())
}

/// Unpacks the wheel (a zip) with Python's zipfile module, else `unzip`.
fn unpack(python: Option<&Path>, wheel: &Path, into: &Path) -> Result<()> {
    let with_python = python.map(|python| {
        run_captured(
            Command::new(python)
                .args(["-m", "zipfile", "-e"])
                .arg(wheel)
                .arg(into),
        )
    });
    match with_python {
        Some(Ok(_)) => Ok(()),
        other => {
            let python_error = other.and_then(|r| r.err());
            run_captured(
                Command::new("unzip")
                    .args(["-o", "-q"])
                    .arg(wheel)
                    .arg("-d")
                    .arg(into),
            )
            .map(|_| ())
            .with_context(|| match python_error {
                Some(e) => format!(
                    "unpacking {} (python's zipfile failed too: {e:#})",
                    wheel.display()
                ),
                None => format!("unpacking {}", wheel.display()),
            })
        }
    }
}

fn make_executable(binary: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let metadata = binary
        .metadata()
        .with_context(|| format!("the wheel has no {}", binary.display()))?;
    let mut permissions = metadata.permissions();
    permissions.set_mode(permissions.mode() | 0o755);
    std::fs::set_permissions(binary, permissions)
        .with_context(|| format!("chmod +x {}", binary.display()))
}

/// `sysconfig.get_config_var("LIBDIR")` of `python`, when it holds a libpython.
fn python_library_dir(python: &Path) -> Option<PathBuf> {
    let out = run_captured(Command::new(python).args([
        "-c",
        "import sysconfig; print(sysconfig.get_config_var('LIBDIR') or '')",
    ]))
    .ok()?;
    let dir = PathBuf::from(out.trim());
    let has_libpython = std::fs::read_dir(&dir)
        .ok()?
        .filter_map(|e| e.ok())
        .any(|e| e.file_name().to_string_lossy().starts_with("libpython"));
    has_libpython.then_some(dir)
}
