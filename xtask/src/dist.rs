//! `cargo xtask dist`: static release binaries and, where a Docker daemon
//! answers, the images.
//!
//! 1. `cargo build --release --target x86_64-unknown-linux-musl` of the three
//!    collectors and the eBPF agent (its probes are embedded by its build
//!    script), so the binaries need nothing from the image.
//! 2. A build context in `target/dist/context`: the binaries, the build
//!    machine's CA bundle, and `/etc/passwd` + `/etc/group` with the
//!    non-root user 10001 the collectors run as.
//! 3. With a Docker daemon: `deploy/docker/Dockerfile.collector` per
//!    collector and `Dockerfile.ebpf-agent` (`FROM scratch`; `--base IMAGE`
//!    for another base such as distroless), each image run once: `--version`,
//!    and each collector serving its health endpoint with its embedded
//!    config. Prints the sizes.

use crate::cmd::{self, run_captured, run_inherited};
use crate::paths;
use anyhow::{Context, Result, bail};
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const TARGET: &str = "x86_64-unknown-linux-musl";
const COLLECTORS: [&str; 3] = ["agent-collector", "gateway-collector", "browser-collector"];
const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Options of `cargo xtask dist`.
#[derive(Debug, clap::Args)]
pub(crate) struct DistArgs {
    /// Base image instead of `scratch` (e.g. gcr.io/distroless/static-debian12:nonroot).
    #[arg(long)]
    base: Option<String>,
    /// Build the binaries and the context only.
    #[arg(long)]
    no_images: bool,
}

pub(crate) fn run(args: DistArgs) -> Result<()> {
    let root = paths::repo_root();
    println!("dist: static release binaries ({TARGET})");
    run_inherited(
        cmd::cargo()
            .current_dir(&root)
            .args(["build", "--release", "--locked", "--target", TARGET])
            .args(["-p", "collector", "-p", "ebpf-agent"])
            // ring's C code, built with Debian's musl-tools.
            .env("CC_x86_64_unknown_linux_musl", "musl-gcc"),
    )
    .context("building the static binaries (needs `rustup target add x86_64-unknown-linux-musl` and Debian's musl-tools)")?;

    let built = root.join("target").join(TARGET).join("release");
    let context = root.join("target/dist/context");
    let _ = fs::remove_dir_all(&context);
    fs::create_dir_all(context.join("etc"))?;
    for binary in COLLECTORS.iter().chain(&["ebpf-agent"]) {
        fs::copy(built.join(binary), context.join(binary))
            .with_context(|| format!("copying {binary}"))?;
        // No debug info in an image.
        run_captured(Command::new("strip").arg(context.join(binary)))?;
    }
    fs::copy(CA_BUNDLE, context.join("ca-certificates.crt"))
        .with_context(|| format!("copying {CA_BUNDLE} (Debian's ca-certificates)"))?;
    fs::write(
        context.join("etc/passwd"),
        "root:x:0:0:root:/:/sbin/nologin\nollyscale:x:10001:10001:ollyscale-otel:/nonexistent:/sbin/nologin\n",
    )?;
    fs::write(context.join("etc/group"), "root:x:0:\nollyscale:x:10001:\n")?;
    for binary in COLLECTORS.iter().chain(&["ebpf-agent"]) {
        let size = fs::metadata(context.join(binary))?.len();
        println!("  {binary:<18} {:>6.1} MiB (static, stripped)", mib(size));
    }

    if args.no_images {
        return Ok(());
    }
    if !cmd::succeeds(Command::new("docker").arg("info")) {
        println!("dist: no Docker daemon answers `docker info`; images not built");
        return Ok(());
    }
    let version = env!("CARGO_PKG_VERSION");
    let base = args.base.as_deref().unwrap_or("scratch");
    let docker = root.join("deploy/docker");
    let mut images = Vec::new();
    for binary in COLLECTORS {
        let tag = format!("ollyscale-otel/{binary}:{version}");
        build(
            &docker.join("Dockerfile.collector"),
            &context,
            &tag,
            base,
            Some(binary),
        )?;
        images.push((binary, tag));
    }
    let tag = format!("ollyscale-otel/ebpf-agent:{version}");
    build(
        &docker.join("Dockerfile.ebpf-agent"),
        &context,
        &tag,
        base,
        None,
    )?;
    images.push(("ebpf-agent", tag));

    for (binary, tag) in &images {
        let printed = run_captured(Command::new("docker").args(["run", "--rm", tag, "--version"]))?;
        println!("  {tag}: --version -> {}", printed.trim());
        if *binary != "ebpf-agent" {
            serves_health(tag)?;
            println!("  {tag}: serves its health endpoint as user 10001");
        }
    }
    println!("\n{:<44} {:>10}", "image", "size");
    for (_, tag) in &images {
        let bytes = run_captured(Command::new("docker").args([
            "image",
            "inspect",
            "--format",
            "{{.Size}}",
            tag,
        ]))?;
        let bytes: u64 = bytes.trim().parse().unwrap_or(0);
        println!("{tag:<44} {:>7.1} MiB", mib(bytes));
    }
    Ok(())
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1_048_576.0
}

fn build(
    dockerfile: &Path,
    context: &Path,
    tag: &str,
    base: &str,
    binary: Option<&str>,
) -> Result<()> {
    let mut command = Command::new("docker");
    command
        .args(["build", "--quiet", "-f"])
        .arg(dockerfile)
        .args(["-t", tag, "--build-arg", &format!("BASE={base}")]);
    if let Some(binary) = binary {
        command.args(["--build-arg", &format!("BINARY={binary}")]);
    }
    command.arg(context);
    run_captured(&mut command).with_context(|| format!("building {tag}"))?;
    Ok(())
}

/// Runs the image with its embedded config and waits for 200 from the
/// health_check extension (port 13133, published on loopback).
fn serves_health(tag: &str) -> Result<()> {
    let id = run_captured(Command::new("docker").args([
        "run",
        "-d",
        "--rm",
        "-p",
        "127.0.0.1::13133",
        tag,
    ]))?;
    let id = id.trim().to_string();
    let result = (|| -> Result<()> {
        let port = run_captured(Command::new("docker").args(["port", &id, "13133/tcp"]))?;
        let port = port
            .lines()
            .next()
            .and_then(|l| l.rsplit(':').next())
            .and_then(|p| p.trim().parse::<u16>().ok())
            .context("no published health port")?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if health_ok(port) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let logs = run_captured(Command::new("docker").args(["logs", &id])).unwrap_or_default();
        bail!("{tag} did not serve its health endpoint within 20s:\n{logs}")
    })();
    let _ = run_captured(Command::new("docker").args(["rm", "-f", &id]));
    result
}

fn health_ok(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.starts_with("HTTP/1.1 200")
}
