//! Integration tests: the fixture generator (`fixtures`), the command line (`cli`), the library
//! API (`library`), ignored runs on real pretrained models (`real_models`), and ignored checks
//! in onnxruntime and onnxruntime-web that `.ci/run` installs and runs (`runtimes`).

mod cli;
mod corpus;
mod coverage;
mod fixtures;
mod fuzz_seeds;
mod library;
mod properties;
mod quantized;
mod real_models;
mod runtimes;
mod tied;
mod words;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use onnx_embcomp::Model;
use onnx_embcomp::onnx::proto::TensorProto;

/// What a run of the binary did.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `onnx-embcomp` with `args` in the current folder.
pub fn run<S: AsRef<OsStr>>(args: &[S]) -> Run {
    run_in(None, args)
}

/// Runs `onnx-embcomp` with `args` and the environment variables `env` set.
pub fn run_with_env<S: AsRef<OsStr>>(args: &[S], env: &[(&str, &OsStr)]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_onnx-embcomp"));
    cmd.args(args).envs(env.iter().copied());
    Run::of(cmd.output().expect("the binary runs"))
}

/// Runs `onnx-embcomp` with `args` in `dir` (the current folder when `None`).
pub fn run_in<S: AsRef<OsStr>>(dir: Option<&Path>, args: &[S]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_onnx-embcomp"));
    cmd.args(args);
    if let Some(dir) = dir {
        cmd.current_dir(dir);
    }
    Run::of(cmd.output().expect("the binary runs"))
}

impl Run {
    /// What a finished command printed and returned.
    pub fn of(out: std::process::Output) -> Run {
        Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Asserts exit 0 and no panic.
    #[track_caller]
    pub fn ok(&self) -> &Run {
        assert_eq!(self.code, Some(0), "expected success:\n{self:#?}");
        assert!(!self.stderr.contains("panicked"), "{self:#?}");
        self
    }

    /// Asserts a clean failure: exit 2, exactly one stderr line starting `onnx-embcomp: error:`
    /// that contains every string of `culprits`, and no panic. Returns the line.
    #[track_caller]
    pub fn error(&self, culprits: &[&str]) -> String {
        assert_eq!(self.code, Some(2), "expected exit 2:\n{self:#?}");
        assert!(!self.stderr.contains("panicked") && !self.stdout.contains("panicked"), "{self:#?}");
        let lines: Vec<&str> = self.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "expected one stderr line:\n{}", self.stderr);
        let line = lines[0];
        assert!(line.starts_with("onnx-embcomp: error: "), "{line}");
        for c in culprits {
            assert!(line.contains(c), "error message lacks {c:?}: {line}");
        }
        line.to_string()
    }
}

/// A committed fixture.
pub fn fixture(name: &str) -> PathBuf {
    fixtures::path(name)
}

/// Writes `model` to `dir/name`.
pub fn write_model(dir: &Path, name: &str, model: &Model) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, model.encode()).expect("write model");
    path
}

/// The initializer `name` of the main graph.
pub fn initializer<'a>(model: &'a Model, name: &str) -> Option<&'a TensorProto> {
    model.graph().initializer.iter().find(|t| t.name() == name)
}

/// Reads a JSON file.
pub fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}\n{text}", path.display()))
}

/// A fresh temporary folder.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temporary folder")
}

/// The default run options.
pub fn float_options() -> onnx_embcomp::Options {
    onnx_embcomp::Options::default()
}

/// The default setting with float storage: the paper's layout, which the layout tests check.
pub fn float_setting() -> onnx_embcomp::Setting {
    let mut storage = onnx_embcomp::Storage::default();
    storage.bits = onnx_embcomp::Precision::Float;
    onnx_embcomp::Setting::new(onnx_embcomp::Method::default(), storage)
}

/// `k` subspaces at `size`, float storage.
pub fn float_subspaces(k: onnx_embcomp::Subspaces, size: onnx_embcomp::Size) -> onnx_embcomp::Setting {
    let mut s = float_setting();
    s.method = onnx_embcomp::Method::Subspaces { k, size, adaptive: false };
    s
}
