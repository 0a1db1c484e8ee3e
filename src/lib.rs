//! onnx-embcomp: shrink the word-embedding table of an ONNX transformer by (k, j)-projective
//! clustering (MESSI, Maalouf et al., ICLR 2021), as a model-rewriting pass.
//!
//! The entry point is [`compress`]: it finds the embedding Gather, fits k subspaces of
//! dimension j to the table's rows, replaces the lookup by k parallel branches recombined by
//! Concat + MatMul, and (optionally) validates the result with tract. Only [`onnx::io`] and the
//! command line touch files.

pub mod budget;
pub mod cluster;
pub mod corpus;
pub mod heldout;
mod error;
pub mod inspect;
pub mod onnx;
pub mod report;
pub mod rewrite;
pub mod validate;
mod quality;

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
pub use quality::compress_to_target;
pub use validate::ValidateOptions;

/// What [`compress`] tells its caller while it runs.
#[derive(Debug, Clone)]
pub enum Progress {
    /// A phase starts (`fit`, `fit k=2` with `-k auto`, `svd baseline`, `validate`).
    Phase(String),
    /// A Lloyd iteration ended.
    Fit(FitEvent),
}

/// How many subspaces to fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Subspaces {
    /// Exactly this many (1: the SVD baseline through the same pipeline).
    Fixed(usize),
    /// Try each of [`AUTO_K`] that fits the budget and keep the lowest error.
    Auto,
}

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

/// The values of k that `-k auto` tries.
pub const AUTO_K: [usize; 4] = [1, 2, 4, 8];

/// What [`compress`] does.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// Number of subspaces.
    pub k: Subspaces,
    /// Subspace dimension, or the fraction of numbers to remove.
    pub size: Size,
    /// Give each cluster its own dimension within the same stored-number budget.
    pub adaptive: bool,
    /// Importance of each table row (token) in the fit, `[n]`, all positive; `None`: all 1.
    pub weights: Option<Vec<f32>>,
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
    /// Rows the restarts run on (`None`: `cluster::FitParams::auto_sample_rows`).
    pub sample_rows: Option<usize>,
    /// Lloyd iterations on all rows after the restarts, at most.
    pub polish_iter: usize,
    /// Threads for the dense kernels (0: all).
    pub threads: usize,
    /// Validate with tract, with these settings.
    pub validate: Option<ValidateOptions>,
    /// Also compare both models on these held-out sentences (in tract).
    pub held_out: Option<heldout::HeldOut>,
    /// Fail with [`Error::QualityFloor`] when the mean cosine between original and rewritten
    /// outputs (on held-out text when given, else on the random-id validation) is below this.
    pub min_cos: Option<f64>,
}

impl Default for Options {
    fn default() -> Self {
        let fit = cluster::FitParams::new(4, 1);
        Options {
            k: Subspaces::Fixed(4),
            size: Size::Ratio(0.4),
            adaptive: false,
            weights: None,
            embedding: None,
            allow_shared: false,
            seed: 0,
            restarts: fit.restarts,
            max_iter: fit.max_iter,
            sample_rows: fit.sample_rows,
            polish_iter: fit.polish_iter,
            threads: 0,
            validate: Some(ValidateOptions::default()),
            held_out: None,
            min_cos: None,
        }
    }
}

/// One fitted candidate: its k, seed dimension, factors and fit figures.
struct Fitted {
    k: usize,
    j: usize,
    clustering: cluster::Clustering,
    factors: rewrite::Factors,
    relative_error: f64,
    weighted_relative_error: Option<f64>,
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
    let decode = || -> Result<Array2<f32>> {
        let table = onnx::tensor::float_matrix(table_proto)?;
        check_finite(&candidate.table, &table)?;
        Ok(table)
    };
    let mut table = decode()?;
    let (n, d) = table.dim();
    let weights = checked_weights(options.weights.as_deref(), n)?;
    let ks: Vec<usize> = match options.k {
        Subspaces::Fixed(k) => {
            cluster::check_k(k, n)?; // before choose_j, whose message would blame the size
            vec![k]
        }
        Subspaces::Auto => {
            if matches!(options.size, Size::Dim(_)) {
                return Err(Error::InvalidParameter {
                    flag: "-k auto",
                    reason: "compares k at one budget, so it needs --ratio rather than -j".into(),
                });
            }
            AUTO_K.into_iter().filter(|&k| k <= n && budget::choose_j(n, d, k, options.size).is_ok()).collect()
        }
    };
    // The original runs before the fit: a model tract cannot run fails early, and tract's
    // copy of its weights is gone before the fit's and the rewritten model's memory is taken.
    // The table, checked above, is decoded again after it so the two are never held together.
    let reference = match &options.validate {
        Some(v) => {
            drop(table);
            progress(Progress::Phase("run original".into()));
            let reference = validate::run_original(model, &candidate, n, v)?;
            lap("run original", &mut seconds);
            table = decode()?;
            Some(reference)
        }
        None => None,
    };
    // The fit sees rows scaled by sqrt(weight): squared distances are then weighted.
    let scaled = weights.map(|w| {
        let mut t = table.clone();
        for (mut row, &w) in t.rows_mut().into_iter().zip(w) {
            row *= w.sqrt();
        }
        t
    });
    lap("prepare", &mut seconds);

    let mut tried = Vec::new();
    let mut best: Option<Fitted> = None;
    for &k in &ks {
        let j = budget::choose_j(n, d, k, options.size)?;
        let mut params = cluster::FitParams::new(k, j)
            .restarts(options.restarts)
            .max_iter(options.max_iter)
            .sample_rows(options.sample_rows)
            .polish_iter(options.polish_iter)
            .threads(options.threads);
        if options.adaptive {
            params = params.budget(budget::allowed_numbers(n, d, k, options.size));
        }
        let params = params.check(n, d)?;
        progress(Progress::Phase(if ks.len() > 1 { format!("fit k={k}") } else { "fit".into() }));
        let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
        let fit_rows = scaled.as_ref().unwrap_or(&table);
        let clustering = params.fit(fit_rows.view(), &mut rng, &mut |e| progress(Progress::Fit(e)))?;
        let mut factors = rewrite::Factors::new(&clustering, table.view(), options.threads);
        factors.round_to(candidate.dtype);
        let (relative_error, weighted_relative_error) = stored_errors(&table, &factors, weights, options.threads);
        let fitted = Fitted { k, j, relative_error, weighted_relative_error, clustering, factors };
        let score = |f: &Fitted| f.weighted_relative_error.unwrap_or(f.relative_error);
        tried.push(report::Tried {
            k,
            dims: fitted.factors.dims(),
            numbers: fitted.factors.stored_numbers(),
            relative_error: fitted.relative_error,
            weighted_relative_error: fitted.weighted_relative_error,
        });
        if best.as_ref().is_none_or(|b| score(&fitted) < score(b)) {
            best = Some(fitted);
        }
    }
    let Fitted { k, j, clustering, factors, relative_error, weighted_relative_error } =
        best.expect("at least one k fits the budget (choose_j checked it)");
    lap("fit", &mut seconds);

    progress(Progress::Phase("svd baseline".into()));
    let numbers_before = (n * d) as u64;
    let numbers_stored = factors.stored_numbers();
    let svd = svd_baseline(&table, weights, numbers_stored, options.threads)?;
    lap("svd baseline", &mut seconds);
    drop((scaled, table)); // the factors hold all the fit's results now

    let mut rewritten = model.clone();
    let patch = rewrite::patch::apply(&mut rewritten, &candidate, &factors, options.allow_shared)?;
    lap("rewrite", &mut seconds);

    let validation = match reference {
        Some(reference) => Some({
            progress(Progress::Phase("validate".into()));
            validate::validate(reference, model, &rewritten, &candidate, &factors)?
        }),
        None => None,
    };
    if validation.is_some() {
        lap("validate", &mut seconds);
    }
    let text_validation = match &options.held_out {
        Some(h) => Some({
            progress(Progress::Phase("validate on held-out text".into()));
            heldout::validate_text(model, &rewritten, &candidate, h)?
        }),
        None => None,
    };
    if text_validation.is_some() {
        lap("held-out text", &mut seconds);
    }
    if let Some(floor) = options.min_cos {
        quality::check_quality(floor, validation.as_ref(), text_validation.as_ref())?;
    }

    let numbers_after = numbers_stored + if patch.table_kept { numbers_before } else { 0 };
    let report = Report {
        table: candidate.table.clone(),
        lookups: candidate.lookups.iter().map(|l| l.name.clone()).collect(),
        shape: [n, d],
        dtype: candidate.dtype,
        size: options.size,
        k,
        clusters: factors.clusters.len(),
        j,
        dims: factors.dims(),
        numbers_before,
        numbers_after,
        saved_percent: 100.0 * (1.0 - numbers_after as f64 / numbers_before as f64),
        table_kept: patch.table_kept,
        fit: FitFigures {
            relative_error,
            weighted_relative_error,
            cost: clustering.cost,
            iterations: clustering.iterations,
            restart_costs: clustering.restart_costs.clone(),
            cluster_sizes: factors.clusters.iter().map(|c| c.members.len()).collect(),
        },
        tried: if ks.len() > 1 { tried } else { Vec::new() },
        svd,
        validation,
        text_validation,
        probes: Vec::new(),
        corpus: None,
        bytes_before: None,
        bytes_after: None,
        external_data: None,
        seconds,
    };
    Ok((rewritten, report))
}

/// The weights, checked: one per row, finite and positive.
fn checked_weights(weights: Option<&[f32]>, n: usize) -> Result<Option<&[f32]>> {
    let Some(w) = weights else { return Ok(None) };
    if w.len() != n {
        return Err(Error::InvalidParameter {
            flag: "weights",
            reason: format!("{} weights for a table of {n} rows", w.len()),
        });
    }
    if let Some((row, v)) = w.iter().enumerate().find(|(_, v)| !(v.is_finite() && **v > 0.0)) {
        return Err(Error::InvalidParameter {
            flag: "weights",
            reason: format!("the weight of row {row} is {v}; weights must be finite and positive"),
        });
    }
    Ok(Some(w))
}

/// An error naming the first NaN or infinite value of the table.
fn check_finite(name: &str, table: &Array2<f32>) -> Result<()> {
    match table.indexed_iter().find(|(_, v)| !v.is_finite()) {
        Some(((row, column), &value)) => Err(Error::NonFinite { tensor: name.into(), row, column, value }),
        None => Ok(()),
    }
}

/// Relative Frobenius error of the stored factors against the table, and the same with rows
/// weighted by `weights` when given: one reconstruction pass for both.
fn stored_errors(
    table: &Array2<f32>,
    factors: &rewrite::Factors,
    weights: Option<&[f32]>,
    threads: usize,
) -> (f64, Option<f64>) {
    let (mut diff, mut norm) = (0f64, 0f64);
    let (mut weighted_diff, mut weighted_norm) = (0f64, 0f64);
    let (block, par) = (cluster::linalg::ROW_BLOCK, cluster::linalg::par(threads));
    for c in &factors.clusters {
        let basis_t = c.basis.t().as_standard_layout().into_owned();
        let members = c.members.chunks(block);
        for (rows, coefficients) in members.zip(c.coefficients.axis_chunks_iter(ndarray::Axis(0), block)) {
            let approx = cluster::linalg::gemm(coefficients, basis_t.view(), par);
            for (&t, approx) in rows.iter().zip(approx.rows()) {
                let (mut row_diff, mut row_norm) = (0f64, 0f64);
                for (a, b) in table.row(t).iter().zip(approx) {
                    row_diff += ((a - b) as f64).powi(2);
                    row_norm += (*a as f64).powi(2);
                }
                (diff, norm) = (diff + row_diff, norm + row_norm);
                if let Some(w) = weights {
                    weighted_diff += w[t] as f64 * row_diff;
                    weighted_norm += w[t] as f64 * row_norm;
                }
            }
        }
    }
    let relative = |diff: f64, norm: f64| if norm > 0.0 { (diff / norm).sqrt() } else { 0.0 };
    (relative(diff, norm), weights.map(|_| relative(weighted_diff, weighted_norm)))
}

/// The error of the best rank-j' approximation storing at most `numbers` numbers (weighted
/// rows when `weights` are given: the error is then the weighted one).
fn svd_baseline(table: &Array2<f32>, weights: Option<&[f32]>, numbers: u64, threads: usize) -> Result<SvdFigures> {
    let (n, d) = table.dim();
    let rank = budget::svd_rank(numbers, n, d);
    let mut gram = Array2::<f64>::zeros((d, d));
    let mut scratch = Array2::<f32>::zeros((d, d));
    let par = cluster::linalg::par(threads);
    for start in (0..n).step_by(cluster::linalg::ROW_BLOCK) {
        let end = (start + cluster::linalg::ROW_BLOCK).min(n);
        let mut block = table.slice(ndarray::s![start..end, ..]).to_owned();
        if let Some(w) = weights {
            for (mut row, &w) in block.rows_mut().into_iter().zip(&w[start..end]) {
                row *= w.sqrt();
            }
        }
        cluster::linalg::add_gram_lower(block.view(), 1.0, &mut gram, &mut scratch, par);
    }
    let eig = cluster::linalg::eigenvalues_desc(&gram)?;
    let energy: f64 = eig.iter().map(|&e| e.max(0.0)).sum();
    let rest: f64 = eig[rank.min(d)..].iter().map(|&e| e.max(0.0)).sum();
    let relative_error = if energy > 0.0 { (rest / energy).sqrt() } else { 0.0 };
    Ok(SvdFigures { rank, numbers: (rank * (n + d)) as u64, relative_error })
}
