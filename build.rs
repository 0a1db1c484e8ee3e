//! Compiles `proto/onnx.proto` with prost-build, parsed by protox (no `protoc` binary needed).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/onnx.proto");
    let descriptors = protox::compile(["proto/onnx.proto"], ["proto"])?;
    prost_build::Config::new()
        // Tensor payloads stay as `Bytes` slices of the file buffer instead of copies.
        .bytes(["."])
        .compile_fds(descriptors)?;
    Ok(())
}
