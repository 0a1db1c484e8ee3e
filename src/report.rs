//! The summary of a compression run: figures for humans (stderr) and for machines (JSON).

use serde::Serialize;

use crate::check::{TextValidation, Validation};
pub use crate::rewrite::HeadProduct;
use crate::data::CorpusFigures;
use crate::onnx::tensor::FloatType;
use crate::progress::Phase;
use crate::storage::{Footprint, Size, Storage};

/// Everything a run measured.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Report {
    /// Name of the embedding initializer.
    pub table: String,
    /// Names of the Gathers rewritten.
    pub lookups: Vec<String>,
    /// Table shape `[rows, cols]`.
    pub shape: [usize; 2],
    /// Element type of the table (and of the new tables).
    pub dtype: FloatType,
    /// The size asked for (`None` for plain storage).
    pub size: Option<Size>,
    /// How the compressed table is stored.
    pub storage: Storage,
    /// Subspaces fitted (0 for plain storage).
    pub k: usize,
    /// Non-empty clusters written.
    pub clusters: usize,
    /// Subspace dimension (of the seeds, with adaptive dimensions).
    pub j: usize,
    /// Dimension of each non-empty cluster.
    pub dims: Vec<usize>,
    /// Numbers in the original table (`rows * cols`).
    pub numbers_before: u64,
    /// Numbers stored by the rewritten lookup (plus the table itself when it was kept).
    pub numbers_after: u64,
    /// Bytes of the original table (`rows * cols *` its element size).
    pub embedding_bytes_before: u64,
    /// Bytes the rewritten lookup stores (what the file holds for the embedding; plus the table
    /// itself when it was kept).
    pub embedding_bytes_after: u64,
    /// What the rewritten lookup stores, in numbers and bytes, by kind and branch (the table
    /// itself, when kept, not included).
    pub stored: Footprint,
    /// The frequent-token tier, when there is one.
    pub tiers: Option<TierFigures>,
    /// `100 * (1 - after / before)`; negative when the model grows.
    pub saved_percent: f64,
    /// Whether the original table stays in the model for other readers (`--allow-shared`).
    pub table_kept: bool,
    /// The tied LM heads (MatMul nodes) that read the stored rows instead of the table.
    pub heads_served: Vec<String>,
    /// How the served heads compute their product (`None` when none is served).
    pub head_product: Option<HeadProduct>,
    /// The fit.
    pub fit: FitFigures,
    /// With `-k auto`: every k fitted, and its figures.
    pub tried: Vec<Tried>,
    /// A rank-j' SVD storing no more numbers than the rewritten lookup, for comparison (not for
    /// plain storage).
    pub svd: Option<SvdFigures>,
    /// The validation on random ids (in tract or onnxruntime), when run.
    pub validation: Option<Validation>,
    /// Comparison on held-out text, when given.
    pub text_validation: Option<TextValidation>,
    /// With `--target-cos`: every ratio probed, in order.
    pub probes: Vec<Probe>,
    /// A search across the family: every point evaluated (the front marked), and which was
    /// chosen. Plain 4-bit storage is always among them (the reference), plain 8-bit when no
    /// smaller point met the target.
    pub points: Vec<Point>,
    pub chosen: Option<usize>,
    /// Points of the family a search does not list: not checked (none could be smaller than the
    /// choice, or a more precise point of the same fit missed the target), or checked while the
    /// choice was not yet known and found no smaller than it.
    pub skipped: usize,
    /// Token statistics the weights came from, when data-aware.
    pub corpus: Option<CorpusFigures>,
    /// Input size in bytes, external-data files included (filled in by the caller that read it).
    pub bytes_before: Option<u64>,
    /// Output size in bytes, external data included (filled in by the caller that wrote it).
    pub bytes_after: Option<u64>,
    /// The external-data file written beside the output, when its large tensors went there.
    pub external_data: Option<std::path::PathBuf>,
    /// Seconds per phase, in order.
    pub seconds: Vec<Phase>,
}

impl Report {
    /// What the run is judged by (`--min-cos`, `--target-cos`, the sweep's points).
    pub(crate) fn evidence(&self) -> crate::check::floor::Evidence<'_> {
        crate::check::floor::Evidence {
            validation: self.validation.as_ref(),
            text: self.text_validation.as_ref(),
            prior_mass_seen: self.corpus.as_ref().and_then(|c| c.prior_mass_seen),
        }
    }
}

/// Figures of the projective-clustering fit.
#[derive(Debug, Clone, Serialize)]
pub struct FitFigures {
    /// `||A - Â||_F / ||A||_F` of what is stored (rounded or dequantized, tiers included).
    pub relative_error: f64,
    /// The same with rows weighted (when weights were given).
    pub weighted_relative_error: Option<f64>,
    /// Sum of squared distances of the rows to their subspaces (0 without a fit: plain storage).
    pub cost: f64,
    /// Lloyd iterations run.
    pub iterations: usize,
    /// Cost reached by each restart (on the rows the restarts ran on).
    pub restart_costs: Vec<f64>,
    /// Rows per cluster.
    pub cluster_sizes: Vec<usize>,
}

/// Which part of the family a point is from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// The table's rows, quantized.
    Plain,
    /// Plain rows with the frequent tokens' rows at a higher precision.
    Tiers,
    /// One subspace: a (weighted) SVD.
    Svd,
    /// Several subspaces.
    Clustering,
    /// Product codes of the rows (under a frequent tier or not).
    Codes,
}

/// One evaluated point.
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    /// Short label for tables and plots (`k4 r0.8 4b`, `plain 4b`, `tiers 2b+4b`).
    pub label: String,
    pub family: Family,
    /// Subspaces and ratio (clustering and SVD), `None` for plain storage.
    pub k: Option<usize>,
    pub ratio: Option<f64>,
    /// The candidate's setting: what `compress` takes to write this point's model.
    pub setting: crate::pipeline::Setting,
    /// Bytes the embedding stores, and their share of the table as fp32.
    pub bytes: u64,
    pub share: f64,
    /// Mean and minimum cosine on what the check measured (`on`).
    pub mean_cosine: f64,
    pub min_cosine: f64,
    /// What the cosines were measured on.
    pub on: String,
    /// The figures are of a part of the held-out text: a search's screen found the point
    /// clearly below its target and did not run the rest (`TextValidation::screened_of`).
    pub screened: bool,
    /// Encoders: nearest-neighbour agreement; decoders: top-1 agreement and mean KL.
    pub nn_agreement: Option<f64>,
    pub top1_agreement: Option<f64>,
    pub mean_kl: Option<f64>,
    /// Seconds spent on this point (its share of the fit, its store, rewrite and check).
    pub seconds: f64,
    /// No other point is at most as large and at least as close, and better in one.
    pub on_front: bool,
}

impl Point {
    /// Whether the point reaches a mean cosine of `target`: never a screened one, whose figure
    /// is of a part of the text that put it below its search's target.
    pub fn meets(&self, target: f64) -> bool {
        !self.screened && self.mean_cosine >= target
    }
}

/// The frequent-token tier of a layout.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct TierFigures {
    /// Rows in the tier.
    pub hot_rows: usize,
    /// Share of the counted tokens they cover.
    pub mass: f64,
    /// What the tier's table stores.
    pub hot: crate::storage::Part,
}

/// One probe of the `--target-cos` search.
#[derive(Debug, Clone, Serialize)]
pub struct Probe {
    pub ratio: f64,
    pub saved_percent: f64,
    pub mean_cosine: f64,
    /// Whether it reached the target.
    pub met: bool,
}

/// One k tried by `-k auto`.
#[derive(Debug, Clone, Serialize)]
pub struct Tried {
    pub k: usize,
    /// Dimension of each non-empty cluster.
    pub dims: Vec<usize>,
    /// Numbers stored.
    pub numbers: u64,
    pub relative_error: f64,
    pub weighted_relative_error: Option<f64>,
}

/// Figures of the SVD baseline.
#[derive(Debug, Clone, Serialize)]
pub struct SvdFigures {
    /// Rank j'.
    pub rank: usize,
    /// Numbers it stores, `j' * (rows + cols)`.
    pub numbers: u64,
    /// Its relative Frobenius error.
    pub relative_error: f64,
}

