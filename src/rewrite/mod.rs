//! Rewriting the embedding lookup: [`find`] picks the Gather, [`Layout`] holds the compressed
//! table as it will be stored, [`patch`] splices its lookup into the graph ([`dequant`] emits the
//! unpacking of quantized rows, [`coded`] the lookup of rows stored as product codes).

pub(crate) mod coded;
pub(crate) mod dequant;
pub(crate) mod find;
pub(crate) mod patch;
pub use patch::HeadProduct;
pub(crate) mod source;

use ndarray::{Array1, Array2, ArrayView2, Axis, CowArray, Ix2};

use crate::cluster::{Clustering, linalg};
use crate::codes::{self, CodeParams, ProductCodes};
use crate::onnx::tensor::FloatType;
use crate::quant::{QuantParams, QuantizedRows, dequantize, dequantize_rows};
use crate::storage::{self, Footprint, Part};
use crate::error::Result;

/// The stored values of one branch `[rows, width]`: floats of the table's type, quantized, or
/// product codes.
#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    /// Float values, already rounded to the type they are stored in.
    Float(Array2<f32>),
    /// Quantized rows.
    Quantized(QuantizedRows),
    /// Rows as product codes: one byte per sub-vector and an int8 codebook per position
    /// ([`crate::codes`]).
    Codes(ProductCodes),
}

impl Values {
    /// `values` `[rows, width]` stored as `dtype` (rounded to it) or quantized with `quant`
    /// (read where they are: only float storage of a view copies them).
    pub(crate) fn store(values: CowArray<'_, f32, Ix2>, dtype: FloatType, quant: Option<&QuantParams>) -> Result<Values> {
        Values::store_weighted(values, dtype, quant, None)
    }

    /// [`Values::store`], quantized blocks fitted with column weights `[width]`
    /// ([`crate::quant::quantize_weighted`]).
    pub(crate) fn store_weighted(values: CowArray<'_, f32, Ix2>, dtype: FloatType, quant: Option<&QuantParams>, columns: Option<&[f32]>) -> Result<Values> {
        Ok(match quant {
            None => Values::Float(round(values.into_owned(), dtype)),
            Some(q) => Values::Quantized(crate::quant::quantize_weighted(values.view(), q, columns)?),
        })
    }

    /// Rows stored.
    pub fn rows(&self) -> usize {
        match self {
            Values::Float(v) => v.nrows(),
            Values::Quantized(q) => q.rows(),
            Values::Codes(c) => c.rows(),
        }
    }

    /// Values per row.
    pub fn width(&self) -> usize {
        match self {
            Values::Float(v) => v.ncols(),
            Values::Quantized(q) => q.cols,
            Values::Codes(c) => c.cols,
        }
    }

    /// What the graph computes from them, exactly (f32).
    pub fn dequantized(&self) -> std::borrow::Cow<'_, Array2<f32>> {
        match self {
            Values::Float(v) => std::borrow::Cow::Borrowed(v),
            Values::Quantized(q) => std::borrow::Cow::Owned(dequantize(q)),
            Values::Codes(c) => std::borrow::Cow::Owned(c.decode()),
        }
    }

    /// Rows `range` as the graph computes them, exactly (f32): [`Values::dequantized`] of those
    /// rows only (a view of float values).
    fn rows_in(&self, range: std::ops::Range<usize>) -> CowArray<'_, f32, Ix2> {
        match self {
            Values::Float(v) => v.slice(ndarray::s![range, ..]).into(),
            Values::Quantized(q) => dequantize_rows(q, &range.collect::<Vec<_>>()).into(),
            Values::Codes(c) => c.decode_rows(&range.collect::<Vec<_>>()).into(),
        }
    }

    /// Row `p` as the graph computes it, exactly (f32): [`Values::dequantized`] of one row.
    fn row(&self, p: usize) -> Array1<f32> {
        match self {
            Values::Float(v) => v.row(p).to_owned(),
            Values::Quantized(q) => dequantize_rows(q, &[p]).remove_axis(Axis(0)),
            Values::Codes(c) => c.decode_rows(&[p]).remove_axis(Axis(0)),
        }
    }

    /// Bytes and numbers stored, with `extra_rows` zero rows added, for values of `dtype`:
    /// the branch's whole table, a codebook included ([`Values::codebook_part`]). Product
    /// codes count each code and each codebook value as a number.
    fn part(&self, extra_rows: usize, dtype: FloatType) -> Part {
        let rows = self.rows() + extra_rows;
        let numbers = (rows * self.width()) as u64;
        match self {
            Values::Float(_) => Part { numbers, bytes: storage::values_bytes(rows, self.width(), None, dtype) },
            Values::Quantized(q) => Part { numbers, bytes: storage::values_bytes(rows, self.width(), Some(&q.params), dtype) },
            Values::Codes(c) => {
                let mut part = Part::of((rows * c.positions()) as u64, 1);
                part.add(self.codebook_part(extra_rows));
                part
            }
        }
    }

    /// The codebook's share of [`Values::part`]: with zero rows, one zero codeword more
    /// (`rewrite::coded`). Empty for values without a codebook.
    fn codebook_part(&self, extra_rows: usize) -> Part {
        match self {
            Values::Codes(c) => {
                let (words, m, sub) = (c.codebook.nrows() + extra_rows.min(1), c.positions(), c.sub());
                Part { numbers: ((words + m) * sub) as u64, bytes: crate::codes::codebook_bytes(m, words, sub) }
            }
            _ => Part::default(),
        }
    }
}

/// One group of rows stored one way.
#[derive(Debug, Clone, PartialEq)]
pub struct Branch {
    /// Token ids (table rows) of the branch, increasing.
    pub members: Vec<usize>,
    /// Their stored values, `[members, width]`, in the order of `members`.
    pub values: Values,
    /// For coefficients: the orthonormal basis `[d, width]` (row t is `basis · values[pos(t)]`);
    /// `None` for rows stored as they are (`width = d`).
    pub basis: Option<Array2<f32>>,
}

/// A table `[n, d]` as stored by the rewritten lookup: branches of rows, each stored as plain
/// rows or as coefficients in a subspace, floats, quantized or product codes. With more than one
/// branch an index (branch and position of every row, 3 bytes a row, 5 beyond 65,536 rows) says
/// where each row is, and each branch's table has a zero row for the rows it does not hold
/// (product codes: a row of codes and one zero codeword, see `coded`).
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    /// Rows of the original table.
    pub n: usize,
    /// Columns of the original table.
    pub d: usize,
    /// The table's type: the lookup's output type, and the type of float values.
    pub dtype: FloatType,
    /// The type the bases are stored in.
    pub basis_dtype: FloatType,
    /// The non-empty branches.
    pub branches: Vec<Branch>,
}

impl Layout {
    /// The float layout of `table` `[n, d]` under `clustering`, whose rows are the table's rows
    /// `rows` (all when `None`): one branch per non-empty cluster, coefficients stored as the
    /// table's `dtype`. Empty clusters are dropped.
    pub(crate) fn of_clustering(clustering: &Clustering, table: ArrayView2<f32>, rows: Option<&[usize]>, dtype: FloatType, threads: usize) -> Layout {
        let (n, d) = table.dim();
        let fitted: CowArray<f32, Ix2> = match rows {
            Some(rows) => table.select(Axis(0), rows).into(),
            None => table.into(),
        };
        let coefficients = clustering.coefficients(fitted.view(), threads);
        let branches = clustering
            .members()
            .into_iter()
            .zip(coefficients)
            .zip(&clustering.bases)
            .filter(|((m, _), _)| !m.is_empty())
            .map(|((members, coefficients), basis)| Branch {
                members: match rows {
                    Some(rows) => members.iter().map(|&m| rows[m]).collect(),
                    None => members,
                },
                values: Values::Float(round(coefficients, dtype)),
                basis: Some(round(basis.clone(), dtype)),
            })
            .collect();
        Layout { n, d, dtype, basis_dtype: dtype, branches }
    }

    /// The rows `members` of `table` stored as they are, as `dtype` or quantized with `quant`.
    pub(crate) fn plain_branch(table: ArrayView2<f32>, members: Vec<usize>, dtype: FloatType, quant: Option<&QuantParams>) -> Result<Branch> {
        Layout::plain_branch_weighted(table, members, dtype, quant, None)
    }

    /// [`Layout::plain_branch`], quantized blocks fitted with column weights `[d]`
    /// ([`crate::quant::quantize_weighted`]).
    pub(crate) fn plain_branch_weighted(
        table: ArrayView2<f32>,
        members: Vec<usize>,
        dtype: FloatType,
        quant: Option<&QuantParams>,
        columns: Option<&[f32]>,
    ) -> Result<Branch> {
        // Every row in order (plain storage without tiers) is the table itself: no copy.
        let every_row = members.len() == table.nrows() && members.iter().enumerate().all(|(i, &m)| i == m);
        let rows: CowArray<'_, f32, Ix2> = match every_row {
            true => table.into(),
            false => table.select(Axis(0), &members).into(),
        };
        let values = Values::store_weighted(rows, dtype, quant, columns)?;
        Ok(Branch { members, values, basis: None })
    }

    /// The rows `members` of `table` stored as product codes fitted with `params`, weighted by
    /// `weights` (the table's rows' weights, `[n]`) when given. `threads` as for
    /// [`codes::fit`]. Errors for parameters that cannot code these rows.
    pub(crate) fn coded_branch(
        table: ArrayView2<f32>,
        members: Vec<usize>,
        params: &CodeParams,
        weights: Option<&[f32]>,
        threads: usize,
    ) -> Result<Branch> {
        check_members(table, &members, weights)?;
        let rows = table.select(Axis(0), &members);
        let weights: Option<Vec<f32>> = weights.map(|w| members.iter().map(|&m| w[m]).collect());
        let values = Values::Codes(codes::fit(rows.view(), weights.as_deref(), params, threads)?);
        Ok(Branch { members, values, basis: None })
    }

    /// The rows `members` of `table` as product codes of their coordinates in their own
    /// principal axes (weighted by `weights` when given): a coefficient branch of width d whose
    /// basis `[d, d]` (stored as `basis_dtype`, the layout's) holds the axes, dealt round-robin
    /// to the sub-vectors by decreasing energy so that each sub-vector holds one axis of each
    /// energy band. The codes fit the coordinates in the basis as stored. On
    /// all-MiniLM-L6-v2 (sub-vectors of 4, 256 codewords, f16 basis) this erred 0.266 for 7.3%
    /// of the fp32 table where codes of the rows themselves erred 0.308 for 6.7% (and 2-bit
    /// rows 0.328 for 7.8%); its lookup multiplies by the basis like the clustered layouts.
    pub(crate) fn rotated_coded_branch(
        table: ArrayView2<f32>,
        members: Vec<usize>,
        params: &CodeParams,
        weights: Option<&[f32]>,
        basis_dtype: FloatType,
        threads: usize,
    ) -> Result<Branch> {
        let d = table.ncols();
        params.check(members.len(), d)?;
        check_members(table, &members, weights)?;
        let mut rows = table.select(Axis(0), &members);
        let gram = match weights {
            Some(w) => {
                let mut scaled = rows.clone();
                linalg::scale_rows(scaled.view_mut(), &members.iter().map(|&m| w[m]).collect::<Vec<_>>());
                linalg::gram_lower(scaled.view(), threads)
            }
            None => linalg::gram_lower(rows.view(), threads),
        };
        let (axes, _) = linalg::eigen_desc(&gram)?;
        // Column i of the basis: the axis dealt to sub-vector i / sub, slot i % sub.
        let order = deal_round_robin(d, params.sub);
        let basis = round(Array2::from_shape_fn((d, d), |(r, i)| axes[[r, order[i]]]), basis_dtype);
        rows = linalg::gemm(rows.view(), basis.view(), linalg::par(threads));
        let weights: Option<Vec<f32>> = weights.map(|w| members.iter().map(|&m| w[m]).collect());
        let values = Values::Codes(codes::fit(rows.view(), weights.as_deref(), params, threads)?);
        Ok(Branch { members, values, basis: Some(basis) })
    }

    /// The same layout with its coefficients quantized with `quant` and its bases stored as
    /// `basis_dtype`.
    pub(crate) fn quantized(&self, quant: &QuantParams, basis_dtype: FloatType) -> Result<Layout> {
        let branches = self
            .branches
            .iter()
            .map(|b| {
                let values = match &b.values {
                    // already coded: kept as they are
                    Values::Codes(c) => Values::Codes(c.clone()),
                    v => Values::store(v.dequantized().view().into(), self.dtype, Some(quant))?,
                };
                Ok(Branch {
                    members: b.members.clone(),
                    values,
                    basis: b.basis.as_ref().map(|v| round(v.clone(), basis_dtype)),
                })
            })
            .collect::<Result<_>>()?;
        Ok(Layout { n: self.n, d: self.d, dtype: self.dtype, basis_dtype, branches })
    }

    /// Whether one branch holds every row: the lookup then needs no index.
    pub fn is_single(&self) -> bool {
        self.branches.len() == 1
    }

    /// Whether every branch is stored as floats of the table's type (the paper's layout, whose
    /// lookup runs in the table's type).
    pub fn is_float(&self) -> bool {
        self.branches.iter().all(|b| matches!(b.values, Values::Float(_))) && self.basis_dtype == self.dtype
    }

    /// The branches whose rows are coefficients.
    pub fn subspaces(&self) -> impl Iterator<Item = &Branch> {
        self.branches.iter().filter(|b| b.basis.is_some())
    }

    /// Subspace dimension of each coefficient branch.
    pub fn dims(&self) -> Vec<usize> {
        self.subspaces().map(|b| b.values.width()).collect()
    }

    /// Rows of each coefficient branch.
    pub fn cluster_sizes(&self) -> Vec<usize> {
        self.subspaces().map(|b| b.members.len()).collect()
    }

    /// What the lookup stores, in numbers and bytes, by kind and by branch.
    pub fn footprint(&self) -> Footprint {
        let zero_rows = usize::from(!self.is_single());
        let mut f = Footprint::default();
        for b in &self.branches {
            let part = b.values.part(zero_rows, self.dtype);
            f.branches.push(part);
            // A codebook counts apart: the rest of the table by kind.
            let codebook = b.values.codebook_part(zero_rows);
            f.codebooks.add(codebook);
            let part = Part { numbers: part.numbers - codebook.numbers, bytes: part.bytes - codebook.bytes };
            match &b.basis {
                Some(basis) => {
                    f.coefficients.add(part);
                    f.bases.add(Part::of(basis.len() as u64, self.basis_dtype.size()));
                }
                None => f.plain.add(part),
            }
        }
        if !self.is_single() {
            f.index = storage::index_part(self.n);
        }
        f
    }

    /// Numbers the lookup stores.
    pub fn stored_numbers(&self) -> u64 {
        self.footprint().numbers()
    }

    /// Branch and position of every row, `[n]` each.
    pub fn index(&self) -> (Vec<usize>, Vec<usize>) {
        let (mut branch, mut pos) = (vec![0usize; self.n], vec![0usize; self.n]);
        for (b, br) in self.branches.iter().enumerate() {
            for (p, &t) in br.members.iter().enumerate() {
                (branch[t], pos[t]) = (b, p);
            }
        }
        (branch, pos)
    }

    /// The rows the lookup computes for `ids`, `[ids.len(), d]`, from the stored values (a
    /// product with the basis for coefficients; its rounding may differ from a runtime's).
    pub fn reconstruct(&self, ids: &[usize]) -> Array2<f32> {
        let (branch, pos) = self.index();
        let mut out = Array2::zeros((ids.len(), self.d));
        for (r, &t) in ids.iter().enumerate() {
            let (b, p) = (branch[t], pos[t]);
            let v = self.branches[b].values.row(p);
            match &self.branches[b].basis {
                Some(basis) => out.row_mut(r).assign(&basis.dot(&v)),
                None => out.row_mut(r).assign(&v),
            }
        }
        out
    }

    /// Relative Frobenius error of the stored rows against `table`, and the same with rows
    /// weighted by `weights` when given: one reconstruction pass for both.
    pub(crate) fn errors(&self, table: ArrayView2<f32>, weights: Option<&[f32]>, threads: usize) -> (f64, Option<f64>) {
        let (mut diff, mut norm) = (0f64, 0f64);
        let (mut weighted_diff, mut weighted_norm) = (0f64, 0f64);
        let (block, par) = (linalg::ROW_BLOCK, linalg::par(threads));
        for b in &self.branches {
            let basis_t = b.basis.as_ref().map(|v| v.t().as_standard_layout().into_owned());
            // A block of rows at a time: quantized rows are dequantized a block at a time too.
            for (c, rows) in b.members.chunks(block).enumerate() {
                let chunk = b.values.rows_in(c * block..c * block + rows.len());
                let approx: CowArray<'_, f32, Ix2> = match &basis_t {
                    Some(basis_t) => linalg::gemm(chunk.as_standard_layout().view(), basis_t.view(), par).into(),
                    None => chunk,
                };
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
        let weighted = weights.map(|_| crate::metrics::relative_frobenius(weighted_diff, weighted_norm));
        (crate::metrics::relative_frobenius(diff, norm), weighted)
    }
}

/// An error unless `members` are rows of `table` and `weights`, when given, one per row.
fn check_members(table: ArrayView2<f32>, members: &[usize], weights: Option<&[f32]>) -> Result<()> {
    if let Some(w) = weights.filter(|w| w.len() != table.nrows()) {
        return Err(crate::error::Error::InvalidParameter {
            param: crate::error::Param::Weights,
            reason: format!("{} weights for a table of {} rows", w.len(), table.nrows()),
        });
    }
    if let Some(&m) = members.iter().find(|&&m| m >= table.nrows()) {
        return Err(crate::error::Error::Unsupported(format!("row {m} of a table of {} rows", table.nrows())));
    }
    Ok(())
}

/// The axes `0..d` (by decreasing energy) in the order of the columns of `sub`-value sub-vectors
/// that deal them round-robin: axis a to sub-vector `a mod m` (of those not yet full; `m =
/// ceil(d / sub)`, the last one holding what is left).
fn deal_round_robin(d: usize, sub: usize) -> Vec<usize> {
    let m = d.div_ceil(sub);
    let capacity = |p: usize| if p + 1 == m { d - (m - 1) * sub } else { sub };
    let mut slots: Vec<Vec<usize>> = vec![Vec::new(); m];
    let mut p = 0;
    for axis in 0..d {
        while slots[p].len() == capacity(p) {
            p = (p + 1) % m;
        }
        slots[p].push(axis);
        p = (p + 1) % m;
    }
    slots.concat()
}

/// `values` rounded to what `dtype` stores.
fn round(mut values: Array2<f32>, dtype: FloatType) -> Array2<f32> {
    let round: fn(f32) -> f32 = match dtype {
        FloatType::F32 | FloatType::F64 => return values,
        FloatType::F16 => |v| half::f16::from_f32(v).to_f32(),
        FloatType::Bf16 => |v| half::bf16::from_f32(v).to_f32(),
    };
    values.mapv_inplace(round);
    values
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_are_dealt_round_robin() {
        assert_eq!(deal_round_robin(8, 4), [0, 2, 4, 6, 1, 3, 5, 7]);
        // 7 axes in sub-vectors of 3: the last holds one
        assert_eq!(deal_round_robin(7, 3), [0, 3, 5, 1, 4, 6, 2]);
        assert_eq!(deal_round_robin(5, 5), [0, 1, 2, 3, 4]);
        for (d, sub) in [(384, 4), (10, 4), (9, 2), (1, 1)] {
            let mut order = deal_round_robin(d, sub);
            order.sort_unstable();
            assert_eq!(order, (0..d).collect::<Vec<_>>(), "{d} {sub}");
        }
    }
}
