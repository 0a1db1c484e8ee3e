//! Compiles `proto/onnx.proto` with prost-build, parsed by protox (no `protoc` binary needed).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/onnx.proto");
    let descriptors = protox::compile(["proto/onnx.proto"], ["proto"])?;
    // The tract version this build links and the profile, for the benchmarks' labels (from
    // Cargo.lock; "unknown" where there is none, as in a published package).
    println!("cargo:rerun-if-changed=Cargo.lock");
    let lock = std::fs::read_to_string("Cargo.lock").unwrap_or_default();
    let tract = lock
        .split("[[package]]")
        .find(|p| p.contains("name = \"tract-onnx\""))
        .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = \"")))
        .map_or("unknown", |v| v.trim_end_matches('"'));
    println!("cargo:rustc-env=ONNX_EMBCOMP_TRACT_VERSION={tract}");
    let profile = match std::env::var("PROFILE").as_deref() {
        Ok("release") => "release profile",
        _ => "dev profile",
    };
    println!("cargo:rustc-env=ONNX_EMBCOMP_PROFILE={profile}");
    prost_build::Config::new()
        // Tensor payloads stay as `Bytes` slices of the file buffer instead of copies.
        .bytes(["."])
        .compile_fds(descriptors)?;
    Ok(())
}
