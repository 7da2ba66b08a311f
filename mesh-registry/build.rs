//! Generates the gRPC watch service from `proto/registry.proto`, with the protoc that ships
//! inside `protoc-bin-vendored` (nothing to install).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/registry.proto");
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure().compile_with_config(
        config,
        &["proto/registry.proto"],
        &["proto"],
    )?;
    Ok(())
}
