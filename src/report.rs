//! The summary of a compression run: figures for humans (stderr) and for machines (JSON).

use std::fmt::Write as _;

use serde::Serialize;

use crate::check::{TextValidation, Validation};
use crate::corpus::CorpusFigures;
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
    /// The size asked for.
    pub size: Size,
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
    /// The fit.
    pub fit: FitFigures,
    /// With `-k auto`: every k fitted, and its figures.
    pub tried: Vec<Tried>,
    /// A rank-j' SVD storing no more numbers than the rewritten lookup, for comparison (not for
    /// plain storage).
    pub svd: Option<SvdFigures>,
    /// Tract validation, when run.
    pub validation: Option<Validation>,
    /// Comparison on held-out text, when given.
    pub text_validation: Option<TextValidation>,
    /// With `--target-cos`: every ratio probed, in order.
    pub probes: Vec<Probe>,
    /// A search across the family: every point evaluated (the front marked), and which was
    /// chosen. Plain 8- and 4-bit storage are always among them: the reference.
    pub points: Vec<Point>,
    pub chosen: Option<usize>,
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
    pub storage: Storage,
    /// Bytes the embedding stores, and their share of the table as fp32.
    pub bytes: u64,
    pub share: f64,
    /// Mean and minimum cosine on what the check measured (`on`).
    pub mean_cosine: f64,
    pub min_cosine: f64,
    /// What the cosines were measured on.
    pub on: String,
    /// Encoders: nearest-neighbour agreement; decoders: top-1 agreement and mean KL.
    pub nn_agreement: Option<f64>,
    pub top1_agreement: Option<f64>,
    pub mean_kl: Option<f64>,
    /// Seconds spent on this point (its share of the fit, its store, rewrite and check).
    pub seconds: f64,
    /// No other point is at most as large and at least as close, and better in one.
    pub on_front: bool,
    /// The arguments that produce this point's model with `compress` (after `IN OUT` and the
    /// data-aware flags of the sweep).
    pub args: Vec<String>,
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

impl Report {
    /// A before/after table for a terminal.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let [n, d] = self.shape;
        let _ = writeln!(s, "embedding   {} [{n} x {d}] {:?}, lookups: {}", self.table, self.dtype, self.lookups.join(", "));
        let dims = if self.dims.iter().all(|&j| j == self.j) {
            format!("j = {}", self.j)
        } else {
            format!("j per cluster {:?}", self.dims)
        };
        let storage = &self.storage;
        if let (Some(t), Some(h)) = (&self.tiers, storage.hot) {
            let _ = writeln!(
                s,
                "tier        {} most frequent rows ({:.2}% of the counted tokens) plain at {}: {} bytes",
                t.hot_rows,
                100.0 * t.mass,
                h.bits,
                t.hot.bytes
            );
        }
        let rest = if self.tiers.is_some() { "other rows" } else { "rows" };
        if self.k == 0 {
            let _ = writeln!(s, "layout      {rest} plain at {} (block {})", storage.bits, storage.block);
        } else {
            let values = match storage.bits {
                crate::storage::Precision::Float => String::new(),
                b => format!(", coefficients at {b} (block {}), bases f16", storage.block),
            };
            let _ = writeln!(
                s,
                "layout      k = {} ({} non-empty), {dims}; rows per cluster {:?}{values}",
                self.k, self.clusters, self.fit.cluster_sizes
            );
        }
        for t in &self.tried {
            let w = t.weighted_relative_error.map_or(String::new(), |w| format!(", weighted {w:.4}"));
            let mark = if t.k == self.k { " (chosen)" } else { "" };
            let _ = writeln!(s, "  tried     k = {}: error {:.4}{w}, {} numbers{mark}", t.k, t.relative_error, t.numbers);
        }
        let _ = writeln!(s, "{:<22}{:>16}{:>16}{:>10}", "", "before", "after", "change");
        let _ = writeln!(
            s,
            "{:<22}{:>16}{:>16}{:>9.1}%",
            "embedding numbers",
            self.numbers_before,
            self.numbers_after,
            -self.saved_percent
        );
        let pct = 100.0 * (self.embedding_bytes_after as f64 / self.embedding_bytes_before.max(1) as f64 - 1.0);
        let _ = writeln!(
            s,
            "{:<22}{:>16}{:>16}{:>9.1}%",
            "embedding bytes", self.embedding_bytes_before, self.embedding_bytes_after, pct
        );
        if let (Some(b), Some(a)) = (self.bytes_before, self.bytes_after) {
            let pct = 100.0 * (a as f64 / b.max(1) as f64 - 1.0);
            let _ = writeln!(s, "{:<22}{:>16}{:>16}{:>9.1}%", "file bytes", b, a, pct);
        }
        if self.table_kept {
            let _ = writeln!(s, "note: the table is kept for its other readers (--allow-shared), so the model grows");
        }
        let weighted = self.fit.weighted_relative_error.map_or(String::new(), |w| format!(", weighted {w:.4}"));
        // The error is of what is stored (rounded rows included); the SVD baseline's is of
        // unrounded floats at the same count of numbers, so with quantized storage it is not a
        // comparison at equal bytes: the line says so.
        let rounded = self.storage.bits != crate::storage::Precision::Float || self.storage.hot.is_some();
        let svd = self.svd.as_ref().map_or(String::new(), |svd| {
            let w = if weighted.is_empty() { "" } else { " (weighted)" };
            let floats = if rounded { ", in floats" } else { "" };
            format!("; SVD rank {} at the same numbers{floats}: {:.4}{w}", svd.rank, svd.relative_error)
        });
        let what = if rounded { "relative Frobenius, as stored" } else { "relative Frobenius" };
        let _ = writeln!(s, "fit error   {:.4} {what}{weighted} ({} iterations){svd}", self.fit.relative_error, self.fit.iterations);
        if let Some(v) = &self.validation {
            let inputs: Vec<String> = v.inputs.iter().map(|i| format!("{}{:?}", i.name, i.shape)).collect();
            let _ = writeln!(s, "validation  tract, inputs {}", inputs.join(", "));
            if let Some(e) = v.embedding_rel_error {
                let _ = writeln!(s, "            lookup output = fitted reconstruction (relative difference {e:.1e})");
            }
            for o in &v.outputs {
                let cos = o.mean_cosine.map_or("-".to_string(), |c| format!("{c:.5}"));
                let _ = writeln!(
                    s,
                    "            output {} {:?}: mean cosine {cos}, max |diff| {:.4e}",
                    o.name, o.shape, o.max_abs_diff
                );
            }
        }
        if let Some(c) = &self.corpus {
            let scheme = match c.weighting {
                crate::corpus::Weighting::None => "none (--weighting none)".to_string(),
                w => format!("{w:?} of token counts + {} x mean", c.weight_floor).to_lowercase(),
            };
            let _ = writeln!(
                s,
                "weights     {scheme}; {} tokens from {} file(s), {} of {n} rows seen, {} held-out sentences",
                c.tokens, c.files, c.seen_rows, c.held_out
            );
        }
        if let Some(t) = &self.text_validation {
            let extra = match (t.nn_agreement, t.top1_agreement, t.mean_kl) {
                (Some(nn), _, _) => format!(", nearest-neighbour agreement {nn:.3}"),
                (_, Some(top1), Some(kl)) => format!(", top-1 next-token agreement {top1:.3}, mean KL {kl:.4}"),
                _ => String::new(),
            };
            let _ = writeln!(
                s,
                "held-out    {} sentences ({}, output {}): mean cosine {:.4}, min {:.4}{extra}",
                t.sentences, t.kind, t.output, t.mean_cosine, t.min_cosine
            );
        }
        if let Some(c) = self.chosen {
            let _ = writeln!(s, "search      {} points of the family, on {}:", self.points.len(), self.points[c].on);
            for (i, p) in self.points.iter().enumerate() {
                let mark = if i == c { " <- chosen" } else if p.on_front { " (front)" } else { "" };
                let _ = writeln!(s, "            {:<18} {:>10} bytes {:>6.2}%  mean cosine {:.4}{mark}", p.label, p.bytes, 100.0 * p.share, p.mean_cosine);
            }
            let reference: Vec<String> = self
                .points
                .iter()
                .filter(|p| p.family == Family::Plain && matches!(p.storage.bits, crate::storage::Precision::Bits(b) if b.count() >= 4))
                .map(|p| format!("{} {} bytes ({:.2}%) keeps {:.4}", p.label, p.bytes, 100.0 * p.share, p.mean_cosine))
                .collect();
            let _ = writeln!(s, "reference   {}", reference.join("; "));
        }
        for p in &self.probes {
            let verdict = if p.met { "meets" } else { "misses" };
            let _ = writeln!(
                s,
                "probe       --ratio {:.3}: {:.1}% saved, mean cosine {:.4} ({verdict} the target)",
                p.ratio, p.saved_percent, p.mean_cosine
            );
        }
        let phases: Vec<String> = self.seconds.iter().map(|p| format!("{} {:.2}s", p.phase, p.seconds)).collect();
        let _ = writeln!(s, "time        {}", phases.join(", "));
        s
    }
}
