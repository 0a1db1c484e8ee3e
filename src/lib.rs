//! onnx-embcomp: shrink the word-embedding table of an ONNX transformer by (k, j)-projective
//! clustering (MESSI, Maalouf et al., ICLR 2021), as a model-rewriting pass.
//!
//! The entry point is [`compress`]: it finds the embedding Gather, fits k subspaces of
//! dimension j to the table's rows, replaces the lookup by k parallel branches recombined by
//! Concat + MatMul, and (optionally) validates the result with tract. Only [`onnx::io`] and the
//! command line touch files.

pub mod budget;
pub mod cluster;
mod error;
pub mod inspect;
pub mod onnx;
pub mod report;
pub mod rewrite;
pub mod validate;

use std::time::Instant;

use ndarray::Array2;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

pub use budget::Size;
pub use cluster::FitEvent;
pub use error::{Error, Result};
pub use onnx::Model;
use onnx::graph::GraphView;
pub use report::Report;
use report::{FitFigures, Phase, SvdFigures};
pub use validate::ValidateOptions;

/// What [`compress`] tells its caller while it runs.
#[derive(Debug, Clone, Copy)]
pub enum Progress {
    /// A phase starts (`fit`, `svd baseline`, `validate`).
    Phase(&'static str),
    /// A Lloyd iteration ended.
    Fit(FitEvent),
}

/// What [`compress`] does.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// Number of subspaces (1: the SVD baseline through the same pipeline).
    pub k: usize,
    /// Subspace dimension, or the fraction of numbers to remove.
    pub size: Size,
    /// A node or initializer name forcing the choice of the table.
    pub embedding: Option<String>,
    /// Rewrite the lookup even when other nodes read the table (which then stays).
    pub allow_shared: bool,
    /// Seed of every random choice; the same seed gives the same bytes.
    pub seed: u64,
    /// Fit parameters other than k and j (taken from `cluster::FitParams::new`).
    pub restarts: usize,
    /// Lloyd iterations per restart.
    pub max_iter: usize,
    /// Rows the restarts run on.
    pub sample_rows: usize,
    /// Threads for the dense kernels (0: all).
    pub threads: usize,
    /// Validate with tract, with these settings.
    pub validate: Option<ValidateOptions>,
}

impl Default for Options {
    fn default() -> Self {
        let fit = cluster::FitParams::new(4, 1);
        Options {
            k: 4,
            size: Size::Ratio(0.4),
            embedding: None,
            allow_shared: false,
            seed: 0,
            restarts: fit.restarts,
            max_iter: fit.max_iter,
            sample_rows: fit.sample_rows,
            threads: 0,
            validate: Some(ValidateOptions::default()),
        }
    }
}

/// Compresses the word-embedding table of `model`: returns the rewritten model and a report
/// (file sizes left for the caller, who reads and writes the files). `progress` hears when
/// each phase starts and about every Lloyd iteration.
pub fn compress(model: &Model, options: &Options, progress: &mut dyn FnMut(Progress)) -> Result<(Model, Report)> {
    let mut seconds = Vec::new();
    let mut clock = Instant::now();
    let mut lap = |name: &str, seconds: &mut Vec<Phase>| {
        seconds.push(Phase::new(name, clock.elapsed().as_secs_f64()));
        clock = Instant::now();
    };

    let view = GraphView::new(model.graph());
    let discovery = rewrite::find::find_embedding(&view, options.embedding.as_deref())?;
    let candidate = discovery.chosen()?.clone();
    rewrite::patch::check_shared(&candidate, options.allow_shared)?; // before the costly fit
    if options.validate.is_some() && candidate.dtype == onnx::tensor::FloatType::Bf16 {
        return Err(Error::Tract {
            which: "original",
            message: format!(
                "tract cannot run BFLOAT16 tensors such as the table '{}'; pass --no-validate",
                candidate.table
            ),
        });
    }
    let table_proto = view.initializer(&candidate.table).expect("candidates are initializers");
    let table = onnx::tensor::float_matrix(table_proto)?;
    check_finite(&candidate.table, &table)?;
    let (n, d) = table.dim();
    cluster::check_k(options.k, n)?; // before choose_j, whose message would blame the size
    let j = budget::choose_j(n, d, options.k, options.size)?;
    let params = cluster::FitParams::new(options.k, j)
        .restarts(options.restarts)
        .max_iter(options.max_iter)
        .sample_rows(options.sample_rows)
        .threads(options.threads)
        .check(n, d)?;
    lap("prepare", &mut seconds);

    progress(Progress::Phase("fit"));
    let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
    let clustering = params.fit(table.view(), &mut rng, &mut |e| progress(Progress::Fit(e)))?;
    let mut factors = rewrite::Factors::new(&clustering, table.view(), options.threads);
    factors.round_to(candidate.dtype);
    lap("fit", &mut seconds);

    progress(Progress::Phase("svd baseline"));
    let relative_error = stored_error(&table, &factors);
    let numbers_before = (n * d) as u64;
    let numbers_stored = factors.stored_numbers();
    let svd = svd_baseline(&table, numbers_stored, options.threads)?;
    lap("svd baseline", &mut seconds);

    let mut rewritten = model.clone();
    let patch = rewrite::patch::apply(&mut rewritten, &candidate, &factors, options.allow_shared)?;
    lap("rewrite", &mut seconds);

    let validation = match &options.validate {
        Some(v) => Some({
            progress(Progress::Phase("validate"));
            validate::validate(model, &rewritten, &candidate, &factors, v)?
        }),
        None => None,
    };
    if validation.is_some() {
        lap("validate", &mut seconds);
    }

    let numbers_after = numbers_stored + if patch.table_kept { numbers_before } else { 0 };
    let report = Report {
        table: candidate.table.clone(),
        lookups: candidate.lookups.iter().map(|l| l.name.clone()).collect(),
        shape: [n, d],
        dtype: candidate.dtype,
        size: options.size,
        k: options.k,
        clusters: factors.clusters.len(),
        j,
        numbers_before,
        numbers_after,
        saved_percent: 100.0 * (1.0 - numbers_after as f64 / numbers_before as f64),
        table_kept: patch.table_kept,
        fit: FitFigures {
            relative_error,
            cost: clustering.cost,
            iterations: clustering.iterations,
            restart_costs: clustering.restart_costs.clone(),
            cluster_sizes: factors.clusters.iter().map(|c| c.members.len()).collect(),
        },
        svd,
        validation,
        bytes_before: None,
        bytes_after: None,
        external_data: None,
        seconds,
    };
    Ok((rewritten, report))
}

/// An error naming the first NaN or infinite value of the table.
fn check_finite(name: &str, table: &Array2<f32>) -> Result<()> {
    match table.indexed_iter().find(|(_, v)| !v.is_finite()) {
        Some(((row, column), &value)) => Err(Error::NonFinite { tensor: name.into(), row, column, value }),
        None => Ok(()),
    }
}

/// Relative Frobenius error of the stored factors against the table.
fn stored_error(table: &Array2<f32>, factors: &rewrite::Factors) -> f64 {
    let (mut diff, mut norm) = (0f64, 0f64);
    for c in &factors.clusters {
        let approx = c.coefficients.dot(&c.basis.t());
        for (pos, &t) in c.members.iter().enumerate() {
            for (a, b) in table.row(t).iter().zip(approx.row(pos)) {
                diff += ((a - b) as f64).powi(2);
                norm += (*a as f64).powi(2);
            }
        }
    }
    if norm > 0.0 { (diff / norm).sqrt() } else { 0.0 }
}

/// The error of the best rank-j' approximation storing at most `numbers` numbers.
fn svd_baseline(table: &Array2<f32>, numbers: u64, threads: usize) -> Result<SvdFigures> {
    let (n, d) = table.dim();
    let rank = budget::svd_rank(numbers, n, d);
    let mut gram = Array2::<f64>::zeros((d, d));
    let mut scratch = Array2::<f32>::zeros((d, d));
    let par = cluster::linalg::par(threads);
    for start in (0..n).step_by(cluster::linalg::ROW_BLOCK) {
        let end = (start + cluster::linalg::ROW_BLOCK).min(n);
        cluster::linalg::add_gram(table.slice(ndarray::s![start..end, ..]), &mut gram, &mut scratch, par);
    }
    let eig = cluster::linalg::eigenvalues_desc(&gram)?;
    let energy: f64 = eig.iter().map(|&e| e.max(0.0)).sum();
    let rest: f64 = eig[rank.min(d)..].iter().map(|&e| e.max(0.0)).sum();
    let relative_error = if energy > 0.0 { (rest / energy).sqrt() } else { 0.0 };
    Ok(SvdFigures { rank, numbers: (rank * (n + d)) as u64, relative_error })
}
