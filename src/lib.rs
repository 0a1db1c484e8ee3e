//! onnx-embcomp: shrink the word-embedding table of an ONNX transformer by (k, j)-projective
//! clustering (MESSI, Maalouf et al., ICLR 2021), as a model-rewriting pass.
//!
//! The entry point is [`compress`]: it finds the embedding Gather, fits k subspaces of
//! dimension j to the table's rows, replaces the lookup by k parallel branches recombined by
//! Concat + MatMul, and (optionally) validates the result with tract (or onnxruntime). [`compress_to_target`]
//! searches the smallest such model that keeps a cosine. Data-aware compression (rows
//! weighted by token frequency, held-out text) is [`Options::data`] with a
//! [`data::DataOptions`]. Only [`onnx::io`] and the command line touch files.
//!
//! Stages, in order: `pipeline::prepare` -> `pipeline::fit` -> `rewrite` -> [`check`] ->
//! [`Report`]; [`progress`] names them.

pub mod check;
/// The command line (flags, terminal text, progress bar, plot): the binary's and the Python
/// package's console script, not the library's API.
#[cfg(feature = "cli")]
#[doc(hidden)]
pub mod cli;
pub mod cluster;
// Product codes: a storage kind for the pipeline to choose (not wired into it yet).
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) mod codes;
pub mod corpus;
pub mod data;
mod error;
pub mod files;
pub mod inspect;
pub mod metrics;
pub mod onnx;
mod pipeline;
pub mod prior;
pub mod progress;
pub mod report;
pub(crate) mod rewrite;
pub mod storage;
pub mod quant;

pub use check::{Runtime, ValidateOptions};
pub use error::{Error, Param, Result, Role};
pub use onnx::Model;
pub use pipeline::{AUTO_K, Data, FitTuning, Method, Options, Setting, Subspaces, compress, compress_to_target};
pub use pipeline::{Goal, Sweep, SweepGrid, compress_to_front, sweep};
pub use report::{Family, Point};
pub use progress::{Progress, Stage};
pub use report::Report;
pub use storage::{HotTier, Precision, Size, Storage};

/// Makes glibc return large freed blocks to the system at once. By default its threshold for
/// that grows to the largest block freed so far, so the fit's and the validation's big
/// temporaries (tens to hundreds of MB) stay resident for the rest of the run. Call it first
/// thing in a program; a no-op off glibc.
pub fn return_large_frees_to_os() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes an allocator setting, under glibc's own locks.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}
