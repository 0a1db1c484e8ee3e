//! Block-wise scalar quantization of table rows: the numbers a quantized embedding stores, and
//! the exact f32 values a lookup of them computes. No ONNX here; the graph that dequantizes
//! gathered rows is built by `rewrite::dequant`, and [`dequantize`] computes bit for bit what it
//! computes.
//!
//! Each row of `cols` values is cut into blocks of `block` values (the last block of a row may be
//! partial). Each block stores one f16 scale, and with [`Scheme::Asymmetric`] one f16 minimum:
//!
//! | scheme | stored code `u` | q | value (f32) |
//! |---|---|---|---|
//! | symmetric, 8 bits | int8 bit pattern of q | [-128, 127] | `f32(q) * f32(scale)` |
//! | symmetric, 4 / 2 bits | `q + 8` / `q + 2` | [-8, 7] / [-2, 1] | `f32(q) * f32(scale)` |
//! | asymmetric | q | [0, 2^bits - 1] | `f32(q) * f32(scale) + f32(min)` (two f32 roundings, no FMA) |
//! | mid-rise | u, q = 2u - (2^bits - 1) | odd, [-(2^bits - 1), 2^bits - 1] | `f32(q) * f32(scale)` |
//! | levels | u | [0, 2^bits - 1] | `levels[u] * f32(scale)` (`levels`: 2^bits f32, one table for all rows) |
//!
//! Packing: 8 bits one code per byte; 4 bits two per byte, the first in the low nibble; 2 bits four
//! per byte, the first in the lowest two bits. Each row is padded to whole bytes on its own
//! (`row_bytes = ceil(cols * bits / 8)`), padding codes are 0.
//!
//! Choosing the numbers: the symmetric scale is `max(max⁺ / qmax, max⁻ / (qmax + 1))` (max⁺, max⁻
//! the largest positive value and the largest magnitude of a negative one), which is
//! `max|x| / 127` at 8 bits when the positive side dominates and uses the extra negative code
//! otherwise. The asymmetric minimum is the block's minimum rounded down to f16, its scale
//! `(max - min16) / (2^bits - 1)`. The scale is then rounded to f16 both ways; each value is
//! quantized to the nearest code with that rounded scale (clamped to the code range), and the
//! rounding giving the lower squared error is kept among those whose every error is at most
//! `scale16 / 2` (rounding up always is). So `|x - x̂| <= scale16 / 2` plus the f32 rounding of the
//! dequantization, for values within f16's range. A zero scale (all-zero block, or a constant
//! block whose value f16 holds exactly) stores code 0 everywhere. Scales and minimums are clamped
//! to f16's finite range, so nothing stored is NaN or infinite, whatever the input.

use half::f16;
use ndarray::{Array2, ArrayView2};

use crate::error::{Error, Param, Result};

/// The default number of values per block.
pub const DEFAULT_BLOCK: usize = 32;

/// Bits per stored code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Bits {
    B2,
    B4,
    B8,
}

impl Bits {
    /// The bit width: 2, 4 or 8.
    pub fn count(self) -> usize {
        match self {
            Bits::B2 => 2,
            Bits::B4 => 4,
            Bits::B8 => 8,
        }
    }

    /// The width of `bits`, or an error for anything but 2, 4 and 8.
    pub fn new(bits: usize) -> Result<Bits> {
        match bits {
            2 => Ok(Bits::B2),
            4 => Ok(Bits::B4),
            8 => Ok(Bits::B8),
            _ => Err(Error::InvalidParameter {
                param: Param::Bits,
                reason: format!("{bits}; the supported widths are 2, 4 and 8"),
            }),
        }
    }

    /// Codes per byte: 4, 2 or 1.
    pub fn per_byte(self) -> usize {
        8 / self.count()
    }
}

/// How values map to codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `x ≈ q * scale`, q centred on zero.
    Symmetric,
    /// `x ≈ q * scale + min`, q in `[0, 2^bits - 1]`, one f16 minimum per block.
    Asymmetric,
    /// `x ≈ q * scale` with q odd in `[-(2^bits - 1), 2^bits - 1]`: levels placed symmetrically,
    /// none at zero, no minimum stored; the scale minimises the block's squared error (the
    /// largest level may clip outliers). At 2 bits: 4 levels for 2.5 bits a value (block 32),
    /// lower error than the asymmetric scheme's 3 bits on real embedding tables.
    MidRise,
    /// `x ≈ levels[u] * scale`, u in `[0, 2^bits - 1]`: non-uniform levels fitted to the table
    /// (shared by all its rows, stored once as f32), each block's scale the one of least squared
    /// error. On all-MiniLM-L6-v2's frequent rows at 4 bits in blocks of 32 the squared error is
    /// 31% below the symmetric scheme's by the block maximum (a numpy simulation: 0.0059 against
    /// 0.0085 of the rows' energy), for 64 bytes more per table. 4 and 2 bits.
    Levels,
}

/// How a table is quantized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct QuantParams {
    pub bits: Bits,
    /// Values per block along a row (the last block of a row may be partial).
    pub block: usize,
    pub scheme: Scheme,
}

/// Bytes of the parts of a quantized table: what its initializers hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuantBytes {
    pub packed: u64,
    pub scales: u64,
    /// 0 for the symmetric scheme.
    pub mins: u64,
    /// The table's levels ([`Scheme::Levels`]; 0 otherwise).
    pub levels: u64,
}

impl QuantBytes {
    pub fn total(&self) -> u64 {
        self.packed + self.scales + self.mins + self.levels
    }
}

impl QuantParams {
    /// An error naming the flag at fault when the parameters cannot be used.
    pub fn check(&self) -> Result<()> {
        if self.block == 0 {
            return Err(Error::InvalidParameter {
                param: Param::Block,
                reason: "0; a block holds at least one value".into(),
            });
        }
        if self.scheme == Scheme::Levels && self.bits == Bits::B8 {
            return Err(Error::InvalidParameter { param: Param::Bits, reason: "8; fitted levels are for 4 and 2 bits".into() });
        }
        if self.block > i32::MAX as usize {
            return Err(Error::InvalidParameter {
                param: Param::Block,
                reason: format!("{}; blocks of more than {} values are not supported", self.block, i32::MAX),
            });
        }
        Ok(())
    }

    /// Blocks per row of `cols` values.
    pub fn blocks(&self, cols: usize) -> usize {
        cols.div_ceil(self.block)
    }

    /// Bytes per packed row of `cols` values.
    pub fn row_bytes(&self, cols: usize) -> usize {
        cols.div_ceil(self.bits.per_byte())
    }

    /// Bytes a table of `n` rows of `cols` values takes quantized.
    pub fn bytes(&self, n: usize, cols: usize) -> QuantBytes {
        let blocks = (n * self.blocks(cols)) as u64;
        QuantBytes {
            packed: (n * self.row_bytes(cols)) as u64,
            scales: 2 * blocks,
            mins: if self.scheme == Scheme::Asymmetric { 2 * blocks } else { 0 },
            levels: if self.scheme == Scheme::Levels { 4 * self.levels() as u64 } else { 0 },
        }
    }

    /// Levels of [`Scheme::Levels`]: one per code.
    pub fn levels(&self) -> usize {
        1 << self.bits.count()
    }

    /// Whether the packed codes are stored as int8 (8-bit symmetric) rather than uint8.
    pub fn packed_is_signed(&self) -> bool {
        self.bits == Bits::B8 && self.scheme == Scheme::Symmetric
    }

    /// The code range `[qmin, qmax]`.
    fn range(&self) -> (i32, i32) {
        let b = self.bits.count() as u32;
        match self.scheme {
            Scheme::Symmetric => (-(1 << (b - 1)), (1 << (b - 1)) - 1),
            Scheme::Asymmetric | Scheme::MidRise | Scheme::Levels => (0, (1 << b) - 1),
        }
    }

    /// What a symmetric sub-byte code is stored offset by (8 for 4 bits, 2 for 2 bits); 0
    /// otherwise (8-bit symmetric codes are stored as their int8 bit pattern).
    pub fn offset(&self) -> i32 {
        match (self.scheme, self.bits) {
            (Scheme::Symmetric, Bits::B4) => 8,
            (Scheme::Symmetric, Bits::B2) => 2,
            _ => 0,
        }
    }
}

/// A quantized table `[n, cols]`.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantizedRows {
    /// Packed codes, `[n, row_bytes]`.
    pub packed: Array2<u8>,
    /// One scale per block, `[n, blocks]`.
    pub scales: Array2<f16>,
    /// One minimum per block, `[n, blocks]`, with [`Scheme::Asymmetric`] only.
    pub mins: Option<Array2<f16>>,
    /// The levels codes index, ascending, with [`Scheme::Levels`] only.
    pub levels: Option<Vec<f32>>,
    /// Values per row.
    pub cols: usize,
    pub params: QuantParams,
}

impl QuantizedRows {
    /// Rows of the table.
    pub fn rows(&self) -> usize {
        self.packed.nrows()
    }

    /// Bytes of each part: what the initializers hold.
    pub fn bytes(&self) -> QuantBytes {
        self.params.bytes(self.rows(), self.cols)
    }

    /// The code q of row `r`, column `c`.
    fn code(&self, r: usize, c: usize) -> i32 {
        let b = self.params.bits.count();
        let k = self.params.bits.per_byte();
        let byte = self.packed[[r, c / k]];
        let u = (byte >> (b * (c % k))) as u32 & ((1u32 << b) - 1);
        match self.params.scheme {
            _ if self.params.packed_is_signed() => byte as i8 as i32,
            Scheme::MidRise => 2 * u as i32 - ((1 << b) - 1),
            _ => u as i32 - self.params.offset(),
        }
    }

    /// Dequantized row `r` into `out` (`cols` long): the graph's f32 operations, in its order.
    fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        let block = self.params.block;
        for (c, o) in out.iter_mut().enumerate() {
            let scale = self.scales[[r, c / block]].to_f32();
            let q = self.code(r, c);
            *o = match (&self.mins, &self.levels) {
                (_, Some(levels)) => levels[q as usize] * scale,
                (None, None) => q as f32 * scale,
                (Some(mins), None) => q as f32 * scale + mins[[r, c / block]].to_f32(),
            };
        }
    }
}

/// Quantizes `rows` `[n, cols]` block-wise under `params` (see the module doc for the choices).
pub fn quantize(rows: ArrayView2<f32>, params: &QuantParams) -> Result<QuantizedRows> {
    quantize_weighted(rows, params, None)
}

/// [`quantize`], with the asymmetric scheme's blocks fitted to least error weighted by
/// `columns` (`[cols]`, non-negative; e.g. the second moments of the hidden state a tied LM
/// head multiplies the rows by: its logits err by `sum_j h_j (w_j - w'_j)`, whose expected
/// square is about `sum_j E[h_j^2] (w_j - w'_j)^2`). Each block's scale and minimum are the
/// pair of least weighted squared error among the block's range shrunk by 0.5 to 1 and shifted
/// by up to half a step ([`SHRINKS`] x [`SHIFTS`] candidates, in f16, as stored), then refitted
/// to its codes by weighted least squares ([`REFITS`] rounds at most). Other schemes,
/// or no weights, quantize as [`quantize`].
pub fn quantize_weighted(rows: ArrayView2<f32>, params: &QuantParams, columns: Option<&[f32]>) -> Result<QuantizedRows> {
    params.check()?;
    if let Some(w) = columns {
        if w.len() != rows.ncols() || !w.iter().all(|v| v.is_finite() && *v >= 0.0) {
            return Err(Error::Unsupported(format!("{} column weights for {} columns, or not all finite and non-negative", w.len(), rows.ncols())));
        }
    }
    let columns = columns.filter(|_| params.scheme == Scheme::Asymmetric);
    let (n, cols) = rows.dim();
    let levels = (params.scheme == Scheme::Levels).then(|| fit_levels(rows, params));
    let levels_ref = levels.as_ref();
    let (row_bytes, nblocks) = (params.row_bytes(cols), params.blocks(cols));
    let mut packed = Array2::<u8>::zeros((n, row_bytes));
    let mut scales = Array2::<f16>::from_elem((n, nblocks), f16::ZERO);
    let mut mins = (params.scheme == Scheme::Asymmetric).then(|| Array2::<f16>::from_elem((n, nblocks), f16::ZERO));
    // Blocks are independent: rows in chunks, one thread each (the same bytes whatever the
    // threads).
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get()).min(n.div_ceil(256)).max(1);
    let chunk = n.div_ceil(threads).max(1);
    let mut mins_chunks: Vec<Option<ndarray::ArrayViewMut2<f16>>> = match mins.as_mut() {
        Some(m) => m.axis_chunks_iter_mut(ndarray::Axis(0), chunk).map(Some).collect(),
        None => (0..n.div_ceil(chunk)).map(|_| None).collect(),
    };
    std::thread::scope(|scope| {
        let parts = rows
            .axis_chunks_iter(ndarray::Axis(0), chunk)
            .zip(packed.axis_chunks_iter_mut(ndarray::Axis(0), chunk))
            .zip(scales.axis_chunks_iter_mut(ndarray::Axis(0), chunk))
            .zip(mins_chunks.iter_mut());
        for (((rows, mut packed), mut scales), mins) in parts {
            scope.spawn(move || {
                let (b, k) = (params.bits.count(), params.bits.per_byte());
                let mut values = vec![0f32; params.block.min(cols)];
                let mut codes = vec![0i32; values.len()];
                let mut scratch = vec![0i32; values.len()];
                for (r, row) in rows.rows().into_iter().enumerate() {
                    for blk in 0..nblocks {
                        let start = blk * params.block;
                        let end = (start + params.block).min(cols);
                        let (x, q, trial) = (&mut values[..end - start], &mut codes[..end - start], &mut scratch[..end - start]);
                        for (v, c) in x.iter_mut().zip(start..end) {
                            *v = row[c];
                        }
                        let (scale, min) = match (columns, levels_ref) {
                            (_, Some(levels)) => (quantize_block_levels(x, levels, q), f16::ZERO),
                            (Some(w), None) => quantize_block_weighted(x, &w[start..end], params.range().1, q, trial),
                            (None, None) => quantize_block(x, params, q, trial),
                        };
                        scales[[r, blk]] = scale;
                        if let Some(m) = mins.as_mut() {
                            m[[r, blk]] = min;
                        }
                        for (&q, c) in q.iter().zip(start..end) {
                            let u = if params.packed_is_signed() { q as i8 as u8 } else { (q + params.offset()) as u8 };
                            packed[[r, c / k]] |= u << (b * (c % k));
                        }
                    }
                }
            });
        }
    });
    drop(mins_chunks);
    Ok(QuantizedRows { packed, scales, mins, levels: levels.map(|l| l.values), cols, params: *params })
}

/// Blocks of the table [`fit_levels`] fits the levels on, at most (evenly spread over it).
const LEVEL_FIT_BLOCKS: usize = 1 << 13;
/// Rounds of [`fit_levels`]: block scales for the levels, then levels for the scales.
const LEVEL_FIT_ROUNDS: usize = 4;
/// The scales a block of [`Scheme::Levels`] tries first: its largest magnitude mapped to the
/// largest level times 0.55, 0.6, .. 1.15 (the largest values may clip, the rest fall nearer
/// levels).
const LEVEL_SCALES: usize = 13;

/// Ascending levels and the midpoints between neighbours: a value's level is the one of the
/// midpoints it is above (of two equally near levels, the lower).
struct Levels {
    values: Vec<f32>,
    mids: Vec<f32>,
}

impl Levels {
    fn new(values: Vec<f32>) -> Levels {
        let mids = values.windows(2).map(|w| (w[0] + w[1]) / 2.0).collect();
        Levels { values, mids }
    }

    /// The index of the level nearest `y` (0 for NaN).
    fn index(&self, y: f32) -> usize {
        self.mids.iter().map(|&m| usize::from(m < y)).sum()
    }
}

/// The levels of a [`Scheme::Levels`] table: ascending, the largest magnitude 1. Lloyd's
/// algorithm in one dimension on blocks of the table (at most [`LEVEL_FIT_BLOCKS`]), each scaled
/// by its block's scale of least error under the levels so far: from levels evenly spaced in
/// [-1, 1] and each block by its largest magnitude, [`LEVEL_FIT_ROUNDS`] rounds. Deterministic.
fn fit_levels(rows: ArrayView2<f32>, params: &QuantParams) -> Levels {
    let count = params.levels();
    let mut levels = Levels::new((0..count).map(|i| (2 * i + 1) as f32 / count as f32 - 1.0).collect());
    let (n, cols) = rows.dim();
    let per_row = params.blocks(cols);
    let total = n * per_row;
    if total == 0 {
        return levels;
    }
    let step = total.div_ceil(LEVEL_FIT_BLOCKS);
    let blocks: Vec<Vec<f32>> = (0..total)
        .step_by(step)
        .map(|i| {
            let (r, b) = (i / per_row, i % per_row);
            let end = ((b + 1) * params.block).min(cols);
            (b * params.block..end).map(|c| finite_or_zero(rows[[r, c]])).collect()
        })
        .collect();
    let mut codes = vec![0i32; params.block.min(cols)];
    for round in 0..LEVEL_FIT_ROUNDS {
        let (mut sums, mut counts) = (vec![0f64; count], vec![0f64; count]);
        for x in &blocks {
            let q = &mut codes[..x.len()];
            let scale = match round {
                0 => f16_bracket(largest(x)).1, // the block's largest magnitude on the outer levels
                _ => quantize_block_levels(x, &levels, q),
            };
            let s = scale.to_f32();
            if s <= 0.0 {
                continue;
            }
            for &v in x {
                let y = v / s;
                let u = levels.index(y);
                sums[u] += y as f64;
                counts[u] += 1.0;
            }
        }
        let mut values = levels.values;
        for ((l, s), c) in values.iter_mut().zip(&sums).zip(&counts) {
            if *c > 0.0 {
                *l = (s / c) as f32;
            }
        }
        let top = values.iter().fold(0f32, |m, l| m.max(l.abs()));
        if top > 0.0 {
            values.iter_mut().for_each(|l| *l /= top);
        }
        values.sort_by(f32::total_cmp);
        levels = Levels::new(values);
    }
    levels
}

/// `v`, or 0 when it is not finite.
fn finite_or_zero(v: f32) -> f32 {
    if v.is_finite() { v } else { 0.0 }
}

/// The largest magnitude of the finite values of `x` (0 for none), within f16's range.
fn largest(x: &[f32]) -> f64 {
    x.iter().map(|&v| (finite_or_zero(v) as f64).abs()).fold(0.0, f64::max).min(f16::MAX.to_f64())
}

/// The squared error of `x` on `levels` under `scale` (> 0), in f32.
fn levels_error(x: &[f32], levels: &Levels, scale: f32) -> f32 {
    x.iter()
        .map(|&v| {
            let v = finite_or_zero(v);
            let e = v - levels.values[levels.index(v / scale)] * scale;
            e * e
        })
        .sum()
}

/// Quantizes one block `x` on `levels` (the largest magnitude 1) into codes `q` (same length):
/// the f16 scale of least squared error among the block's largest magnitude times 0.55, 0.6, ..
/// 1.15 ([`LEVEL_SCALES`]), then a half step either side of the best. Returns the scale (0, all
/// codes those of the level nearest 0, for a block of zeros; non-finite values are taken as 0).
fn quantize_block_levels(x: &[f32], levels: &Levels, q: &mut [i32]) -> f16 {
    let m = largest(x);
    let mut best: Option<(f32, f16, f64)> = None;
    let try_factor = |f: f64, best: &mut Option<(f32, f16, f64)>| {
        let scale = f16::from_f64((m * f).min(f16::MAX.to_f64()));
        if scale.to_f64().is_nan() || scale.to_f64() <= 0.0 || best.is_some_and(|(_, s, _)| s == scale) {
            return;
        }
        let sse = levels_error(x, levels, scale.to_f32());
        if best.is_none_or(|(e, _, _)| sse < e) {
            *best = Some((sse, scale, f));
        }
    };
    for i in 0..LEVEL_SCALES {
        try_factor(0.55 + 0.05 * i as f64, &mut best);
    }
    if let Some((_, _, f)) = best {
        try_factor(f - 0.025, &mut best);
        try_factor(f + 0.025, &mut best);
    }
    let scale = best.map_or(f16::ZERO, |(_, s, _)| s);
    let s = scale.to_f32();
    for (u, &v) in q.iter_mut().zip(x) {
        *u = levels.index(if s > 0.0 { finite_or_zero(v) / s } else { 0.0 }) as i32;
    }
    scale
}

/// The dequantized table `[n, cols]`, equal bit for bit to what the dequantizing graph computes.
pub fn dequantize(q: &QuantizedRows) -> Array2<f32> {
    let ids: Vec<usize> = (0..q.rows()).collect();
    dequantize_rows(q, &ids)
}

/// The dequantized rows `ids`, `[ids.len(), cols]`. Panics on an id past the table.
pub fn dequantize_rows(q: &QuantizedRows, ids: &[usize]) -> Array2<f32> {
    let mut out = Array2::<f32>::zeros((ids.len(), q.cols));
    for (mut o, &id) in out.rows_mut().into_iter().zip(ids) {
        q.dequantize_row(id, o.as_slice_mut().expect("standard layout"));
    }
    out
}

/// Quantizes one block `x` into codes `q` (same length; `trial` is scratch space of that length);
/// returns the scale and the minimum (0 for the symmetric schemes).
fn quantize_block(x: &[f32], params: &QuantParams, q: &mut [i32], trial: &mut [i32]) -> (f16, f16) {
    if params.scheme == Scheme::MidRise {
        return (quantize_mid_rise(x, params.bits, q, trial), f16::ZERO);
    }
    // (MidRise is handled above; it shares the asymmetric arm below only to be exhaustive.)
    let (qmin, qmax) = params.range();
    let finite = || x.iter().map(|&v| v as f64).filter(|v| !v.is_nan());
    let (lo, hi) = (finite().fold(f64::INFINITY, f64::min), finite().fold(f64::NEG_INFINITY, f64::max));
    let (lo, hi) = if lo <= hi { (lo, hi) } else { (0.0, 0.0) }; // all NaN
    let (min, scale) = match params.scheme {
        Scheme::Symmetric => (f16::ZERO, (hi.max(0.0) / qmax as f64).max((-lo).max(0.0) / -qmin as f64)),
        Scheme::Asymmetric | Scheme::MidRise | Scheme::Levels => {
            let min = f16_bracket(lo).0;
            (min, (hi - min.to_f64()) / qmax as f64)
        }
    };
    let scale = if scale > 0.0 { scale } else { 0.0 }; // NaN too
    let (down, up) = f16_bracket(scale);
    if up == f16::ZERO {
        q.fill(0);
        return (f16::ZERO, min);
    }
    // Rounded up, every value is in range; rounded down may be better, if no error grows
    // past half its scale.
    let (sse_up, _) = codes(x, up, min, qmin, qmax, q);
    if down != up && down != f16::ZERO {
        let (sse_down, valid) = codes(x, down, min, qmin, qmax, trial);
        if valid && sse_down < sse_up {
            q.copy_from_slice(trial);
            return (down, min);
        }
    }
    (up, min)
}

/// How far [`quantize_weighted`] shrinks a block's range (11 factors, 0.5 to 1) and shifts its
/// minimum (9 shifts, -0.5 to 0.5 of a step). On SmolLM2-135M's tied table at 4 bits in blocks
/// of 16 (a numpy simulation, BENCHMARKS.md), weighting by the head's hidden-state moments with
/// such a grid raised top-1 next-token agreement from 0.850 (the block's own range) to 0.897.
const SHRINKS: usize = 11;
const SHIFTS: usize = 9;

/// Rounds of [`quantize_block_weighted`]'s refit: on SmolLM2-135M's tied table (blocks of 16,
/// moments from 16 random ids) they raised top-1 agreement from 0.892 to 0.900 (BENCHMARKS.md).
const REFITS: usize = 4;

/// The codes `u` in `[0, qmax]` nearest `(x - min) / scale` and their `w`-weighted squared
/// error, dequantized in f32 as stored (`u * scale + min`).
fn weighted_codes(x: &[f32], w: &[f32], scale: f16, min: f16, qmax: i32, u: &mut [i32]) -> f64 {
    let (s, m) = (scale.to_f32(), min.to_f32());
    let inv = 1.0 / s;
    let mut err = 0f32;
    for ((&v, &wt), u) in x.iter().zip(w).zip(u.iter_mut()) {
        *u = ((v - m) * inv).round().clamp(0.0, qmax as f32) as i32; // NaN -> 0
        let e = v - (*u as f32 * s + m);
        err += wt * e * e;
    }
    err as f64
}

/// The scale and minimum `(s, m)` of least `w`-weighted squared error of `x ≈ u s + m` for the
/// codes `u`; `None` when the codes do not vary (over weighted values).
fn weighted_line(x: &[f32], w: &[f32], u: &[i32]) -> Option<(f64, f64)> {
    let (mut sw, mut su, mut sx, mut suu, mut sux) = (0f64, 0f64, 0f64, 0f64, 0f64);
    for ((&v, &wt), &c) in x.iter().zip(w).zip(u) {
        let (wt, v, c) = (wt as f64, v as f64, c as f64);
        sw += wt;
        su += wt * c;
        sx += wt * v;
        suu += wt * c * c;
        sux += wt * c * v;
    }
    let det = sw * suu - su * su;
    if !(det > 1e-12 * sw * suu.max(1.0)) {
        return None;
    }
    let s = (sw * sux - su * sx) / det;
    let m = (sx - s * su) / sw;
    (s.is_finite() && m.is_finite()).then_some((s, m))
}

/// One asymmetric block of `x` fitted to least `w`-weighted squared error (see
/// [`quantize_weighted`]); codes in `[0, qmax]`. Returns the scale and the minimum.
fn quantize_block_weighted(x: &[f32], w: &[f32], qmax: i32, q: &mut [i32], trial: &mut [i32]) -> (f16, f16) {
    let finite = || x.iter().map(|&v| v as f64).filter(|v| !v.is_nan());
    let (lo, hi) = (finite().fold(f64::INFINITY, f64::min), finite().fold(f64::NEG_INFINITY, f64::max));
    let (lo, hi) = if lo <= hi { (lo, hi) } else { (0.0, 0.0) };
    let mut best: Option<(f64, f16, f16)> = None;
    for i in 0..SHRINKS {
        let half = (hi - lo) / 2.0 * (0.5 + 0.5 * i as f64 / (SHRINKS - 1) as f64);
        let scale = f16::from_f64(2.0 * half / qmax as f64);
        if !(scale.to_f64() > 0.0 && scale.is_finite()) {
            continue;
        }
        for j in 0..SHIFTS {
            let shift = -0.5 + j as f64 / (SHIFTS - 1) as f64;
            let min = f16::from_f64(((hi + lo) / 2.0 - half + shift * scale.to_f64()).clamp(-f16::MAX.to_f64(), f16::MAX.to_f64()));
            let err = weighted_codes(x, w, scale, min, qmax, trial);
            if best.is_none_or(|(e, _, _)| err < e) {
                best = Some((err, scale, min));
                q.copy_from_slice(trial);
            }
        }
    }
    // Then refit: the scale and minimum of least weighted error for these codes (a weighted
    // linear fit), in f16, new codes for them; kept while the error falls.
    if let Some((mut err, mut scale, mut min)) = best {
        for _ in 0..REFITS {
            let Some((s, m)) = weighted_line(x, w, q) else { break };
            let (s16, m16) = (f16::from_f64(s), f16::from_f64(m.clamp(-f16::MAX.to_f64(), f16::MAX.to_f64())));
            if !(s16.to_f64() > 0.0 && s16.is_finite()) {
                break;
            }
            let e = weighted_codes(x, w, s16, m16, qmax, trial);
            if e >= err {
                break;
            }
            (err, scale, min) = (e, s16, m16);
            q.copy_from_slice(trial);
        }
        best = Some((err, scale, min));
    }
    match best {
        Some((_, scale, min)) => (scale, min),
        None => {
            // A constant block: its value as the minimum, every code 0.
            q.fill(0);
            (f16::ZERO, f16_bracket(lo).0)
        }
    }
}

/// [`Scheme::MidRise`]: stored codes `u` with `x ≈ (2u - L) * scale`, `L = 2^bits - 1`; the scale
/// is the f16 (nearest to `c * max|x| / L`, c from 0.4 to 1 by 0.05) of least squared error of
/// the f32 dequantization. Returns the scale (0, all codes 0, for a zero block).
fn quantize_mid_rise(x: &[f32], bits: Bits, q: &mut [i32], trial: &mut [i32]) -> f16 {
    let levels = (1i32 << bits.count()) - 1;
    let m = x.iter().map(|&v| (v as f64).abs()).filter(|v| !v.is_nan()).fold(0.0, f64::max).min(f16::MAX.to_f64());
    let mut best: Option<(f64, f16)> = None;
    for i in 0..=12 {
        let scale = f16::from_f64(m * (0.4 + 0.05 * i as f64) / levels as f64);
        if scale.to_f64().is_nan() || scale.to_f64() <= 0.0 || best.is_some_and(|(_, s)| s == scale) {
            continue;
        }
        let s = scale.to_f32();
        let mut sse = 0f64;
        for (&v, u) in x.iter().zip(trial.iter_mut()) {
            *u = (((v / s) as f64 + levels as f64) / 2.0).round().clamp(0.0, levels as f64) as i32; // NaN -> 0
            let x_hat = (2 * *u - levels) as f32 * s;
            sse += (v as f64 - x_hat as f64).powi(2);
        }
        if best.is_none_or(|(e, _)| sse < e) {
            best = Some((sse, scale));
            q.copy_from_slice(trial);
        }
    }
    match best {
        Some((_, scale)) => scale,
        None => {
            q.fill(0);
            f16::ZERO
        }
    }
}

/// Fills `q` with the nearest codes of `x` under `scale` and `min`; returns the squared error
/// of the f32 dequantization and whether every error is at most `scale / 2` (exact arithmetic).
fn codes(x: &[f32], scale: f16, min: f16, qmin: i32, qmax: i32, q: &mut [i32]) -> (f64, bool) {
    let (s, m) = (scale.to_f64(), min.to_f64());
    let (s32, m32) = (scale.to_f32(), min.to_f32());
    let (mut sse, mut valid) = (0f64, true);
    for (&v, q) in x.iter().zip(q.iter_mut()) {
        *q = ((v as f64 - m) / s).round().clamp(qmin as f64, qmax as f64) as i32; // NaN -> 0
        let x_hat = *q as f32 * s32 + m32;
        sse += (v as f64 - x_hat as f64).powi(2);
        valid &= (v as f64 - (*q as f64 * s + m)).abs() <= s / 2.0;
    }
    (sse, valid)
}

/// The f16 values bracketing `v` (clamped to f16's finite range): `(down, up)`, equal when f16
/// holds `v` exactly.
fn f16_bracket(v: f64) -> (f16, f16) {
    let v = v.clamp(-f16::MAX.to_f64(), f16::MAX.to_f64());
    let mut down = f16::from_f64(v); // nearest, possibly via f32: off by at most one step
    while down.to_f64() > v {
        down = -next_up(-down);
    }
    let mut up = down;
    while up.to_f64() < v {
        up = next_up(up);
    }
    (down, up)
}

/// The next f16 above a finite `h` below f16::MAX.
fn next_up(h: f16) -> f16 {
    let b = h.to_bits();
    f16::from_bits(match b {
        0x8000 => 0x0001,
        _ if b & 0x8000 != 0 => b - 1,
        _ => b + 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    const COLS: [usize; 6] = [1, 7, 33, 63, 65, 384];

    /// Column weights fit the asymmetric blocks to the weighted error: over many blocks, less
    /// weighted squared error than the unweighted fit, the heaviest column (an outlier channel,
    /// 1000 times the others) far more exact, the codes packed and unpacked as [`quantize`]'s
    /// (the stored values decode to the errors measured). Bad weights are an error; other
    /// schemes ignore them.
    #[test]
    fn weighted_blocks_fit_the_weighted_error() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let (n, cols) = (300, 40);
        let rows = Array2::from_shape_fn((n, cols), |_| rng.random_range(-1.0f32..1.0) * rng.random_range(0.1f32..2.0));
        let mut w = vec![1f32; cols];
        w[5] = 1000.0;
        let params = QuantParams { bits: Bits::B4, block: 16, scheme: Scheme::Asymmetric };
        let plain = dequantize(&quantize(rows.view(), &params).unwrap());
        let q = quantize_weighted(rows.view(), &params, Some(&w)).unwrap();
        assert_eq!((q.packed.dim(), q.scales.dim(), q.mins.as_ref().map(|m| m.dim())), ((n, 20), (n, 3), Some((n, 3))));
        let fitted = dequantize(&q);
        let weighted = |x: &Array2<f32>| -> f64 {
            x.rows().into_iter().zip(rows.rows()).map(|(a, b)| a.iter().zip(b).zip(&w).map(|((p, q), wt)| *wt as f64 * ((p - q) as f64).powi(2)).sum::<f64>()).sum()
        };
        assert!(weighted(&fitted) < 0.5 * weighted(&plain), "{} vs {}", weighted(&fitted), weighted(&plain));
        let column = |x: &Array2<f32>, c: usize| -> f64 { (0..n).map(|r| ((x[[r, c]] - rows[[r, c]]) as f64).abs()).sum::<f64>() / n as f64 };
        assert!(column(&fitted, 5) < 0.2 * column(&plain, 5), "{} vs {}", column(&fitted, 5), column(&plain, 5));
        // every value decodes finite
        assert!(fitted.iter().all(|v| v.is_finite()));
        // unweighted schemes: the same as quantize
        let sym = QuantParams { scheme: Scheme::Symmetric, ..params };
        assert_eq!(quantize_weighted(rows.view(), &sym, Some(&w)).unwrap().packed, quantize(rows.view(), &sym).unwrap().packed);
        // weights of the wrong length, negative or not finite
        for bad in [vec![1f32; cols - 1], { let mut b = w.clone(); b[0] = -1.0; b }, { let mut b = w.clone(); b[1] = f32::NAN; b }] {
            assert!(quantize_weighted(rows.view(), &params, Some(&bad)).is_err());
        }
    }

    fn all_params(block: usize) -> Vec<QuantParams> {
        let mut v = Vec::new();
        for bits in [Bits::B2, Bits::B4, Bits::B8] {
            for scheme in [Scheme::Symmetric, Scheme::Asymmetric] {
                v.push(QuantParams { bits, block, scheme });
            }
        }
        v
    }

    fn random_table(n: usize, cols: usize, seed: u64) -> Array2<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        Array2::from_shape_fn((n, cols), |(r, _)| {
            // rows of different magnitudes, some one-signed
            let mag = [1e-3f32, 0.05, 1.0, 30.0][r % 4];
            let shift = if r % 3 == 0 { 0.7 * mag } else { 0.0 };
            rng.random_range(-mag..mag) + shift
        })
    }

    /// Mid-rise codes: odd levels around zero, every value within one step of its level (or
    /// clipped beyond the top level), and at 2 bits less error than a scale and a minimum per
    /// block on normal-like rows, for fewer bytes.
    #[test]
    fn mid_rise_levels_and_error() {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let normal = |rng: &mut ChaCha8Rng| (0..12).map(|_| rng.random_range(-1.0f32..1.0)).sum::<f32>() * 0.5;
        let table = Array2::from_shape_fn((200, 384), |_| normal(&mut rng));
        let mid = QuantParams { bits: Bits::B2, block: 32, scheme: Scheme::MidRise };
        let asym = QuantParams { scheme: Scheme::Asymmetric, ..mid };
        let q = quantize(table.view(), &mid).unwrap();
        assert!(q.mins.is_none());
        for r in 0..q.rows() {
            for c in 0..q.cols {
                let code = q.code(r, c);
                assert!(code % 2 != 0 && (-3..=3).contains(&code), "{code}");
            }
        }
        let d = dequantize(&q);
        for ((r, c), &x) in table.indexed_iter() {
            let s = q.scales[[r, c / 32]].to_f32();
            let level = d[[r, c]];
            assert!((x - level).abs() <= s * 1.0001 || (x.abs() > 3.0 * s && level.abs() == 3.0 * s), "{x} {level} {s}");
        }
        let err = |d: &Array2<f32>| (&table - d).mapv(|v| (v as f64).powi(2)).sum().sqrt();
        let a = quantize(table.view(), &asym).unwrap();
        assert!(err(&d) < err(&dequantize(&a)), "{} vs {}", err(&d), err(&dequantize(&a)));
        assert!(q.bytes().total() < a.bytes().total());
        // a zero block stores a zero scale and dequantizes to zeros
        let zeros = quantize(Array2::<f32>::zeros((1, 40)).view(), &mid).unwrap();
        assert!(dequantize(&zeros).iter().all(|&v| v == 0.0));
    }

    /// Fitted levels: 2^bits of them, ascending, the largest magnitude 1; each value stored as
    /// a level times its block's f16 scale, exactly what [`dequantize`] gives; on bell-shaped
    /// rows less squared error than the symmetric scheme by the block maximum at the same
    /// width (the levels crowd where the values are); deterministic; zero and non-finite blocks
    /// store finite numbers; the levels' bytes counted.
    #[test]
    fn fitted_levels_beat_the_block_maximum() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let normal = |rng: &mut ChaCha8Rng| (0..12).map(|_| rng.random_range(-1.0f32..1.0)).sum::<f32>() * 0.5;
        let table = Array2::from_shape_fn((300, 384), |(r, _)| normal(&mut rng) * [0.02f32, 0.3, 4.0][r % 3]);
        let err = |d: &Array2<f32>| (&table - d).mapv(|v| (v as f64).powi(2)).sum();
        for bits in [Bits::B4, Bits::B2] {
            let p = QuantParams { bits, block: 32, scheme: Scheme::Levels };
            let q = quantize(table.view(), &p).unwrap();
            let levels = q.levels.clone().expect("levels stored");
            assert_eq!(levels.len(), 1 << bits.count());
            assert!(levels.windows(2).all(|w| w[0] < w[1]), "{levels:?}");
            assert_eq!(levels.iter().fold(0f32, |m, l| m.max(l.abs())), 1.0);
            let d = dequantize(&q);
            for ((r, c), &v) in d.indexed_iter() {
                let u = q.code(r, c);
                assert!((0..1 << bits.count()).contains(&u));
                assert_eq!(v.to_bits(), (levels[u as usize] * q.scales[[r, c / 32]].to_f32()).to_bits());
            }
            let sym = quantize(table.view(), &QuantParams { scheme: Scheme::Symmetric, ..p }).unwrap();
            assert!(err(&d) < 0.85 * err(&dequantize(&sym)), "{bits:?}: {} vs {}", err(&d), err(&dequantize(&sym)));
            assert_eq!(quantize(table.view(), &p).unwrap(), q, "deterministic");
            assert_eq!(q.bytes().levels, 4 << bits.count());
            assert_eq!(q.bytes().total(), sym.bytes().total() + (4 << bits.count()));
            let zeros = quantize(Array2::<f32>::zeros((2, 40)).view(), &p).unwrap();
            assert!(dequantize(&zeros).iter().all(|&v| v == 0.0));
            let odd = Array2::from_shape_vec((1, 4), vec![f32::NAN, f32::INFINITY, -1e30, 1.0]).unwrap();
            let q = quantize(odd.view(), &p).unwrap();
            assert!(q.scales.iter().all(|s| s.is_finite()) && dequantize(&q).iter().all(|v| v.is_finite()));
        }
    }

    #[test]
    fn levels_at_8_bits_are_refused() {
        let p = QuantParams { bits: Bits::B8, block: 32, scheme: Scheme::Levels };
        assert!(matches!(p.check(), Err(Error::InvalidParameter { param: Param::Bits, .. })));
        assert!(quantize(Array2::<f32>::zeros((2, 3)).view(), &p).is_err());
    }

    /// Packing a table of random codes and unpacking it gives the codes back.
    #[test]
    fn pack_unpack_exact() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for params in all_params(32) {
            let (qmin, qmax) = params.range();
            for cols in COLS {
                let n = 3;
                // a table whose quantization is known: one value at the block's extreme fixes
                // the scale to 1 (symmetric) or the min to 0 and the scale to 1 (asymmetric).
                let mut want = Array2::<i32>::zeros((n, cols));
                let mut table = Array2::<f32>::zeros((n, cols));
                for r in 0..n {
                    for c in 0..cols {
                        let q = if c % 32 == 0 {
                            if params.scheme == Scheme::Symmetric { qmax } else { 0 }
                        } else if c % 32 == 1 {
                            qmax
                        } else {
                            rng.random_range(qmin..=qmax)
                        };
                        want[[r, c]] = q;
                        table[[r, c]] = q as f32;
                    }
                }
                let quant = quantize(table.view(), &params).unwrap();
                assert_eq!(quant.packed.dim(), (n, (cols * params.bits.count()).div_ceil(8)));
                for r in 0..n {
                    for c in 0..cols {
                        assert_eq!(quant.code(r, c), want[[r, c]], "{params:?} cols {cols} [{r}, {c}]");
                    }
                }
                assert_eq!(dequantize(&quant), table, "{params:?} cols {cols}");
            }
        }
    }

    /// The byte layout itself: low nibble first, lowest bits first, int8 bit patterns, rows
    /// padded on their own with zero codes.
    #[test]
    fn byte_layout() {
        let sym = |bits| QuantParams { bits, block: 32, scheme: Scheme::Symmetric };
        let asym = |bits| QuantParams { bits, block: 32, scheme: Scheme::Asymmetric };
        // symmetric 4 bits, scale 1: codes q + 8
        let t = Array2::from_shape_vec((2, 3), vec![7.0, -8.0, 1.0, -1.0, 0.0, 7.0]).unwrap();
        let q = quantize(t.view(), &sym(Bits::B4)).unwrap();
        assert_eq!(q.packed.as_slice().unwrap(), &[0x0F, 0x09, 0x87, 0x0F]);
        // symmetric 8 bits: int8 bit patterns
        let t = Array2::from_shape_vec((1, 3), vec![127.0, -128.0, -1.0]).unwrap();
        let q = quantize(t.view(), &sym(Bits::B8)).unwrap();
        assert_eq!(q.packed.as_slice().unwrap(), &[0x7F, 0x80, 0xFF]);
        assert_eq!(q.scales[[0, 0]], f16::ONE);
        // asymmetric 2 bits, min 0 scale 1: codes as they are
        let t = Array2::from_shape_vec((1, 5), vec![0.0, 1.0, 2.0, 3.0, 3.0]).unwrap();
        let q = quantize(t.view(), &asym(Bits::B2)).unwrap();
        assert_eq!(q.packed.as_slice().unwrap(), &[0b11_10_01_00, 0b11]);
        assert_eq!((q.scales[[0, 0]], q.mins.as_ref().unwrap()[[0, 0]]), (f16::ONE, f16::ZERO));
    }

    #[test]
    fn error_within_half_a_scale() {
        for block in [1, 5, 32] {
            for params in all_params(block) {
                for cols in COLS {
                    let table = random_table(8, cols, cols as u64);
                    let quant = quantize(table.view(), &params).unwrap();
                    let approx = dequantize(&quant);
                    for ((r, c), &x) in table.indexed_iter() {
                        let s = quant.scales[[r, c / block]].to_f32();
                        let err = (x - approx[[r, c]]).abs();
                        // half a scale, plus the f32 rounding of the dequantization
                        let slack = 2.0 * f32::EPSILON * (x.abs() + s * 256.0);
                        assert!(
                            err <= s / 2.0 + slack,
                            "{params:?} cols {cols} [{r}, {c}]: {x} -> {} (scale {s})",
                            approx[[r, c]]
                        );
                        assert!(approx[[r, c]].is_finite());
                    }
                }
            }
        }
    }

    /// The errors are about what 2^bits levels give.
    #[test]
    fn relative_error_of_uniform_rows() {
        let table = random_table(64, 384, 7);
        for params in all_params(32) {
            let approx = dequantize(&quantize(table.view(), &params).unwrap());
            let (mut diff, mut norm) = (0f64, 0f64);
            for (a, b) in table.iter().zip(approx.iter()) {
                diff += ((a - b) as f64).powi(2);
                norm += (*a as f64).powi(2);
            }
            let rel = (diff / norm).sqrt();
            let bound = match params.bits {
                Bits::B8 => 0.01,
                Bits::B4 => 0.15,
                Bits::B2 => 0.7,
            };
            assert!(rel < bound, "{params:?}: relative error {rel}");
        }
    }

    /// A scale just above an f16 value is rounded down when that errs less, and up otherwise.
    #[test]
    fn scale_rounding_picks_the_better_side() {
        let p = QuantParams { bits: Bits::B8, block: 32, scheme: Scheme::Symmetric };
        let step = 1.0f64 / 128.0; // an f16 value; the next one up is step * (1 + 2^-10)
        for (excess, want) in [(1e-4, step), (9e-4, step * (1.0 + 1.0 / 1024.0))] {
            let x = (127.0 * step * (1.0 + excess)) as f32;
            let t = Array2::from_shape_vec((1, 2), vec![x, 0.0]).unwrap();
            let q = quantize(t.view(), &p).unwrap();
            assert_eq!(q.scales[[0, 0]].to_f64(), want, "excess {excess}");
        }
    }

    #[test]
    fn zero_and_constant_rows() {
        for params in all_params(32) {
            for cols in COLS {
                let zeros = Array2::<f32>::zeros((2, cols));
                let q = quantize(zeros.view(), &params).unwrap();
                assert!(q.scales.iter().all(|&s| s == f16::ZERO), "{params:?}");
                assert_eq!(dequantize(&q), zeros, "{params:?}");
                // representable and unrepresentable constants, both signs
                for v in [0.5f32, -3.0, 0.1, -0.3, 1e-6] {
                    let t = Array2::<f32>::from_elem((2, cols), v);
                    let q = quantize(t.view(), &params).unwrap();
                    let approx = dequantize(&q);
                    for (r, row) in approx.rows().into_iter().enumerate() {
                        for (c, &a) in row.iter().enumerate() {
                            let s = q.scales[[r, c / 32]].to_f32();
                            assert!((a - v).abs() <= s / 2.0 + 4.0 * f32::EPSILON * v.abs(), "{params:?} {v} -> {a}");
                        }
                    }
                    if params.scheme == Scheme::Asymmetric && v == 0.5 {
                        assert!(q.scales.iter().all(|&s| s == f16::ZERO)); // min holds it exactly
                        assert_eq!(approx, t);
                    }
                }
            }
        }
    }

    #[test]
    fn non_finite_inputs_store_finite_numbers() {
        let t = Array2::from_shape_vec((1, 4), vec![f32::NAN, f32::INFINITY, -1e30, 1.0]).unwrap();
        for params in all_params(2) {
            let q = quantize(t.view(), &params).unwrap();
            assert!(q.scales.iter().chain(q.mins.iter().flatten()).all(|s| s.is_finite()), "{params:?}");
            assert!(dequantize(&q).iter().all(|v| v.is_finite()), "{params:?}");
        }
        let nan = Array2::from_elem((1, 3), f32::NAN);
        for params in all_params(32) {
            assert!(dequantize(&quantize(nan.view(), &params).unwrap()).iter().all(|v| v.is_finite()));
        }
    }

    #[test]
    fn byte_counts_exact() {
        for params in all_params(32) {
            for cols in COLS {
                let q = quantize(random_table(5, cols, 3).view(), &params).unwrap();
                let bytes = q.bytes();
                assert_eq!(bytes.packed, q.packed.len() as u64);
                assert_eq!(bytes.packed, 5 * (cols * params.bits.count()).div_ceil(8) as u64);
                assert_eq!(bytes.scales, 2 * q.scales.len() as u64);
                assert_eq!(bytes.scales, 2 * 5 * cols.div_ceil(32) as u64);
                assert_eq!(bytes.mins, 2 * q.mins.as_ref().map_or(0, |m| m.len()) as u64);
                assert_eq!(bytes.mins == 0, params.scheme == Scheme::Symmetric);
                assert_eq!(bytes.total(), bytes.packed + bytes.scales + bytes.mins);
            }
        }
        // 30522 x 384 at 4 bits, block 32, symmetric: 14.1% of the f32 table
        let p = QuantParams { bits: Bits::B4, block: 32, scheme: Scheme::Symmetric };
        let b = p.bytes(30522, 384);
        assert_eq!((b.packed, b.scales, b.mins), (30522 * 192, 30522 * 24, 0));
        assert!(((b.total() as f64 / (30522.0 * 384.0 * 4.0)) - 0.1406).abs() < 1e-3);
    }

    #[test]
    fn bad_params_rejected() {
        let p = QuantParams { bits: Bits::B4, block: 0, scheme: Scheme::Symmetric };
        let e = p.check().unwrap_err();
        assert!(matches!(e, Error::InvalidParameter { param: Param::Block, .. }), "{e}");
        assert!(quantize(Array2::<f32>::zeros((2, 3)).view(), &p).is_err());
        for bits in [0, 1, 3, 16] {
            assert!(matches!(Bits::new(bits), Err(Error::InvalidParameter { param: Param::Bits, .. })));
        }
        assert_eq!(Bits::new(4).unwrap(), Bits::B4);
    }

    #[test]
    fn rows_pick_rows() {
        let table = random_table(6, 33, 9);
        for params in all_params(32) {
            let q = quantize(table.view(), &params).unwrap();
            let all = dequantize(&q);
            let some = dequantize_rows(&q, &[5, 0, 5]);
            for (i, &id) in [5, 0, 5].iter().enumerate() {
                assert_eq!(some.row(i), all.row(id));
            }
        }
    }

    #[test]
    fn f16_bracket_brackets() {
        for v in [0.0, 1.0, 0.1, -0.1, 1e-9, -1e-9, 6e-8, 65504.0, 1e6, -1e6, 3.0e-5] {
            let (d, u) = f16_bracket(v);
            let c = v.clamp(-65504.0, 65504.0);
            assert!(d.to_f64() <= c && c <= u.to_f64(), "{v}: {d} {u}");
            assert!(d == u || next_up(d) == u || (d.to_f64() == 0.0 && u.to_bits() == 1), "{v}: {d} {u}");
        }
    }
}
