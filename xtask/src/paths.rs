//! Where `setup` puts things, and the `OLLY_*` variables that tell the tests.
//!
//! The tests read these variables and fall back to the same defaults, so a
//! developer who ran `cargo xtask setup` needs no variables at all:
//!
//! | variable | default |
//! | --- | --- |
//! | `OLLY_VENV` | `$OLLY_CACHE/venv`, where `OLLY_CACHE` defaults to `$HOME/.cache/ollyscale-otel` |
//! | `OLLY_PYTHON` | `$OLLY_VENV/bin/python` |
//! | `OLLY_HELM3` | `$OLLY_CACHE/tools/helm3/helm/helm` (Helm 3.17) |
//! | `OLLY_HELM4` | `$OLLY_CACHE/tools/helm4/helm/helm` (Helm 4) |
//! | `OLLY_KUBECTL` | `$OLLY_CACHE/tools/helm4/kubectl/kubectl` (kubectl 1.33) |
//! | `OLLY_HADOLINT` | `$OLLY_VENV/bin/hadolint` |
//! | `OLLY_KUBERNETES_VALIDATE` | `$OLLY_VENV/bin/kubernetes-validate` |
//! | `OLLY_DNSMASQ` | `/usr/sbin/dnsmasq` |
//! | `OLLY_CHROMIUM` | `/usr/bin/chromium` |
//! | `OLLY_JS_DIR` | `collector/tests/js` (the web SDK test page; `setup` runs `npm ci` there) |
//!
//! The cache lives outside the repository on purpose: CI starts from a fresh
//! clone (no `target/`), but the machine, and so `~/.cache`, may be reused.

use std::ffi::OsString;
use std::path::PathBuf;

/// Debian's dnsmasq binary (package `dnsmasq-base`).
pub(crate) const SYSTEM_DNSMASQ: &str = "/usr/sbin/dnsmasq";
/// Debian's Chromium (package `chromium`).
pub(crate) const SYSTEM_CHROMIUM: &str = "/usr/bin/chromium";

fn env_path(var: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// The workspace root (the parent of this crate's folder).
pub(crate) fn repo_root() -> PathBuf {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map(PathBuf::from)
        .unwrap_or(manifest_dir)
}

/// `$OLLY_CACHE`, else `$HOME/.cache/ollyscale-otel`.
pub(crate) fn cache_dir() -> PathBuf {
    env_path("OLLY_CACHE").unwrap_or_else(|| {
        env_path("HOME")
            .unwrap_or_else(std::env::temp_dir)
            .join(".cache")
            .join("ollyscale-otel")
    })
}

/// The Python venv with the test clients: `$OLLY_VENV`, else `<cache>/venv`.
pub(crate) fn venv_dir() -> PathBuf {
    env_path("OLLY_VENV").unwrap_or_else(|| cache_dir().join("venv"))
}

/// A program in the venv's `bin/`.
pub(crate) fn venv_bin(name: &str) -> PathBuf {
    venv_dir().join("bin").join(name)
}

/// The venv's interpreter (what `setup` installs into).
pub(crate) fn venv_python() -> PathBuf {
    venv_bin("python")
}

/// Unpacked tools (Helm, kubectl).
pub(crate) fn tools_dir() -> PathBuf {
    cache_dir().join("tools")
}

/// The folder one Lambda-layer package was unpacked into (`helm3`, `helm4`).
pub(crate) fn layer_dir(name: &str) -> PathBuf {
    tools_dir().join(name)
}

/// Helm 3.17, as installed by `setup`.
pub(crate) fn helm3() -> PathBuf {
    layer_dir("helm3").join("helm").join("helm")
}

/// Helm 4, as installed by `setup`.
pub(crate) fn helm4() -> PathBuf {
    layer_dir("helm4").join("helm").join("helm")
}

/// kubectl 1.33 (shipped beside Helm 4).
pub(crate) fn kubectl() -> PathBuf {
    layer_dir("helm4").join("kubectl").join("kubectl")
}

/// The npm project of the browser SDK test (`collector/tests/js`): its
/// `package-lock.json` is committed, `setup` fills its `node_modules`.
pub(crate) fn js_dir() -> PathBuf {
    repo_root().join("collector").join("tests").join("js")
}

/// The variables the tests read, each taken from the environment when set there,
/// else the default location `setup` installs to.
pub(crate) fn test_env() -> Vec<(&'static str, OsString)> {
    let defaults: [(&'static str, PathBuf); 10] = [
        ("OLLY_VENV", venv_dir()),
        ("OLLY_PYTHON", venv_python()),
        ("OLLY_HELM3", helm3()),
        ("OLLY_HELM4", helm4()),
        ("OLLY_KUBECTL", kubectl()),
        ("OLLY_HADOLINT", venv_bin("hadolint")),
        ("OLLY_KUBERNETES_VALIDATE", venv_bin("kubernetes-validate")),
        ("OLLY_DNSMASQ", PathBuf::from(SYSTEM_DNSMASQ)),
        ("OLLY_CHROMIUM", PathBuf::from(SYSTEM_CHROMIUM)),
        ("OLLY_JS_DIR", js_dir()),
    ];
    defaults
        .into_iter()
        .map(|(var, default)| {
            let value = env_path(var).unwrap_or(default);
            (var, value.into_os_string())
        })
        .collect()
}

/// `cargo xtask env`: one `export VAR=value` line per variable.
pub(crate) fn print_exports() {
    for (var, value) in test_env() {
        println!("export {var}={}", crate::cmd::shell_quote(&value));
    }
}
