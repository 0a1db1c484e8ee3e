//! The library's error type: one variant per kind of failure, each naming its culprit.

use std::path::PathBuf;

/// Everything the library can fail with. Messages name the file, node, tensor or flag at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read.
    #[error("cannot read '{}': {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },

    /// A file could not be written (or renamed into place).
    #[error("cannot write '{}': {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },

    /// The bytes are not an ONNX `ModelProto`.
    #[error("'{}' is not a valid ONNX model (protobuf decoding failed: {source})", path.display())]
    Decode { path: PathBuf, source: prost::DecodeError },

    /// The model decodes but is structurally unusable (no graph, empty file, ...).
    #[error("'{}': {reason}", path.display())]
    BadModel { path: PathBuf, reason: String },

    /// A tensor's contents are inconsistent or of an unsupported kind.
    #[error("tensor '{tensor}': {reason}")]
    Tensor { tensor: String, reason: String },

    /// A tensor stored as external data cannot be read.
    #[error("external data of tensor '{tensor}': {reason}")]
    ExternalData { tensor: String, reason: String },

    /// No Gather in the graph qualifies as the word embedding.
    #[error("no word-embedding Gather found: {reason}")]
    NoEmbedding { reason: String },

    /// `--embedding NAME` names nothing usable.
    #[error("--embedding '{name}': {reason}")]
    EmbeddingOverride { name: String, reason: String },

    /// The embedding table is read by other nodes too (e.g. a tied LM head).
    #[error(
        "embedding table '{table}' is also read by {readers}; rewriting would keep the full table \
         and grow the file (tied decoders also lose much accuracy). Pass --allow-shared to rewrite \
         the lookup anyway"
    )]
    SharedTable { table: String, readers: String },

    /// A parameter (flag) has a value the method cannot use.
    #[error("invalid {flag}: {reason}")]
    InvalidParameter { flag: &'static str, reason: String },

    /// The table holds NaN or infinite values.
    #[error("embedding table '{tensor}' holds a non-finite value ({value}) at row {row}, column {column}")]
    NonFinite { tensor: String, row: usize, column: usize, value: f32 },

    /// The output path would overwrite the input.
    #[error("refusing to write '{}': it is the input model itself", path.display())]
    OutputIsInput { path: PathBuf },

    /// A corpus, tokenizer or token-count file cannot be used.
    #[error("'{}': {reason}", path.display())]
    Corpus { path: PathBuf, reason: String },

    /// The model uses something the rewrite cannot handle.
    #[error("unsupported model: {0}")]
    Unsupported(String),

    /// The compressed model answers too differently from the original (`--min-cos`).
    #[error("quality floor not met: mean cosine {measured:.4} on {on} is below --min-cos {floor}; nothing written")]
    QualityFloor { measured: f64, floor: f64, on: String },

    /// A numerical routine failed.
    #[error("numerical failure: {0}")]
    Numerical(String),

    /// tract could not load or run a model during validation.
    #[error("validation with tract failed on the {which} model: {message}")]
    Tract { which: &'static str, message: String },

    /// The rewritten model does not compute what was fitted.
    #[error("validation failed: {0}")]
    ValidationMismatch(String),
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
