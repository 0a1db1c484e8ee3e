//! What one candidate is ([`Setting`]: a [`Method`] and its [`Storage`]) and what is fixed for a
//! run ([`Options`]: the table, the fit's tuning, the data, the checks, the seed).
//!
//! A setting is checked twice, each rule in one place: [`Setting::check`] holds the rules that
//! need no model (run before anything is read), `Plan::of` those that need the table's shape
//! and the frequent tier, and `Plan::serving` those that need the table's other readers (a tied
//! LM head; both run after counting, before the original model runs and before any fit). A
//! [`Plan`] knows its k values, j per k, quantization, tier and what becomes of a shared table;
//! stages take plans.

use crate::check::{HeldOut, ValidateOptions};
use crate::cluster::{Budget, FitParams};
use crate::data::DataOptions;
use crate::error::{Error, Param, Result};
use crate::onnx::tensor::FloatType;
use crate::codes::CodeParams;
use crate::quant::{Bits, QuantParams, Scheme};
use crate::rewrite::find::EmbeddingSite;
use crate::storage::{self, HotTier, Precision, Rows, Size, Storage};

/// How many subspaces to fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Subspaces {
    /// Exactly this many (1: the SVD baseline through the same pipeline).
    Fixed(usize),
    /// Try each of [`AUTO_K`] that fits the budget and keep the lowest error.
    Auto,
}

/// The values of k that [`Subspaces::Auto`] tries.
pub const AUTO_K: [usize; 4] = [1, 2, 4, 8];

/// How the table's rows are represented.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Method {
    /// The table's rows themselves, quantized: no fit.
    Plain,
    /// Each row as product codes: one byte per sub-vector of `sub` values, the index of the
    /// nearest of 256 codewords fitted (with the row weights) for its position.
    Codes {
        /// Values per sub-vector (default 4).
        sub: usize,
        /// The rows coded in their principal axes (weighted by the rows' weights): the codes
        /// of their coordinates, the lookup multiplied by the axes, stored as an f16 basis
        /// `[d, d]`. On all-MiniLM-L6-v2 under a 4-bit tier covering 0.985 in blocks of 64
        /// (broad corpus, the check of `--target-cos`): codes 8 in the axes 0.9901 at 5.96% of
        /// the fp32 table, codes 6 of the rows 0.9904 at 6.19% and 0.9892 at 5.99%.
        rotated: bool,
    },
    /// Each row as coefficients in the nearest of k subspaces (MESSI; k = 1 is the SVD).
    Subspaces {
        /// How many subspaces.
        k: Subspaces,
        /// Their dimension, or the fraction of numbers to remove.
        size: Size,
        /// Each cluster its own dimension within the same stored-number budget.
        adaptive: bool,
    },
}

impl Method {
    /// k subspaces at `size`, one dimension for all.
    pub fn subspaces(k: usize, size: Size) -> Method {
        Method::Subspaces { k: Subspaces::Fixed(k), size, adaptive: false }
    }
}

impl Default for Method {
    /// 4 subspaces, 40% of the numbers removed.
    fn default() -> Self {
        Method::subspaces(4, Size::Ratio(0.4))
    }
}

/// One candidate: what represents the rows and how the values are stored.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
#[non_exhaustive]
pub struct Setting {
    pub method: Method,
    pub storage: Storage,
}

impl Setting {
    /// `method` stored as `storage` says.
    pub fn new(method: Method, storage: Storage) -> Setting {
        Setting { method, storage }
    }

    /// The table's rows stored as `storage` says.
    pub fn plain(storage: Storage) -> Setting {
        Setting { method: Method::Plain, storage }
    }

    /// The rules that need no table: storage widths, block, tier share, sizes in range.
    pub fn check(&self) -> Result<()> {
        // (coded rows take no width: only a tier's is checked)
        self.storage.check(matches!(self.method, Method::Plain | Method::Codes { .. }))?;
        if let Method::Codes { sub: 0, .. } = self.method {
            return Err(invalid(Param::SubVector, "0; a sub-vector holds at least one value".into()));
        }
        if let Method::Subspaces { k, size, .. } = self.method {
            match k {
                Subspaces::Fixed(0) => return Err(invalid(Param::K, "must be at least 1".into())),
                Subspaces::Auto if matches!(size, Size::Dim(_)) => {
                    return Err(invalid(Param::K, "auto compares k at one budget, so it needs a ratio rather than j".into()));
                }
                _ => {}
            }
            match size {
                Size::Dim(0) => return Err(invalid(Param::J, "must be at least 1".into())),
                Size::Ratio(r) if !(r > 0.0 && r < 1.0) => {
                    return Err(invalid(Param::Ratio, format!("{r} is not a fraction strictly between 0 and 1")));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// The fit's tuning (see [`FitParams`] for each default).
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct FitTuning {
    /// Restarts of the fit.
    pub restarts: usize,
    /// Lloyd iterations per restart.
    pub max_iter: usize,
    /// Rows the restarts run on (`None`: [`FitParams::auto_sample_rows`]).
    pub sample_rows: Option<usize>,
    /// Lloyd iterations on all rows after the restarts, at most.
    pub polish_iter: usize,
}

impl Default for FitTuning {
    fn default() -> Self {
        let fit = FitParams::new(4, 1);
        FitTuning { restarts: fit.restarts, max_iter: fit.max_iter, sample_rows: fit.sample_rows, polish_iter: fit.polish_iter }
    }
}

/// What is fixed for a run, whatever the candidates. Start from [`Options::default`] and set
/// fields.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Options {
    /// A node or initializer name forcing the choice of the table.
    pub embedding: Option<String>,
    /// Rewrite the lookup even when other nodes read the table (which then stays).
    pub allow_shared: bool,
    /// Seed of every random choice (the fit, the validation's token ids, which corpus text is
    /// held out): the same seed gives the same bytes.
    pub seed: u64,
    /// The fit's tuning.
    pub fit: FitTuning,
    /// Threads for the dense kernels, and a sweep's points checked at once (0: all).
    pub threads: usize,
    /// Where token statistics come from: counts weigh the rows, held-out text checks the result.
    pub data: Option<Data>,
    /// Validate on random ids (in tract, or in onnxruntime: [`ValidateOptions::runtime`]), with
    /// these settings (`None`: no validation, and no held-out comparison either).
    pub validate: Option<ValidateOptions>,
    /// Fail with [`crate::Error::QualityFloor`] when the mean cosine between original and
    /// rewritten outputs (on held-out text when given, else on the random-id validation) is
    /// below this.
    pub min_cos: Option<f64>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            embedding: None,
            allow_shared: false,
            seed: 0,
            fit: FitTuning::default(),
            threads: 0,
            data: None,
            validate: Some(ValidateOptions::default()),
            min_cos: None,
        }
    }
}

/// Token statistics for data-aware compression.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Data {
    /// Counted from a corpus or read from a count file, as the options say.
    Count(DataOptions),
    /// Given by the caller: row weights `[n]` (all positive) and, optionally, held-out text.
    Given { weights: Vec<f32>, held_out: Option<HeldOut> },
}

/// A fit a plan asks for: k subspaces of dimension j (or, adaptive, within `budget`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct FitPlan {
    pub(crate) k: usize,
    pub(crate) j: usize,
    pub(crate) budget: Option<Budget>,
}

/// A setting checked against a table of `n` rows and `d` columns (and its frequent tier).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Plan {
    pub(crate) setting: Setting,
    /// The fits to make and compare (none for plain storage; several with k = auto).
    pub(crate) fits: Vec<FitPlan>,
    /// How the rows (plain) or coefficients are quantized (`None`: floats, or codes).
    pub(crate) quant: Option<QuantParams>,
    /// How the rows are coded, for [`Method::Codes`] (seeded by the run).
    pub(crate) codes: Option<CodeParams>,
    /// The frequent tier and its rows' quantization.
    pub(crate) hot: Option<(HotTier, Option<QuantParams>)>,
    /// What becomes of a table that other nodes read too ([`Plan::serving`]).
    pub(crate) shared: Shared,
}

/// The block of a tied table's 4-bit rows (with the default block): each block of 16 values
/// stores an f16 scale and minimum (6 bits a value, 81% below f32), fitted to the tied head's
/// error (`quant::quantize_weighted`, weighted by the hidden state's second moments from the
/// random-id runs). On SmolLM2-135M-Instruct (BENCHMARKS.md): top-1 next-token agreement 0.902,
/// KL 0.020 nats/token, perplexity +1.7%, where symmetric blocks of 32 by their maximum (4.5
/// bits a value) keep 0.791, 0.109, +9.1%.
pub(crate) const TIED_4BIT_BLOCK: usize = 16;

/// The type of the principal axes of rotated codes ([`Method::Codes`]): f16, as the bases of
/// clusters under quantized coefficients.
pub(crate) const ROTATED_BASIS: FloatType = FloatType::F16;

/// What becomes of a table that other nodes read too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shared {
    /// Nothing else reads it.
    No,
    /// Its tied LM heads read the stored rows (plain rows, `rewrite::patch`): the table goes.
    Served,
    /// The table stays for its other readers (`allow_shared`): the file grows.
    Kept,
}

impl Plan {
    /// Checks `setting` against a table of `d` columns whose frequent tier (when the setting has
    /// one) leaves `rest` rows to the method: its k values and their j.
    pub(crate) fn of(setting: &Setting, d: usize, rest: usize) -> Result<Plan> {
        setting.check()?;
        let storage = &setting.storage;
        let mut codes = None;
        let fits = match setting.method {
            Method::Plain => Vec::new(),
            Method::Codes { sub, .. } => {
                let params = CodeParams { sub, ..CodeParams::default() };
                params.check(rest, d)?;
                codes = Some(params);
                Vec::new()
            }
            Method::Subspaces { k, size, adaptive } => {
                let fit = |k: usize| -> Result<FitPlan> {
                    let j = storage::choose_j(rest, d, k, size)?;
                    let budget = adaptive.then(|| storage::adaptive_budget(rest, d, k, size));
                    Ok(FitPlan { k, j, budget })
                };
                match k {
                    Subspaces::Fixed(k) => {
                        crate::cluster::check_k(k, rest)?; // before choose_j, whose message would blame the size
                        vec![fit(k)?]
                    }
                    Subspaces::Auto => {
                        let fits: Vec<FitPlan> = AUTO_K.into_iter().filter(|&k| k <= rest).filter_map(|k| fit(k).ok()).collect();
                        if fits.is_empty() {
                            return Err(fit(1).expect_err("k = 1 does not fit either"));
                        }
                        fits
                    }
                }
            }
        };
        let rows = if setting.method == Method::Plain { Rows::Plain } else { Rows::Coefficients };
        Ok(Plan {
            setting: *setting,
            fits,
            quant: if codes.is_some() { None } else { storage.quant(storage.bits, rows) },
            codes,
            hot: storage.hot.map(|h| (h, storage.quant(h.bits, Rows::Plain))),
            shared: Shared::No,
        })
    }

    /// The plan for `site`'s table, which other nodes may read too. A table whose only other
    /// readers are tied LM heads ([`EmbeddingSite::heads`]) is served by plain rows: at 8 bits
    /// with one scale per row (the default block, or any block of at least d values: the block
    /// becomes the row) the heads read the stored codes through integer ops; any other plain
    /// storage (4 or 2 bits, smaller 8-bit blocks, floats) through the dequantized rows of every
    /// id (`rewrite::patch`). Clustered rows, product codes and tiers on such a table, or any
    /// table with other readers, keep the table when `allow_shared`, else are an error naming the
    /// flag at fault (or the readers).
    pub(crate) fn serving(mut self, site: &EmbeddingSite, allow_shared: bool) -> Result<Plan> {
        if !site.is_shared() {
            return Ok(self);
        }
        if !site.only_heads_share() {
            crate::rewrite::patch::check_shared(site, allow_shared)?;
            self.shared = Shared::Kept;
            return Ok(self);
        }
        let d = site.cols;
        let storage = self.setting.storage;
        let refused = |setting: &str, param: Param| Error::TiedHead {
            table: site.table.clone(),
            head: site.heads[0].name.clone(),
            setting: setting.into(),
            param,
        };
        let fault = match (self.setting.method, storage.hot) {
            (Method::Subspaces { .. }, _) => Some(refused("clustered rows (coefficients in subspaces)", Param::Plain)),
            (Method::Codes { .. }, _) => Some(refused("rows stored as product codes", Param::SubVector)),
            (_, Some(_)) => Some(refused("a frequent-token tier", Param::HotBits)),
            _ => None,
        };
        match fault {
            None => {
                let default_block = storage.block == crate::quant::DEFAULT_BLOCK;
                // 8 bits with the default block: one scale a row, for the heads' integer products.
                if storage.bits == Precision::Bits(Bits::B8) && (default_block || storage.block >= d) {
                    self.quant = Some(QuantParams { bits: Bits::B8, block: d, scheme: Scheme::Symmetric });
                    self.setting.storage.block = d;
                }
                // 4 bits with the default block: blocks of 16 with a scale and a minimum each,
                // fitted to the head's error (6 bits a value; see TIED_4BIT_BLOCK).
                if storage.bits == Precision::Bits(Bits::B4) && default_block {
                    self.quant = Some(QuantParams { bits: Bits::B4, block: TIED_4BIT_BLOCK, scheme: Scheme::Asymmetric });
                    self.setting.storage.block = TIED_4BIT_BLOCK;
                }
                self.shared = Shared::Served;
            }
            Some(_) if allow_shared => self.shared = Shared::Kept,
            Some(e) => return Err(e),
        }
        Ok(self)
    }

    /// Whether its rows are fitted to a tied head's error (served asymmetric blocks, e.g. a
    /// tied table at 4 bits): they need the hidden state's moments from the original's run.
    pub(crate) fn fits_head_error(&self) -> bool {
        self.shared == Shared::Served && self.quant.is_some_and(|q| q.scheme == Scheme::Asymmetric)
    }

    /// Whether its rows are product codes in their principal axes ([`Method::Codes`]).
    pub(crate) fn rotated_codes(&self) -> bool {
        matches!(self.setting.method, Method::Codes { rotated: true, .. })
    }

    /// The least and the most bytes its layout stores for a `[n, d]` table of `dtype` whose
    /// frequent tier (when the plan has one) holds `hot` rows, before its fit: for clusters
    /// of a fixed dimension, the bytes with every cluster used, of its fits of fewest and most
    /// clusters. Exact for plain storage and codes.
    ///
    /// (A fit may leave clusters empty, and is then stored smaller: each empty one saves its
    /// zero row and its basis. The search does not wait for the fit to learn that: such a fit
    /// is one of fewer clusters, as the grid's smaller k are. On all-mpnet-base-v2, bounds that
    /// allowed every cluster but one to be empty made the search fit k4 and k8 at ratio 0.5
    /// for 89 worker-seconds, to leave both out once their sizes were known.)
    pub(crate) fn bytes_bounds(&self, n: usize, d: usize, hot: usize, dtype: FloatType) -> (u64, u64) {
        let (mut least, mut most) = (u64::MAX, 0u64);
        match self.setting.method {
            Method::Plain => {
                let bytes = self.bytes_with(n, d, hot, dtype, 0, 0);
                return (bytes, bytes);
            }
            Method::Codes { .. } => return self.codes_bytes(n, d, hot, dtype),
            Method::Subspaces { adaptive, .. } => {
                for f in &self.fits {
                    let bytes = self.bytes_with(n, d, hot, dtype, f.k, if adaptive { d } else { f.j });
                    (least, most) = (least.min(bytes), most.max(bytes));
                }
                if adaptive {
                    least = 0; // dimensions shared out unevenly: no bound below
                }
            }
        }
        (least, most)
    }

    /// The bytes its layout stores once `fitted` is made (the clusters it left empty are
    /// dropped): exact, where [`Plan::bytes_bounds`] takes every cluster as used.
    /// `None` for adaptive dimensions (their share is made by the fit, and known after the store).
    pub(crate) fn bytes_after_fit(&self, n: usize, d: usize, hot: usize, dtype: FloatType, fitted: &crate::pipeline::fit::Fitted) -> Option<u64> {
        match self.setting.method {
            Method::Subspaces { adaptive: false, .. } => Some(self.bytes_with(n, d, hot, dtype, fitted.layout.branches.len(), fitted.j)),
            _ => None,
        }
    }

    /// The bytes stored with `used` non-empty clusters of `j` dimensions (0 for plain storage)
    /// and the tier's `hot` rows: each branch (the tier, each cluster) with a zero row when there
    /// are several, and then an index.
    fn bytes_with(&self, n: usize, d: usize, hot: usize, dtype: FloatType, used: usize, j: usize) -> u64 {
        let tier = self.hot.filter(|_| hot > 0);
        let rest = n - hot;
        let branches = used.max(1) + usize::from(tier.is_some());
        let zero = usize::from(branches > 1);
        let mut bytes = tier.map_or(0, |(_, q)| storage::values_bytes(hot + zero, d, q.as_ref(), dtype));
        if branches > 1 {
            bytes += storage::index_part(n).bytes;
        }
        bytes += match used {
            0 => storage::values_bytes(rest + zero, d, self.quant.as_ref(), dtype),
            used => {
                let basis = if self.quant.is_some() { FloatType::F16 } else { dtype };
                storage::values_bytes(rest + used * zero, j, self.quant.as_ref(), dtype) + (used * j * d * basis.size()) as u64
            }
        };
        bytes
    }

    /// [`Plan::bytes_bounds`] of coded rows: exact.
    fn codes_bytes(&self, n: usize, d: usize, hot: usize, dtype: FloatType) -> (u64, u64) {
        let params = self.codes.expect("a codes plan has its parameters");
        let tier = self.hot.filter(|_| hot > 0);
        let zero = usize::from(tier.is_some());
        let mut bytes = tier.map_or(0, |(_, q)| storage::values_bytes(hot + zero, d, q.as_ref(), dtype));
        bytes += if tier.is_some() { storage::index_part(n).bytes } else { 0 };
        // (a zero row adds a code row and one zero codeword)
        bytes += params.bytes(n - hot + zero, d).total() + (zero * params.sub) as u64;
        if self.rotated_codes() {
            bytes += (d * d * ROTATED_BASIS.size()) as u64; // the axes
        }
        (bytes, bytes)
    }

    /// The size asked for (the report's), `None` for plain storage.
    pub(crate) fn size(&self) -> Option<Size> {
        match self.setting.method {
            Method::Plain | Method::Codes { .. } => None,
            Method::Subspaces { size, .. } => Some(size),
        }
    }
}

fn invalid(param: Param, reason: String) -> Error {
    Error::InvalidParameter { param, reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounds(k: usize) -> (u64, u64) {
        let setting = Setting {
            method: Method::subspaces(k, Size::Ratio(0.5)),
            storage: Storage { bits: Precision::Bits(Bits::B2), ..Storage::default() },
        };
        Plan::of(&setting, 64, 1000).unwrap().bytes_bounds(1000, 64, 0, FloatType::F32)
    }

    /// A search leaves a clustered point out before its fit by its size with every cluster
    /// used: its least bytes are its most, each of the k bases counted.
    #[test]
    fn a_clustered_point_is_bounded_with_every_cluster_used() {
        let (least1, most1) = bounds(1);
        let (least4, most4) = bounds(4);
        assert_eq!(least1, most1);
        assert_eq!(least4, most4);
        let j = storage::choose_j(1000, 64, 4, Size::Ratio(0.5)).unwrap();
        // (at least three more f16 bases than one cluster of the same j would store)
        let storage = Storage { bits: Precision::Bits(Bits::B2), ..Storage::default() };
        let one = Setting { method: Method::subspaces(1, Size::Dim(j)), storage };
        let one = Plan::of(&one, 64, 1000).unwrap().bytes_bounds(1000, 64, 0, FloatType::F32).0;
        assert!(least4 >= one + 3 * (j * 64 * 2) as u64, "{least4} vs {one}");
    }
}
