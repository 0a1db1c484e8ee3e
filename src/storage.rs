//! What the rewritten lookup stores, in numbers and in bytes, and choosing j for a budget. Every
//! size formula of the crate lives here.
//!
//! Layout (see `rewrite::patch`): per cluster a coefficient table `[n_i + 1, j]` (its member
//! rows plus one zero row); one index of every row's cluster and position (3 bytes a row, 5
//! beyond 65,536 rows; two numbers); one stacked basis `[k*j, d]`. With k = 1 the single table
//! `[n, j]` is read directly: `n*j + j*d`, exactly a rank-j SVD. What quantized values take in
//! bytes is in `quant::QuantParams::bytes`.

use serde::Serialize;

use crate::cluster::Budget;
use crate::error::{Error, Param, Result};
use crate::onnx::tensor::FloatType;
use crate::quant::{Bits, QuantParams, Scheme};

/// How large the compressed table may be.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Size {
    /// Every subspace has this dimension (`-j`).
    Dim(usize),
    /// Remove at least this fraction of the table's numbers (`--ratio`), in (0, 1).
    Ratio(f64),
}

/// How stored values are kept: floats of the table's type, or quantized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// Floats of the table's type (the paper's layout).
    Float,
    /// Quantized to this many bits, in per-row blocks with f16 scales.
    Bits(Bits),
}

impl serde::Serialize for Precision {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            Precision::Float => s.serialize_str("float"),
            Precision::Bits(b) => s.serialize_u64(b.count() as u64),
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Precision::Float => f.write_str("float"),
            Precision::Bits(b) => write!(f, "{} bits", b.count()),
        }
    }
}

/// What stored rows hold: the table's rows, or coefficients in a subspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rows {
    Plain,
    Coefficients,
}

/// The rows of the most frequent tokens stored plain at their own precision.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct HotTier {
    /// Precision of the frequent rows.
    pub bits: Precision,
    /// The frequent rows are the fewest whose tokens cover this share of the counted tokens,
    /// in (0, 1] (default 0.999).
    pub mass: f64,
}

/// How the compressed table is stored.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Storage {
    /// Precision of the stored values: coefficients, or the rows themselves for plain
    /// storage (default 8 bits).
    pub bits: Precision,
    /// Values per quantization block along a row (default 32).
    pub block: usize,
    /// A frequent-token tier (needs token counts).
    pub hot: Option<HotTier>,
}

impl Default for Storage {
    fn default() -> Self {
        // 8-bit coefficients: on all-MiniLM-L6-v2 (weighted, k 4, ratio 0.4) the held-out
        // cosine moved by 2e-5 against floats, for 17% of the table's bytes instead of 60%.
        Storage { bits: Precision::Bits(Bits::B8), block: crate::quant::DEFAULT_BLOCK, hot: None }
    }
}

impl Storage {
    /// The quantization of `rows` at `bits`: symmetric at 8 bits, and at 4 bits for
    /// coefficients; plain rows at 4 bits on levels fitted to the table ([`Scheme::Levels`]:
    /// on all-MiniLM-L6-v2's frequent rows 31% less squared error than by the block maximum,
    /// in a numpy simulation). At 2 bits, plain rows
    /// take mid-rise levels (no zero level, no minimum, the scale of least error): on
    /// all-MiniLM-L6-v2's table they err 0.328 (relative Frobenius, block 32) for 2.5 bits a value
    /// where a scale and a minimum per block err 0.393 for 3 bits, and its `--plain --bits 2
    /// --hot-bits 4` keeps 0.9984 held-out at 10.5% of the table (0.9983 at 11.5%).
    /// Coefficients take a scale and a minimum: at `-k 4 --ratio 0.4 --bits 2` they keep 0.946
    /// for 7.2% where mid-rise keeps 0.928 for 6.3% (their rows are skewed: the first
    /// coefficients are large). `None` for floats.
    pub(crate) fn quant(&self, bits: Precision, rows: Rows) -> Option<QuantParams> {
        match bits {
            Precision::Float => None,
            Precision::Bits(b) => {
                let scheme = match (b, rows) {
                    (Bits::B2, Rows::Plain) => Scheme::MidRise,
                    (Bits::B2, Rows::Coefficients) => Scheme::Asymmetric,
                    (Bits::B4, Rows::Plain) => Scheme::Levels,
                    _ => Scheme::Symmetric,
                };
                Some(QuantParams { bits: b, block: self.block, scheme })
            }
        }
    }

    /// The settings, checked; `plain`: they store the table's rows (no fit).
    pub(crate) fn check(&self, plain: bool) -> Result<()> {
        if let Some(q) = self.quant(self.bits, Rows::Plain).or(self.hot.and_then(|h| self.quant(h.bits, Rows::Plain))) {
            q.check()?;
        }
        if plain && self.bits == Precision::Float && self.hot.is_none() {
            return Err(Error::InvalidParameter {
                param: Param::Plain,
                reason: "plain float storage is the table itself: give 8, 4 or 2 bits".into(),
            });
        }
        if let Some(h) = self.hot.filter(|h| !(h.mass > 0.0 && h.mass <= 1.0)) {
            return Err(Error::InvalidParameter { param: Param::HotMass, reason: format!("{} is not a share in (0, 1]", h.mass) });
        }
        Ok(())
    }
}

/// Numbers stored for a table `[n, d]` compressed into `k` subspaces of dimension `j`, index
/// maps and zero rows included (clusters of any sizes: the total does not depend on them).
pub fn stored_numbers(n: usize, d: usize, k: usize, j: usize) -> u64 {
    layout_numbers(n, d, &cluster_sizes(n, k), &vec![j; k])
}

/// `k` cluster sizes adding up to `n`, for formulas where only the total matters.
fn cluster_sizes(n: usize, k: usize) -> Vec<usize> {
    (0..k).map(|i| n / k + usize::from(i < n % k)).collect()
}

/// Numbers stored by the lookup layout for clusters of `counts` rows and `dims` dimensions over
/// a table of `n` rows and `d` columns: coefficient tables with their zero rows, the index,
/// bases. One cluster needs neither index nor zero row.
pub fn layout_numbers(n: usize, d: usize, counts: &[usize], dims: &[usize]) -> u64 {
    cost_model(n, counts.len(), u64::MAX).cost(d, counts, dims)
}

/// The layout's cost as the fit's linear model, with `numbers` allowed: the index is a fixed
/// cost, each cluster stores one zero row (none of either for one cluster).
fn cost_model(n: usize, k: usize, numbers: u64) -> Budget {
    if k == 1 {
        Budget { numbers, fixed: 0, extra_rows: 0 }
    } else {
        Budget { numbers, fixed: index_part(n).numbers, extra_rows: 1 }
    }
}

/// The budget of an adaptive-dimension fit of `k` subspaces on a `[n, d]` table for `size`.
pub fn adaptive_budget(n: usize, d: usize, k: usize, size: Size) -> Budget {
    cost_model(n, k, allowed_numbers(n, d, k, size))
}

/// Bytes and numbers of one kind of stored tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Part {
    /// Values stored.
    pub numbers: u64,
    /// Bytes they take in the file.
    pub bytes: u64,
}

impl Part {
    /// `numbers` values of `bytes_per_number` bytes each.
    pub fn of(numbers: u64, bytes_per_number: usize) -> Part {
        Part { numbers, bytes: numbers * bytes_per_number as u64 }
    }

    /// Adds `other` to this part.
    pub fn add(&mut self, other: Part) {
        self.numbers += other.numbers;
        self.bytes += other.bytes;
    }
}

/// What the rewritten lookup stores, by kind: the data the file holds for the embedding.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Footprint {
    /// Coefficient tables, zero rows included.
    pub coefficients: Part,
    /// The stacked bases.
    pub bases: Part,
    /// Rows stored as they are (plain storage, or a frequent-token tier), zero rows included.
    pub plain: Part,
    /// The index: branch and position of every row (none with a single branch).
    pub index: Part,
    /// The codebooks of branches stored as product codes (their codes are under `coefficients`
    /// or `plain`, like any stored rows), zero codewords included.
    pub codebooks: Part,
    /// Each branch's table, in branch order (coefficients or plain rows; a codebook included).
    pub branches: Vec<Part>,
}

impl Footprint {
    /// Numbers stored in all.
    pub fn numbers(&self) -> u64 {
        self.coefficients.numbers + self.bases.numbers + self.plain.numbers + self.index.numbers + self.codebooks.numbers
    }

    /// Bytes stored in all.
    pub fn bytes(&self) -> u64 {
        self.coefficients.bytes + self.bases.bytes + self.plain.bytes + self.index.bytes + self.codebooks.bytes
    }
}

/// Bytes of `rows` stored values `width` wide: quantized with `quant`, or floats of `dtype`.
pub(crate) fn values_bytes(rows: usize, width: usize, quant: Option<&QuantParams>, dtype: FloatType) -> u64 {
    match quant {
        Some(q) => q.bytes(rows, width).total(),
        None => (rows * width * dtype.size()) as u64,
    }
}

/// The index of a layout of several branches over `n` rows: a branch number (uint8) and a
/// position in the branch per row, two numbers a row: 3 bytes when every position fits a
/// uint16 ([`narrow_positions`]), else 5 (int32 positions).
pub(crate) fn index_part(n: usize) -> Part {
    let position = if narrow_positions(n) { 2 } else { 4 };
    Part { numbers: 2 * n as u64, bytes: ((1 + position) * n) as u64 }
}

/// Whether the index of a layout over `n` rows stores its positions as uint16: a position is
/// below its branch's row count, at most `n`.
pub(crate) fn narrow_positions(n: usize) -> bool {
    n <= 1 << 16
}

/// The subspace dimension for `size`, checked to save numbers on a `[n, d]` table.
pub fn choose_j(n: usize, d: usize, k: usize, size: Size) -> Result<usize> {
    let original = (n as u64) * (d as u64);
    match size {
        Size::Dim(j) => {
            if j == 0 {
                return Err(Error::InvalidParameter { param: Param::J, reason: "must be at least 1".into() });
            }
            if j >= d {
                return Err(Error::InvalidParameter {
                    param: Param::J,
                    reason: format!("j = {j} must be smaller than the table's {d} columns, or nothing is saved"),
                });
            }
            let stored = stored_numbers(n, d, k, j);
            if stored >= original {
                return Err(Error::InvalidParameter {
                    param: Param::J,
                    reason: format!(
                        "k = {k}, j = {j} stores {stored} numbers, not fewer than the table's {original}: nothing is saved"
                    ),
                });
            }
            Ok(j)
        }
        Size::Ratio(r) => {
            if !(r > 0.0 && r < 1.0) {
                return Err(Error::InvalidParameter {
                    param: Param::Ratio,
                    reason: format!("{r} is not a fraction strictly between 0 and 1"),
                });
            }
            let allowed = allowed_numbers(n, d, k, size);
            let j = (1..d).take_while(|&j| stored_numbers(n, d, k, j) <= allowed).last();
            j.ok_or_else(|| Error::InvalidParameter {
                param: Param::Ratio,
                reason: format!(
                    "removing {:.1}% leaves {allowed} numbers, but k = {k}, j = 1 already stores {}; \
                     lower the ratio or k",
                    r * 100.0,
                    stored_numbers(n, d, k, 1)
                ),
            })
        }
    }
}

/// The numbers a fit may store: `(1 - R)·n·d` for a ratio, the uniform layout's for `-j`.
pub fn allowed_numbers(n: usize, d: usize, k: usize, size: Size) -> u64 {
    match size {
        Size::Dim(j) => stored_numbers(n, d, k, j),
        Size::Ratio(r) => ((1.0 - r) * (n as f64) * (d as f64)).floor() as u64,
    }
}

/// The share of a table's `before` numbers that `after` saves, in percent (negative when the
/// model grows).
pub fn saved_percent(before: u64, after: u64) -> f64 {
    100.0 * (1.0 - after as f64 / before as f64)
}

/// Numbers a rank-`rank` SVD of a `[n, d]` table stores: `rank·(n + d)`.
pub fn svd_numbers(rank: usize, n: usize, d: usize) -> u64 {
    (rank * (n + d)) as u64
}

/// The largest rank j' whose SVD (`j'*(n + d)` numbers) fits in `numbers`.
pub fn svd_rank(numbers: u64, n: usize, d: usize) -> usize {
    ((numbers / (n as u64 + d as u64)) as usize).min(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_follow_the_layout() {
        assert_eq!(stored_numbers(1000, 64, 1, 8), 1000 * 8 + 8 * 64);
        assert_eq!(stored_numbers(1000, 64, 4, 8), 1004 * 8 + 2 * 1000 + 4 * 8 * 64);
    }

    #[test]
    fn ratio_picks_the_largest_fitting_j() {
        let (n, d, k) = (30522, 384, 4);
        let j = choose_j(n, d, k, Size::Ratio(0.4)).unwrap();
        let allowed = (0.6 * (n * d) as f64).floor() as u64;
        assert!(stored_numbers(n, d, k, j) <= allowed);
        assert!(stored_numbers(n, d, k, j + 1) > allowed);
        assert_eq!(choose_j(n, d, 1, Size::Ratio(0.4)).unwrap(), svd_rank(allowed, n, d));
    }

    #[test]
    fn ratio_outside_zero_one() {
        for r in [0.0, 1.0, -0.5, 1.5, f64::NAN] {
            let e = choose_j(100, 16, 2, Size::Ratio(r)).unwrap_err();
            assert!(matches!(e, Error::InvalidParameter { param: Param::Ratio, .. }), "{r}: {e}");
        }
    }

    #[test]
    fn ratio_too_high_for_k() {
        let e = choose_j(100, 16, 8, Size::Ratio(0.95)).unwrap_err().to_string();
        assert!(e.contains("lower the ratio"), "{e}");
    }

    #[test]
    fn dim_that_saves_nothing() {
        assert!(choose_j(100, 16, 2, Size::Dim(16)).unwrap_err().to_string().contains("smaller than"));
        let e = choose_j(100, 16, 4, Size::Dim(10)).unwrap_err().to_string();
        assert!(e.contains("nothing is saved"), "{e}");
        assert!(choose_j(100, 16, 2, Size::Dim(0)).is_err());
        assert_eq!(choose_j(100, 16, 2, Size::Dim(4)).unwrap(), 4);
    }
}
