//! The library's error type: one variant per kind of failure, each naming its culprit.

use std::path::PathBuf;

/// A setting of [`crate::Options`] (or of the fit, the check or the data-aware weighting) that
/// an [`Error::InvalidParameter`] is about. The command line maps each to its flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Param {
    /// The number of subspaces.
    K,
    /// The subspace dimension.
    J,
    /// The fraction of numbers to remove.
    Ratio,
    /// Per-cluster dimensions within the budget.
    AdaptiveJ,
    /// Restarts of the fit.
    Restarts,
    /// Lloyd iterations per restart.
    MaxIter,
    /// The fit's relative tolerance.
    Tol,
    /// Rows the restarts run on.
    SampleRows,
    /// Row weights.
    Weights,
    /// The weight floor of data-aware weighting.
    WeightFloor,
    /// Validation batch size.
    Batch,
    /// Validation sequence length.
    Seq,
    /// The quality floor.
    MinCos,
    /// The cosine a search aims for.
    TargetCos,
    /// Probes of a search.
    Probes,
    /// Bits per stored value.
    Bits,
    /// Values per quantization block.
    Block,
    /// Bits of the frequent-token tier.
    HotBits,
    /// Share of the counted tokens the frequent tier covers.
    HotMass,
    /// Plain (unclustered) storage.
    Plain,
    /// The most bytes a search may pick.
    MaxBytes,
    /// Which node or initializer is the table.
    Embedding,
    /// Rewriting a table that other nodes read too.
    AllowShared,
    /// The validation (on or off).
    Validate,
    /// The runtime the validation runs the models in.
    Runtime,
    /// Where large tensors are written (inline or as external data).
    ExternalData,
    /// How much the tokenizer's prior weighs against token counts.
    PriorStrength,
    /// The share of held-out tokens drawn from the tokenizer's prior.
    PriorShare,
    /// The share of a corpus's documents held out.
    Holdout,
    /// Values per sub-vector of product codes.
    SubVector,
    /// Codewords per position of product codes.
    Codewords,
}

impl Param {
    /// The setting's name in the library (a field of the options).
    pub fn name(self) -> &'static str {
        match self {
            Param::K => "k",
            Param::J => "j",
            Param::Ratio => "ratio",
            Param::AdaptiveJ => "adaptive j",
            Param::Restarts => "restarts",
            Param::MaxIter => "max_iter",
            Param::Tol => "tol",
            Param::SampleRows => "sample_rows",
            Param::Weights => "weights",
            Param::WeightFloor => "weight_floor",
            Param::Batch => "batch",
            Param::Seq => "seq",
            Param::MinCos => "min_cos",
            Param::TargetCos => "target_cos",
            Param::Probes => "probes",
            Param::Bits => "bits",
            Param::Block => "block",
            Param::HotBits => "hot_bits",
            Param::HotMass => "hot_mass",
            Param::Plain => "plain",
            Param::MaxBytes => "max_bytes",
            Param::Embedding => "embedding",
            Param::AllowShared => "allow_shared",
            Param::Validate => "validate",
            Param::Runtime => "runtime",
            Param::ExternalData => "external_data",
            Param::PriorStrength => "prior_strength",
            Param::PriorShare => "prior_share",
            Param::Holdout => "holdout",
            Param::SubVector => "sub",
            Param::Codewords => "codewords",
        }
    }
}

impl std::fmt::Display for Param {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Which of the two models a check is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The model as given.
    Original,
    /// The model with the compressed lookup.
    Rewritten,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Original => "original",
            Role::Rewritten => "rewritten",
        })
    }
}

/// Everything the library can fail with. Messages name the file, node, tensor or setting at
/// fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
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

    /// The table asked for by name ([`Param::Embedding`]) names nothing usable.
    #[error("{}", self.describe(Param::name))]
    EmbeddingOverride { name: String, reason: String },

    /// The embedding table is read by other nodes too (e.g. a tied LM head).
    #[error("{}", self.describe(Param::name))]
    SharedTable { table: String, readers: String },

    /// The table is also a tied LM head that the setting's storage cannot serve; `param` names
    /// the flag at fault, `setting` what it asks for.
    #[error("{}", self.describe(Param::name))]
    TiedHead { table: String, head: String, setting: String, param: Param },

    /// A setting has a value the method cannot use.
    #[error("{}", self.describe(Param::name))]
    InvalidParameter { param: Param, reason: String },

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

    /// The compressed model answers too differently from the original (the quality floor or
    /// the target of a search).
    #[error("{}", self.describe(Param::name))]
    QualityFloor { measured: f64, floor: f64, on: String, param: Param },

    /// A numerical routine failed.
    #[error("numerical failure: {0}")]
    Numerical(String),

    /// tract could not load or run a model during validation; `remedy` names the settings
    /// that would avoid it.
    #[error("{}", self.describe(Param::name))]
    Tract { which: Role, message: String, remedy: Vec<Param> },

    /// Validation cannot feed a graph input (its type or its declared shape), in any runtime.
    #[error("{}", self.describe(Param::name))]
    CannotFeed { input: String, reason: String },

    /// onnxruntime could not load or run a model during validation.
    #[error("validation with onnxruntime failed on the {which} model: {message}")]
    Onnxruntime { which: Role, message: String },

    /// The rewritten model does not compute what was fitted.
    #[error("validation failed: {0}")]
    ValidationMismatch(String),

    /// A plot could not be drawn or encoded.
    #[error("cannot draw the plot: {0}")]
    Plot(String),
}

impl Error {
    /// The message, with each [`Param`] it is about named by `name` (the command line names
    /// them by their flags).
    pub fn describe(&self, name: impl Fn(Param) -> &'static str) -> String {
        match self {
            Error::InvalidParameter { param, reason } => format!("invalid {}: {reason}", name(*param)),
            Error::QualityFloor { measured, floor, on, param } => format!(
                "quality floor not met: mean cosine {measured:.4} on {on} is below {} {floor}; nothing written",
                name(*param)
            ),
            Error::EmbeddingOverride { name: table, reason } => format!("{} '{table}': {reason}", name(Param::Embedding)),
            Error::SharedTable { table, readers } => format!(
                "embedding table '{table}' is also read by {readers}; rewriting would keep the full table \
                 and grow the file (tied decoders also lose much accuracy). Pass {} to rewrite the lookup anyway",
                name(Param::AllowShared)
            ),
            Error::TiedHead { table, head, setting, param } => format!(
                "embedding table '{table}' is also the LM head (MatMul '{head}'), which {setting} ({}) cannot serve: \
                 only plain rows serve both readers ({}, e.g. {} 8 for integer products or 4). Pass {} to keep \
                 the table for the head instead (the file grows)",
                match param {
                    Param::Plain => format!("without {}", name(Param::Plain)),
                    p => name(*p).to_string(),
                },
                name(Param::Plain),
                name(Param::Bits),
                name(Param::AllowShared)
            ),
            Error::CannotFeed { input, reason } => {
                format!("validation cannot feed input '{input}': {reason} (try {})", name(Param::Validate))
            }
            Error::Tract { which, message, remedy } => {
                // the runtime to switch to is onnxruntime
                let remedy: Vec<String> = remedy
                    .iter()
                    .map(|&p| if p == Param::Runtime { format!("{} {}", name(p), crate::check::Runtime::Onnxruntime) } else { name(p).to_string() })
                    .collect();
                let remedy = if remedy.is_empty() { String::new() } else { format!(" (try {})", remedy.join(" or ")) };
                format!("validation with tract failed on the {which} model: {message}{remedy}")
            }
            other => other.to_string(),
        }
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
