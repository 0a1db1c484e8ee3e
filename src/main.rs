//! The `onnx-embcomp` command (see `onnx_embcomp::cli`).

fn main() -> std::process::ExitCode {
    onnx_embcomp::cli::main()
}
