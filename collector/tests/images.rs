//! The image definitions (`deploy/docker`): hadolint finds nothing, and they
//! agree with the chart (the collectors' user and ports). Building and
//! running the images is `cargo xtask dist` (a release build and a Docker
//! daemon; not in CI).

use std::path::{Path, PathBuf};
use std::process::Command;

fn docker_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/docker")
}

#[test]
fn dockerfiles_pass_hadolint() {
    let hadolint = std::env::var_os("OLLY_HADOLINT").map(PathBuf::from).expect(
        "OLLY_HADOLINT is not set: run through `cargo xtask ci`, or eval \"$(cargo xtask env)\"",
    );
    assert!(
        hadolint.is_file(),
        "{}: run `cargo xtask setup`",
        hadolint.display()
    );
    let files = ["Dockerfile.collector", "Dockerfile.ebpf-agent"].map(|f| docker_dir().join(f));
    let output = Command::new(hadolint)
        .args(&files)
        .output()
        .expect("run hadolint");
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_collector_image_matches_the_chart() {
    let dockerfile =
        std::fs::read_to_string(docker_dir().join("Dockerfile.collector")).expect("Dockerfile");
    // The chart runs collectors as 10001 with runAsNonRoot.
    assert!(dockerfile.contains("\nUSER 10001:10001\n"));
    let helpers = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../deploy/charts/ollyscale-otel/templates/_helpers.tpl"),
    )
    .expect("chart helpers");
    assert!(helpers.contains("runAsUser: 10001"));
    assert!(dockerfile.contains("EXPOSE 4317 4318 8888 13133"));
    assert!(dockerfile.contains("ENTRYPOINT [\"/collector\"]"));
}
