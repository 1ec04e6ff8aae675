//! Compiles the OpAMP protocol definitions (`proto/opamp/v1`, vendored from
//! the specification) into Rust with prost. `protox` parses the `.proto`
//! files, so the machine needs no `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/opamp/v1/opamp.proto",
        "proto/opamp/v1/anyvalue.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
