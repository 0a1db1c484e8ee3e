//! Product codes: each row of `cols` values is cut into `m = ceil(cols / sub)` sub-vectors of
//! `sub` values (the last one padded with zeros when `sub` does not divide `cols`), and each
//! sub-vector is stored as the one-byte index of the nearest of `codewords` (at most 256)
//! codewords fitted for its position. No ONNX here; `rewrite::coded` emits the lookup, which
//! computes bit for bit what [`ProductCodes::decode_rows`] computes.
//!
//! Stored, for `n` rows (see [`CodeParams::bytes`]):
//!
//! | part | shape | type | bytes |
//! |---|---|---|---|
//! | codes | `[n, m]` | uint8 | `n·m` |
//! | codebook | `[m·codewords, sub]` (position p's codeword c is row `p·codewords + c`) | int8 | `m·codewords·sub` |
//! | codebook scales | `[m, sub]`: one per position and value | f32 | `4·m·sub` |
//!
//! A codeword's value is its int8 code times its position's and column's scale (the largest
//! magnitude of that column of the position's codewords over 127), computed in f32 as the lookup
//! does. The codebook in int8 is half of f16's (on a 30522 x 384 table in codes of 6 values, 98 KiB
//! and 1.5 KiB of scales instead of 192 KiB), and its rounding is far below the codes': each
//! value within half a step of 1/127 of its column's largest, where a code errs by about a third
//! of the row.
//! Padding columns are stored in the codebook (they are zero-padded rows' values, fitted like
//! the others), and the lookup drops them.
//!
//! The fit: per position, a weighted k-means (weights are the rows', e.g. token frequencies:
//! the fit minimises `Σ w_i |x_i - x̂_i|²`): k-means++ seeding (each new codeword drawn with
//! probability proportional to `w · D²`), then Lloyd iterations, first `iters` on a seeded
//! sample of `sample_rows` rows (seeded on `16·codewords` of them; with weights, rows drawn in
//! proportion to them, with replacement, each weighing the times it was drawn), then `polish` on
//! all rows; the codewords are then rounded to int8 and every row is coded with its nearest
//! stored codeword (ties to the lowest index). A codeword left without weight is moved to the row of
//! largest weighted error. Positions are fitted in parallel, each from its own stream of the
//! seed, and the nearest-codeword search runs the same f32 operations with or without AVX2, so
//! the result depends only on the rows, the weights and the parameters (not on the thread count
//! or the CPU).
//!
//! Measured on all-MiniLM-L6-v2's table (30522 x 384, defaults, `codes::tests::real_table`,
//! with the f16 codebook of earlier rounds, 6.7% of the fp32 table; 6.5% with int8):
//! relative Frobenius error 0.308, where 2-bit mid-rise rows (block 32) err 0.328 for 7.8%;
//! fitted with sqrt-count weights, weighted error 0.283 against 0.341. The same codes of the
//! rows in their principal axes (`Layout::rotated_coded_branch`, `--codes N --rotate`, f16
//! basis): 0.266 for 7.3% (weighted fit: weighted 0.243).

use ndarray::{Array2, ArrayView2};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::error::{Error, Param, Result};

/// The default number of values per sub-vector.
pub const DEFAULT_SUB: usize = 4;

/// The most codewords per position: codes are one byte.
pub const MAX_CODEWORDS: usize = 256;

/// How rows are coded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CodeParams {
    /// Values per sub-vector (default 4). When it does not divide the rows' length, the last
    /// sub-vector is padded with zeros.
    pub sub: usize,
    /// Codewords per position, 1 to 256 (default 256).
    pub codewords: usize,
    /// Lloyd iterations on the sample (default 20; fewer when the assignment stops changing).
    pub iters: usize,
    /// Lloyd iterations on all rows after those (default 1).
    pub polish: usize,
    /// Rows the first `iters` iterations run on (default 32768; the seeding runs on
    /// `16·codewords` of them); 0, or more than the rows, for all rows (then `polish` is
    /// skipped).
    pub sample_rows: usize,
    /// Seed of the seeding and the sample.
    pub seed: u64,
}

impl Default for CodeParams {
    fn default() -> Self {
        CodeParams { sub: DEFAULT_SUB, codewords: MAX_CODEWORDS, iters: 20, polish: 1, sample_rows: 32768, seed: 0 }
    }
}

/// Bytes of the parts of a coded table: what its initializers hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodeBytes {
    /// The codes, one byte per row and position.
    pub codes: u64,
    /// The int8 codebook and its f32 scales.
    pub codebook: u64,
}

impl CodeBytes {
    /// Bytes in all.
    pub fn total(&self) -> u64 {
        self.codes + self.codebook
    }
}

impl CodeParams {
    /// Sub-vectors (positions) per row of `cols` values.
    pub fn positions(&self, cols: usize) -> usize {
        cols.div_ceil(self.sub)
    }

    /// Bytes `n` rows of `cols` values take coded: `n·m` bytes of codes, the codebook's
    /// ([`codebook_bytes`]).
    pub fn bytes(&self, n: usize, cols: usize) -> CodeBytes {
        let m = self.positions(cols);
        CodeBytes { codes: (n * m) as u64, codebook: codebook_bytes(m, m * self.codewords, self.sub) }
    }

    /// An error naming the parameter at fault when these parameters cannot code `n` rows of
    /// `cols` values.
    pub fn check(&self, n: usize, cols: usize) -> Result<()> {
        let invalid = |param, reason: String| Err(Error::InvalidParameter { param, reason });
        if self.sub == 0 {
            return invalid(Param::SubVector, "0; a sub-vector holds at least one value".into());
        }
        if cols == 0 {
            return Err(Error::Unsupported("coding rows of 0 values".into()));
        }
        if self.sub > cols {
            return invalid(Param::SubVector, format!("{}; longer than the rows' {cols} values", self.sub));
        }
        if self.codewords == 0 || self.codewords > MAX_CODEWORDS {
            return invalid(
                Param::Codewords,
                format!("{}; codes are one byte: give 1 to {MAX_CODEWORDS} codewords", self.codewords),
            );
        }
        if self.codewords > n {
            return invalid(
                Param::Codewords,
                format!("{} codewords for {n} rows: more codewords than rows; give at most {n}", self.codewords),
            );
        }
        if self.sample_rows != 0 && self.sample_rows < self.codewords && self.sample_rows < n {
            return invalid(
                Param::SampleRows,
                format!("{} rows sampled for {} codewords; sample at least as many rows as codewords", self.sample_rows, self.codewords),
            );
        }
        // The lookup indexes the flattened codebook (and its zero codeword) in int32.
        if self.positions(cols) * self.codewords >= i32::MAX as usize {
            return Err(Error::Unsupported(format!("a codebook of {} x {} codewords", self.positions(cols), self.codewords)));
        }
        Ok(())
    }
}

/// A table `[n, cols]` as product codes.
#[derive(Debug, Clone, PartialEq)]
pub struct ProductCodes {
    /// `[n, m]`: the codeword of each row at each position.
    pub codes: Array2<u8>,
    /// `[m·codewords, sub]`: position p's codeword c is row `p·codewords + c`, in units of
    /// its column's scale.
    pub codebook: Array2<i8>,
    /// `[m, sub]`: the scale of each position's codewords' each value.
    pub scales: Array2<f32>,
    /// Codewords per position.
    pub codewords: usize,
    /// Values per row (the last sub-vector's padding dropped).
    pub cols: usize,
}

impl ProductCodes {
    /// Rows coded.
    pub fn rows(&self) -> usize {
        self.codes.nrows()
    }

    /// Sub-vectors per row.
    pub fn positions(&self) -> usize {
        self.codes.ncols()
    }

    /// Values per sub-vector.
    pub fn sub(&self) -> usize {
        self.codebook.ncols()
    }

    /// Bytes of each part: what the initializers hold.
    pub fn bytes(&self) -> CodeBytes {
        CodeBytes { codes: self.codes.len() as u64, codebook: codebook_bytes(self.positions(), self.codebook.nrows(), self.sub()) }
    }

    /// Codeword `c` of position `p`, as f32: its int8 values times their scales.
    fn word(&self, p: usize, c: usize) -> impl Iterator<Item = f32> + '_ {
        self.codebook.row(p * self.codewords + c).into_iter().zip(self.scales.row(p)).map(|(&q, &s)| value(q, s))
    }

    /// The decoded rows `ids`, `[ids.len(), cols]`: each row's codewords, as f32. Panics on an
    /// id past the table.
    pub fn decode_rows(&self, ids: &[usize]) -> Array2<f32> {
        let (sub, cols) = (self.sub(), self.cols);
        let mut out = Array2::<f32>::zeros((ids.len(), cols));
        for (mut o, &id) in out.rows_mut().into_iter().zip(ids) {
            for (p, &c) in self.codes.row(id).iter().enumerate() {
                for (j, v) in self.word(p, c as usize).enumerate().take(cols - (p * sub).min(cols)) {
                    o[p * sub + j] = v;
                }
            }
        }
        out
    }

    /// The decoded table `[n, cols]`.
    pub fn decode(&self) -> Array2<f32> {
        self.decode_rows(&(0..self.rows()).collect::<Vec<_>>())
    }

    /// The codes `[rows, m]` of `rows` `[rows, cols]` under this codebook: at each position the
    /// nearest codeword (ties to the lowest index). `threads` as for [`fit`].
    pub fn encode(&self, rows: ArrayView2<f32>, threads: usize) -> Result<Array2<u8>> {
        if rows.ncols() != self.cols {
            return Err(Error::Unsupported(format!("coding rows of {} values with a codebook for {}", rows.ncols(), self.cols)));
        }
        let (m, sub, k) = (self.positions(), self.sub(), self.codewords);
        let per_position = |p: usize| {
            let words: Vec<f32> = (0..k).flat_map(|c| self.word(p, c)).collect();
            Centroids::new(&words, k, sub).assign_all(&position_values(rows, p, sub)).0
        };
        let codes = map_positions(m, threads, per_position);
        Ok(gather_codes(rows.nrows(), codes))
    }
}

/// Fits product codes to `rows` `[n, cols]` (see the module doc), weighted by `weights` (`[n]`,
/// non-negative, finite, not all zero) when given. `threads`: 1 runs sequentially, any other
/// value fits positions in parallel on rayon's current pool; the result is the same.
pub fn fit(rows: ArrayView2<f32>, weights: Option<&[f32]>, params: &CodeParams, threads: usize) -> Result<ProductCodes> {
    let (n, cols) = rows.dim();
    params.check(n, cols)?;
    if let Some(w) = weights {
        check_weights(w, n)?;
    }
    let (m, sub, k) = (params.positions(cols), params.sub, params.codewords);
    let fitted = map_positions(m, threads, |p| {
        let x = position_values(rows, p, sub);
        let mut rng = ChaCha8Rng::seed_from_u64(params.seed);
        rng.set_stream(p as u64);
        let words = fit_position(&x, sub, weights, params, &mut rng);
        // Rows are coded against the codewords as stored.
        let (stored, scales) = to_int8(&words, sub);
        let rounded: Vec<f32> = stored.chunks_exact(sub).flat_map(|w| w.iter().zip(&scales).map(|(&q, &s)| value(q, s))).collect();
        let (codes, _) = Centroids::new(&rounded, k, sub).assign_all(&x);
        (stored, scales, codes)
    });
    let mut codebook = Vec::with_capacity(m * k * sub);
    let mut scales = Vec::with_capacity(m * sub);
    let mut codes = Vec::with_capacity(m);
    for (words, s, c) in fitted {
        codebook.extend(words);
        scales.extend(s);
        codes.push(c);
    }
    Ok(ProductCodes {
        codes: gather_codes(n, codes),
        codebook: Array2::from_shape_vec((m * k, sub), codebook).expect("m·k codewords of sub values"),
        scales: Array2::from_shape_vec((m, sub), scales).expect("m positions of sub scales"),
        codewords: k,
        cols,
    })
}

/// Bytes of a codebook of `words` codewords (all positions', a zero codeword included) of `sub`
/// values for `m` positions: int8 values and an f32 scale per position and value.
pub(crate) fn codebook_bytes(m: usize, words: usize, sub: usize) -> u64 {
    (words * sub + 4 * m * sub) as u64
}

/// A stored codeword value: its int8 code times its scale, in f32 (as the lookup's Cast and Mul).
fn value(q: i8, scale: f32) -> f32 {
    q as f32 * scale
}

/// Codewords `[k, sub]` (f32, row-major) in int8, each column in units of its scale (its largest
/// magnitude over 127; 0 for a column of zeros, and non-finite values as 0): the values and the
/// `sub` scales.
fn to_int8(words: &[f32], sub: usize) -> (Vec<i8>, Vec<f32>) {
    let finite = |v: f32| if v.is_finite() { v } else { 0.0 };
    let scales: Vec<f32> = (0..sub)
        .map(|j| words.iter().skip(j).step_by(sub).fold(0f32, |m, &v| m.max(finite(v).abs())) / 127.0)
        .map(|s| if s.is_finite() { s } else { f32::MAX / 127.0 })
        .collect();
    let values = words
        .chunks_exact(sub)
        .flat_map(|w| w.iter().zip(&scales).map(|(&v, &s)| if s > 0.0 { (finite(v) / s).round().clamp(-127.0, 127.0) as i8 } else { 0 }))
        .collect();
    (values, scales)
}

/// Weights of `n` rows, checked.
fn check_weights(w: &[f32], n: usize) -> Result<()> {
    let invalid = |reason| Err(Error::InvalidParameter { param: Param::Weights, reason });
    if w.len() != n {
        return invalid(format!("{} weights for {n} rows", w.len()));
    }
    if let Some((i, v)) = w.iter().enumerate().find(|(_, v)| !(v.is_finite() && **v >= 0.0)) {
        return invalid(format!("weight {v} of row {i} is not a finite non-negative number"));
    }
    if w.iter().all(|&v| v == 0.0) {
        return invalid("every weight is zero".into());
    }
    Ok(())
}

/// `f(p)` for every position `p < m`, in order: sequentially when `threads` is 1, else on
/// rayon's current pool.
fn map_positions<T: Send>(m: usize, threads: usize, f: impl Fn(usize) -> T + Sync + Send) -> Vec<T> {
    match threads {
        1 => (0..m).map(f).collect(),
        _ => (0..m).into_par_iter().map(f).collect(),
    }
}

/// The codes `[n, m]` from each position's `[n]` codes.
fn gather_codes(n: usize, per_position: Vec<Vec<u8>>) -> Array2<u8> {
    let m = per_position.len();
    Array2::from_shape_fn((n, m), |(r, p)| per_position[p][r])
}

/// Position `p`'s sub-vectors of `rows`, `[n, sub]` row-major, zero-padded past the row's end.
fn position_values(rows: ArrayView2<f32>, p: usize, sub: usize) -> Vec<f32> {
    let cols = rows.ncols();
    let mut x = vec![0f32; rows.nrows() * sub];
    for (row, dst) in rows.rows().into_iter().zip(x.chunks_exact_mut(sub)) {
        for (j, d) in dst.iter_mut().enumerate().take(cols - (p * sub).min(cols)) {
            *d = row[p * sub + j];
        }
    }
    x
}

/// One position's codewords `[k, sub]` (f32, row-major), fitted to its sub-vectors `x` `[n, sub]`.
fn fit_position<R: Rng>(x: &[f32], sub: usize, weights: Option<&[f32]>, params: &CodeParams, rng: &mut R) -> Vec<f32> {
    let n = x.len() / sub;
    let k = params.codewords;
    let sampled = params.sample_rows != 0 && params.sample_rows < n;
    // Samples: unweighted, `rows` distinct rows; weighted, `rows` draws with replacement in
    // proportion to the weights, each drawn row weighing the times it was drawn (so that the
    // sample's objective estimates the weighted one, heavy rows all in it). Returns the rows'
    // values `[rows, sub]` and weights.
    let cumulative: Option<Vec<f64>> = weights.map(|w| {
        w.iter()
            .scan(0f64, |acc, &v| {
                *acc += v as f64;
                Some(*acc)
            })
            .collect()
    });
    let sample = |rng: &mut R, rows: usize| -> (Vec<f32>, Option<Vec<f32>>) {
        let (idx, ws) = match &cumulative {
            None => {
                let mut idx = rand::seq::index::sample(rng, n, rows).into_vec();
                idx.sort_unstable();
                (idx, None)
            }
            Some(c) => {
                let total = c[n - 1];
                let mut drawn: Vec<usize> = (0..rows)
                    .map(|_| {
                        let u = rng.random::<f64>() * total;
                        c.partition_point(|&v| v <= u).min(n - 1)
                    })
                    .collect();
                drawn.sort_unstable();
                let (mut idx, mut counts) = (Vec::new(), Vec::<f32>::new());
                for i in drawn {
                    match idx.last() {
                        Some(&last) if last == i => *counts.last_mut().expect("a count per row") += 1.0,
                        _ => {
                            idx.push(i);
                            counts.push(1.0);
                        }
                    }
                }
                (idx, Some(counts))
            }
        };
        (idx.iter().flat_map(|&i| x[i * sub..(i + 1) * sub].iter().copied()).collect(), ws)
    };
    // Seeding costs a pass over its rows per codeword: it runs on fewer rows.
    let seed_rows = SEED_ROWS_PER_CODEWORD * k;
    let seeded = if seed_rows < n {
        let (xs, ws) = sample(rng, seed_rows);
        seed(&xs, sub, k, ws.as_deref(), rng)
    } else {
        seed(x, sub, k, weights, rng)
    };
    let mut words = if sampled {
        let (xs, ws) = sample(rng, params.sample_rows);
        lloyd(&xs, sub, ws.as_deref(), seeded, params.iters)
    } else {
        lloyd(x, sub, weights, seeded, params.iters)
    };
    if sampled {
        words = lloyd(x, sub, weights, words, params.polish);
    }
    words
}

/// Rows per codeword the seeding runs on (a seeded sample; the Lloyd iterations that follow run
/// on `sample_rows` rows, then on all).
const SEED_ROWS_PER_CODEWORD: usize = 16;

/// k-means++ seeding of `k` codewords among the rows of `x` `[n, sub]` (n >= k): the first drawn
/// with probability proportional to the weight, each next one proportional to `w · D²` (D the
/// distance to the nearest codeword drawn so far); uniformly when that is zero everywhere.
fn seed(x: &[f32], sub: usize, k: usize, weights: Option<&[f32]>, rng: &mut impl Rng) -> Vec<f32> {
    let n = x.len() / sub;
    let ones;
    let w = match weights {
        Some(w) => w,
        None => {
            ones = vec![1f32; n];
            &ones
        }
    };
    let mut d2 = vec![f32::INFINITY; n];
    let mut words = Vec::with_capacity(k * sub);
    let total: f64 = w.iter().map(|&v| v as f64).sum();
    let mut pick = draw(rng, total, n, |i| w[i] as f64);
    for step in 0..k {
        let word = &x[pick * sub..(pick + 1) * sub];
        words.extend_from_slice(word);
        if step + 1 == k {
            break;
        }
        let mut total = 0f64;
        for ((row, d), &wi) in x.chunks_exact(sub).zip(d2.iter_mut()).zip(w) {
            let nd: f32 = row.iter().zip(word).map(|(a, b)| (a - b) * (a - b)).sum();
            if nd < *d {
                *d = nd;
            }
            total += (wi * *d) as f64;
        }
        pick = draw(rng, total, n, |i| (w[i] * d2[i]) as f64);
    }
    words
}

/// An index below `n` drawn with probability `mass(i) / total` (`total` their sum); uniformly
/// when the total is not a positive finite number.
fn draw(rng: &mut impl Rng, total: f64, n: usize, mass: impl Fn(usize) -> f64) -> usize {
    if !(total > 0.0 && total.is_finite()) {
        return rng.random_range(0..n);
    }
    let mut u = rng.random::<f64>() * total;
    let mut last = 0;
    for i in 0..n {
        let m = mass(i);
        if m > 0.0 {
            u -= m;
            last = i;
            if u < 0.0 {
                return i;
            }
        }
    }
    last // rounding left some of u: the last row of any mass
}

fn squared_distance(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&a, &b)| ((a - b) as f64).powi(2)).sum()
}

/// Up to `iters` weighted Lloyd iterations of the codewords `words` `[k, sub]` on `x` `[n, sub]`;
/// stops early when the assignment no longer changes.
fn lloyd(x: &[f32], sub: usize, weights: Option<&[f32]>, mut words: Vec<f32>, iters: usize) -> Vec<f32> {
    let k = words.len() / sub;
    let mut previous: Option<Vec<u8>> = None;
    for _ in 0..iters {
        let (assignment, d2) = Centroids::new(&words, k, sub).assign_all(x);
        if previous.as_ref() == Some(&assignment) {
            break;
        }
        let w = |i: usize| weights.map_or(1.0, |w| w[i] as f64);
        let mut sums = vec![0f64; k * sub];
        let mut mass = vec![0f64; k];
        for (i, (row, &c)) in x.chunks_exact(sub).zip(&assignment).enumerate() {
            let (wi, c) = (w(i), c as usize);
            mass[c] += wi;
            for (s, &v) in sums[c * sub..(c + 1) * sub].iter_mut().zip(row) {
                *s += wi * v as f64;
            }
        }
        // Codewords without weight move to the rows of largest weighted error, one each.
        let empty: Vec<usize> = (0..k).filter(|&c| mass[c] <= 0.0).collect();
        let mut donors: Vec<(f64, usize)> = Vec::new();
        if !empty.is_empty() {
            donors = d2.iter().enumerate().map(|(i, &d)| (w(i) * d as f64, i)).filter(|&(e, _)| e > 0.0).collect();
            donors.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        }
        let mut donors = donors.into_iter();
        for c in 0..k {
            let word = &mut words[c * sub..(c + 1) * sub];
            if mass[c] > 0.0 {
                for (v, s) in word.iter_mut().zip(&sums[c * sub..(c + 1) * sub]) {
                    *v = (s / mass[c]) as f32;
                }
            } else if let Some((_, i)) = donors.next() {
                word.copy_from_slice(&x[i * sub..(i + 1) * sub]);
            }
        }
        previous = Some(assignment);
    }
    words
}

/// Codewords laid out for the nearest-codeword search: `|c|² - 2 x·c` for every codeword at
/// once, a position's values vectorised over the codewords, [`BLOCK`] codewords at a time held
/// in registers.
struct Centroids {
    sub: usize,
    /// `[padded / BLOCK, sub]` blocks: `-2 c_j` of the block's codewords, for each value j
    /// (0 for padding).
    neg2t: Vec<[f32; BLOCK]>,
    /// `[padded / BLOCK]` blocks: `|c|²` (+∞ for padding, never nearest).
    norms: Vec<[f32; BLOCK]>,
}

/// The smallest of the lanes' `best` values and its codeword `at`, the lowest codeword among
/// equal values.
fn first_smallest(best: &[f32; LANES], at: &[u32; LANES]) -> (u32, f32) {
    let (mut c, mut d) = (at[0], best[0]);
    for l in 1..LANES {
        if best[l] < d || (best[l] == d && at[l] < c) {
            (c, d) = (at[l], best[l]);
        }
    }
    (c, d)
}

/// Codewords per block of the search.
const BLOCK: usize = 32;
/// Lanes of the running minimum.
const LANES: usize = 8;

impl Centroids {
    /// From codewords `[k, sub]`, row-major.
    fn new(words: &[f32], k: usize, sub: usize) -> Centroids {
        let padded = k.div_ceil(BLOCK) * BLOCK;
        let mut neg2t = vec![[0f32; BLOCK]; padded / BLOCK * sub];
        let mut norms = vec![[f32::INFINITY; BLOCK]; padded / BLOCK];
        for (c, word) in words.chunks_exact(sub).enumerate() {
            let (b, l) = (c / BLOCK, c % BLOCK);
            for (j, &v) in word.iter().enumerate() {
                neg2t[b * sub + j][l] = -2.0 * v;
            }
            norms[b][l] = word.iter().map(|v| v * v).sum();
        }
        Centroids { sub, neg2t, norms }
    }

    /// The nearest codeword of every row of `x` `[n, sub]` (the first of equally near ones) and
    /// its squared distance. Runs the same f32 operations in the same order with or without
    /// AVX2, so the result does not depend on the machine.
    fn assign_all(&self, x: &[f32]) -> (Vec<u8>, Vec<f32>) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, checked just above.
            return unsafe { self.assign_all_avx2(x) };
        }
        self.assign_all_portable(x)
    }

    /// [`Centroids::assign_all_portable`] in AVX2 intrinsics (the compiler leaves the running
    /// minimum's index scalar): the same operations in the same order, so the same bits.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn assign_all_avx2(&self, x: &[f32]) -> (Vec<u8>, Vec<f32>) {
        use std::arch::x86_64::*;
        const GROUPS: usize = BLOCK / LANES;
        let n = x.len() / self.sub;
        let (mut codes, mut d2) = (Vec::with_capacity(n), Vec::with_capacity(n));
        let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        let load = |a: &[f32; BLOCK], g: usize| {
            // SAFETY: g < GROUPS, so the 8 values read lie within the BLOCK-long array.
            unsafe { _mm256_loadu_ps(a.as_ptr().add(g * LANES)) }
        };
        for row in x.chunks_exact(self.sub) {
            let mut best = _mm256_set1_ps(f32::INFINITY);
            let mut at = _mm256_setzero_si256();
            for (b, (norms, cols)) in self.norms.iter().zip(self.neg2t.chunks_exact(self.sub)).enumerate() {
                let mut acc: [__m256; GROUPS] = std::array::from_fn(|g| load(norms, g));
                for (col, &v) in cols.iter().zip(row) {
                    let v = _mm256_set1_ps(v);
                    for (g, a) in acc.iter_mut().enumerate() {
                        *a = _mm256_add_ps(*a, _mm256_mul_ps(v, load(col, g)));
                    }
                }
                for (g, &a) in acc.iter().enumerate() {
                    let better = _mm256_cmp_ps::<_CMP_LT_OQ>(a, best);
                    best = _mm256_blendv_ps(best, a, better);
                    let index = _mm256_add_epi32(_mm256_set1_epi32((b * BLOCK + g * LANES) as i32), lane);
                    at = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(at), _mm256_castsi256_ps(index), better));
                }
            }
            let (mut lanes_best, mut lanes_at) = ([0f32; LANES], [0u32; LANES]);
            // SAFETY: both arrays hold 8 values of 4 bytes.
            unsafe {
                _mm256_storeu_ps(lanes_best.as_mut_ptr(), best);
                _mm256_storeu_si256(lanes_at.as_mut_ptr().cast(), at);
            }
            let (c, d) = first_smallest(&lanes_best, &lanes_at);
            codes.push(c as u8);
            d2.push((d + row.iter().map(|v| v * v).sum::<f32>()).max(0.0));
        }
        (codes, d2)
    }

    /// The nearest codewords, portably: per lane of [`LANES`], the smallest distance and the
    /// first codeword at it, then the smallest of the lanes (the first codeword among equals).
    fn assign_all_portable(&self, x: &[f32]) -> (Vec<u8>, Vec<f32>) {
        let n = x.len() / self.sub;
        let (mut codes, mut d2) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for row in x.chunks_exact(self.sub) {
            let mut best = [f32::INFINITY; LANES];
            let mut at = [0u32; LANES];
            for (b, (norms, cols)) in self.norms.iter().zip(self.neg2t.chunks_exact(self.sub)).enumerate() {
                let mut acc = *norms;
                for (col, &v) in cols.iter().zip(row) {
                    for l in 0..BLOCK {
                        acc[l] += v * col[l];
                    }
                }
                for (g, group) in acc.chunks_exact(LANES).enumerate() {
                    let base = (b * BLOCK + g * LANES) as u32;
                    for l in 0..LANES {
                        let better = group[l] < best[l];
                        best[l] = if better { group[l] } else { best[l] };
                        at[l] = if better { base + l as u32 } else { at[l] };
                    }
                }
            }
            let (c, d) = first_smallest(&best, &at);
            codes.push(c as u8);
            d2.push((d + row.iter().map(|v| v * v).sum::<f32>()).max(0.0));
        }
        (codes, d2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows near 8 prototype rows, each value with its own noise, `[n, cols]`.
    fn table(n: usize, cols: usize, seed: u64) -> Array2<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let protos: Vec<f32> = (0..8 * cols).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        let of_row: Vec<usize> = (0..n).map(|_| rng.random_range(0..8)).collect();
        Array2::from_shape_fn((n, cols), |(r, c)| protos[of_row[r] * cols + c] + 0.05 * rng.random_range(-1.0f32..1.0))
    }

    fn params(codewords: usize) -> CodeParams {
        CodeParams { codewords, sample_rows: 0, ..CodeParams::default() }
    }

    fn error(a: &Array2<f32>, b: &Array2<f32>, weights: Option<&[f32]>) -> f64 {
        a.rows()
            .into_iter()
            .zip(b.rows())
            .enumerate()
            .map(|(i, (a, b))| weights.map_or(1.0, |w| w[i] as f64) * squared_distance(a.as_slice().unwrap(), b.as_slice().unwrap()))
            .sum()
    }

    #[test]
    fn decode_is_the_chosen_codewords() {
        let t = table(300, 10, 1); // 10 = 2·4 + 2: the last sub-vector padded
        let pc = fit(t.view(), None, &params(16), 1).unwrap();
        assert_eq!((pc.rows(), pc.positions(), pc.sub(), pc.codebook.nrows()), (300, 3, 4, 48));
        let decoded = pc.decode();
        for r in 0..300 {
            for p in 0..3 {
                let word = pc.codebook.row(p * 16 + pc.codes[[r, p]] as usize);
                for j in 0..4 {
                    if p * 4 + j < 10 {
                        let want = word[j] as f32 * pc.scales[[p, j]];
                        assert_eq!(decoded[[r, p * 4 + j]].to_bits(), want.to_bits(), "row {r} col {}", p * 4 + j);
                    }
                }
            }
        }
        // each column of a position's codewords spans the int8 range: its scale is its largest
        // magnitude over 127 (the padding's column, all zeros, has scale 0)
        for p in 0..3 {
            for j in 0..4 {
                let largest = (0..16).map(|c| pc.codebook[[p * 16 + c, j]].unsigned_abs()).max().unwrap();
                match p * 4 + j < 10 {
                    true => assert_eq!(largest, 127, "position {p} column {j}"),
                    false => assert_eq!((largest, pc.scales[[p, j]]), (0, 0.0), "padding of position {p} column {j}"),
                }
            }
        }
        // decoding some rows decodes those rows
        let some = pc.decode_rows(&[7, 0, 7]);
        assert_eq!(some.row(0), decoded.row(7));
        assert_eq!(some.row(1), decoded.row(0));
        // encoding the decoded rows gives their codes back (each is its codeword exactly)
        assert_eq!(pc.encode(decoded.view(), 1).unwrap(), pc.codes);
        // a good fit on clustered rows
        assert!(error(&t, &decoded, None) / error(&t, &Array2::zeros(t.dim()), None) < 0.01);
    }

    #[test]
    fn codes_are_the_nearest_stored_codewords() {
        let t = table(200, 8, 2);
        let pc = fit(t.view(), None, &params(8), 1).unwrap();
        for r in 0..200 {
            for p in 0..2 {
                let x: Vec<f32> = t.row(r).iter().skip(p * 4).take(4).copied().collect();
                let dist = |c: usize| {
                    let w: Vec<f32> = pc.codebook.row(p * 8 + c).iter().zip(pc.scales.row(p)).map(|(&q, &s)| q as f32 * s).collect();
                    squared_distance(&x, &w)
                };
                let chosen = dist(pc.codes[[r, p]] as usize);
                assert!((0..8).all(|c| chosen <= dist(c) + 1e-6), "row {r} position {p}");
            }
        }
    }

    #[test]
    fn byte_counts_are_exact() {
        let t = table(300, 10, 3);
        let p = params(16);
        let pc = fit(t.view(), None, &p, 1).unwrap();
        let b = pc.bytes();
        assert_eq!(b, p.bytes(300, 10));
        // (int8 codewords, an f32 scale per position and value)
        assert_eq!((b.codes, b.codebook, b.total()), (300 * 3, 3 * 16 * 4 + 4 * 3 * 4, 900 + 240));
        // all-MiniLM-L6-v2's table at the defaults: 6.5% of the fp32 table
        let b = CodeParams::default().bytes(30522, 384);
        assert_eq!((b.codes, b.codebook), (30522 * 96, 96 * 256 * 4 + 4 * 96 * 4));
        assert!((b.total() as f64 / (30522.0 * 384.0 * 4.0) - 0.0646).abs() < 1e-3, "{b:?}");
    }

    #[test]
    fn same_seed_same_bytes_across_threads() {
        let t = table(3000, 12, 4);
        let p = CodeParams { codewords: 32, sample_rows: 500, seed: 7, ..CodeParams::default() };
        let a = fit(t.view(), None, &p, 1).unwrap();
        let b = fit(t.view(), None, &p, 0).unwrap();
        let c = fit(t.view(), None, &p, 2).unwrap();
        assert_eq!(a, b);
        assert_eq!(a, c);
        let other = fit(t.view(), None, &CodeParams { seed: 8, ..p }, 1).unwrap();
        assert_ne!(a, other, "another seed, another sample and seeding");
    }

    #[test]
    fn weights_favour_heavy_rows() {
        // Many more distinct rows than codewords; the first 10 rows weigh 1000 times more.
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let t = Array2::from_shape_fn((1000, 8), |_| rng.random_range(-1.0f32..1.0));
        let w: Vec<f32> = (0..1000).map(|i| if i < 10 { 1000.0 } else { 1.0 }).collect();
        let p = CodeParams { codewords: 16, sample_rows: 400, ..CodeParams::default() };
        let plain = fit(t.view(), None, &p, 1).unwrap().decode();
        let weighted = fit(t.view(), Some(&w), &p, 1).unwrap().decode();
        let (e_plain, e_weighted) = (error(&t, &plain, Some(&w)), error(&t, &weighted, Some(&w)));
        assert!(e_weighted < 0.5 * e_plain, "weighted error {e_weighted} vs unweighted fit's {e_plain}");
        let heavy = |a: &Array2<f32>| error(&t.slice(ndarray::s![..10, ..]).to_owned(), &a.slice(ndarray::s![..10, ..]).to_owned(), None);
        assert!(heavy(&weighted) < 0.1 * heavy(&plain), "{} vs {}", heavy(&weighted), heavy(&plain));
        // zero weights are allowed, as long as one is not
        let some_zero: Vec<f32> = (0..1000).map(|i| (i % 2) as f32).collect();
        assert!(fit(t.view(), Some(&some_zero), &p, 1).is_ok());
    }

    fn invalid(p: CodeParams, n: usize, cols: usize) -> Param {
        let t = Array2::<f32>::zeros((n, cols));
        match fit(t.view(), None, &p, 1) {
            Err(Error::InvalidParameter { param, reason }) => {
                assert!(!reason.is_empty());
                param
            }
            other => panic!("{p:?} on {n} x {cols}: {other:?}"),
        }
    }

    #[test]
    fn sub_of_zero_is_refused() {
        assert_eq!(invalid(CodeParams { sub: 0, ..params(4) }, 10, 8), Param::SubVector);
    }

    #[test]
    fn sub_longer_than_rows_is_refused() {
        assert_eq!(invalid(CodeParams { sub: 9, ..params(4) }, 10, 8), Param::SubVector);
    }

    #[test]
    fn sub_not_dividing_the_rows_pads() {
        let t = table(100, 7, 6);
        let pc = fit(t.view(), None, &CodeParams { sub: 3, ..params(8) }, 1).unwrap();
        assert_eq!((pc.positions(), pc.decode().dim()), (3, (100, 7)));
    }

    #[test]
    fn codewords_outside_one_to_256_are_refused() {
        assert_eq!(invalid(params(0), 300, 8), Param::Codewords);
        assert_eq!(invalid(params(257), 300, 8), Param::Codewords);
        assert!(fit(table(300, 8, 1).view(), None, &params(256), 1).is_ok());
    }

    #[test]
    fn more_codewords_than_rows_are_refused() {
        let e = fit(Array2::<f32>::zeros((10, 8)).view(), None, &params(16), 1).unwrap_err();
        assert!(matches!(e, Error::InvalidParameter { param: Param::Codewords, .. }), "{e}");
        assert!(e.to_string().contains("more codewords than rows"), "{e}");
        assert_eq!(invalid(params(1), 0, 8), Param::Codewords);
    }

    #[test]
    fn a_sample_smaller_than_the_codewords_is_refused() {
        assert_eq!(invalid(CodeParams { sample_rows: 8, ..params(16) }, 100, 8), Param::SampleRows);
    }

    #[test]
    fn bad_weights_are_refused() {
        let t = table(20, 4, 1);
        for w in [vec![1.0; 19], vec![0.0; 20], [vec![1.0; 19], vec![-1.0]].concat(), [vec![1.0; 19], vec![f32::NAN]].concat()] {
            let e = fit(t.view(), Some(&w), &params(4), 1).unwrap_err();
            assert!(matches!(e, Error::InvalidParameter { param: Param::Weights, .. }), "{e}");
        }
    }

    #[test]
    fn rows_of_zero_values_are_refused() {
        assert!(matches!(fit(Array2::<f32>::zeros((10, 0)).view(), None, &params(4), 1), Err(Error::Unsupported(_))));
    }

    #[test]
    fn duplicate_and_non_finite_rows_do_not_panic() {
        let mut t = Array2::<f32>::ones((50, 4));
        t[[3, 1]] = f32::NAN;
        t[[4, 2]] = f32::INFINITY;
        let pc = fit(t.view(), None, &params(8), 1).unwrap();
        assert!(pc.scales.iter().all(|v| v.is_finite()));
    }

    /// Figures on a real table (`cargo test --lib codes::tests::real_table -- --ignored
    /// --nocapture`): `EMBCOMP_CODES_MODEL` (default all-MiniLM-L6-v2 from
    /// `../shared/models/fetch.sh`'s cache), `EMBCOMP_CODES` = `sub,codewords,iters,polish,sample`
    /// (default the defaults); with `EMBCOMP_CODES_CORPUS` (paths, `:`-separated) and the model's
    /// `EMBCOMP_CODES_TOKENIZER`, rows weighted by token counts (sqrt, floor 0.1) too.
    /// CPU seconds of the process so far (0 where libc is not a dependency).
    fn cpu() -> f64 {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        {
            // SAFETY: an all-zero rusage is valid, and getrusage writes a valid one.
            let mut u: libc::rusage = unsafe { std::mem::zeroed() };
            unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
            (u.ru_utime.tv_sec + u.ru_stime.tv_sec) as f64 + (u.ru_utime.tv_usec + u.ru_stime.tv_usec) as f64 * 1e-6
        }
        #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
        0.0
    }

    #[test]
    #[ignore]
    fn real_table() {
        use crate::quant::{Bits, QuantParams, Scheme, dequantize, quantize};
        let home = std::env::var("HOME").unwrap();
        let path = std::env::var("EMBCOMP_CODES_MODEL")
            .unwrap_or(format!("{home}/.cache/onnx-embcomp-models/onnx/all-MiniLM-L6-v2.onnx"));
        let model = crate::onnx::io::read_model(std::path::Path::new(&path)).unwrap();
        let view = crate::onnx::graph::GraphView::new(model.graph());
        let candidate = crate::rewrite::find::find_embedding(&view, None).unwrap().chosen().unwrap().clone();
        let init = model.graph().initializer.iter().find(|t| t.name() == candidate.table).unwrap();
        let t = crate::onnx::tensor::float_matrix(init).unwrap();
        let (n, d) = t.dim();
        let fp32 = (n * d * 4) as f64;
        let mut p = CodeParams::default();
        if let Ok(v) = std::env::var("EMBCOMP_CODES") {
            let v: Vec<usize> = v.split(',').map(|x| x.parse().unwrap()).collect();
            (p.sub, p.codewords, p.iters, p.polish, p.sample_rows) = (v[0], v[1], v[2], v[3], v[4]);
        }
        let counts: Option<Vec<u64>> = match (std::env::var("EMBCOMP_CODES_COUNTS"), std::env::var("EMBCOMP_CODES_CORPUS")) {
            (Ok(file), _) if std::path::Path::new(&file).exists() => Some(crate::corpus::read_token_counts(file.as_ref(), n).unwrap()),
            (file, Ok(paths)) => {
                let tokenizer = std::env::var("EMBCOMP_CODES_TOKENIZER").unwrap();
                let mut data = crate::data::DataOptions::text(paths.split(':').map(Into::into).collect(), tokenizer.into());
                data.prior_strength = 0.0;
                let counted = data.count(n, 0, &mut |_, _, _| {}).unwrap();
                let counts = counted.stats.counts.expect("a corpus is counted");
                if let Ok(file) = file {
                    std::fs::write(file, crate::corpus::format_token_counts(&counts)).unwrap();
                }
                Some(counts)
            }
            _ => None,
        };
        let weights = counts.as_ref().map(|c| {
            eprintln!("counts: {} tokens, {} rows seen", c.iter().sum::<u64>(), c.iter().filter(|&&c| c > 0).count());
            crate::corpus::weights(c, crate::corpus::Weighting::Sqrt, 0.1).unwrap()
        });
        let rel = |a: &Array2<f32>, w: Option<&[f32]>| (error(&t, a, w) / error(&t, &Array2::zeros(t.dim()), w)).sqrt();
        eprintln!("{path}: {n} x {d}, params {p:?}");
        let scalar = QuantParams { bits: Bits::B2, block: 32, scheme: Scheme::MidRise };
        let q = dequantize(&quantize(t.view(), &scalar).unwrap());
        let share = scalar.bytes(n, d).total() as f64 / fp32;
        eprint!("scalar 2-bit mid-rise, block 32: {:.4} of the fp32 table, relative error {:.4}", share, rel(&q, None));
        match &weights {
            Some(w) => eprintln!(", weighted {:.4}", rel(&q, Some(w))),
            None => eprintln!(),
        }
        // Experiment: the 2-bit mid-rise code with each block's scale refined by least squares
        // (s = Σ x·q / Σ q² for the codes q, then the codes again, 6 rounds, the f16 scale of
        // least error kept): what error-minimising scales would gain.
        let refined = {
            let stored = quantize(t.view(), &scalar).unwrap();
            let mut out = q.clone();
            for (r, (mut o, x)) in out.rows_mut().into_iter().zip(t.rows()).enumerate() {
                for (b, (o, x)) in o.as_slice_mut().unwrap().chunks_mut(32).zip(x.as_slice().unwrap().chunks(32)).enumerate() {
                    let s0 = stored.scales[[r, b]].to_f32();
                    if s0 == 0.0 {
                        continue;
                    }
                    // the levels q in {-3, -1, 1, 3} of the current codes
                    let mut levels: Vec<f32> = o.iter().map(|v| (v / s0).round()).collect();
                    let mut best = o.iter().zip(x).map(|(o, v)| ((v - o) as f64).powi(2)).sum::<f64>();
                    for _ in 0..6 {
                        let (num, den) = levels.iter().zip(x).fold((0f64, 0f64), |(n, d), (&q, &v)| (n + (v * q) as f64, d + (q * q) as f64));
                        let s = half::f16::from_f64(num / den.max(1e-30)).to_f32();
                        if s.is_nan() || s <= 0.0 {
                            break;
                        }
                        let mut e = 0f64;
                        let trial: Vec<f32> = x
                            .iter()
                            .zip(levels.iter_mut())
                            .map(|(&v, q)| {
                                *q = 2.0 * ((v / s + 3.0) / 2.0).round().clamp(0.0, 3.0) - 3.0;
                                e += ((v - *q * s) as f64).powi(2);
                                *q * s
                            })
                            .collect();
                        if e < best {
                            best = e;
                            o.copy_from_slice(&trial);
                        }
                    }
                }
            }
            out
        };
        eprintln!("scalar 2-bit mid-rise with least-squares scales: relative error {:.4}", rel(&refined, None));
        if let (Some(counts), Ok(_)) = (&counts, std::env::var("EMBCOMP_CODES_TIERS")) {
            // The rare rows under a plain 4-bit tier of the fewest rows covering 0.999 of the
            // counted tokens: at 2 bits (mid-rise), as codes, as rotated codes (weighted fits).
            use crate::onnx::tensor::FloatType;
            use crate::rewrite::Layout;
            let mut order: Vec<usize> = (0..n).collect();
            order.sort_by(|&a, &b| counts[b].cmp(&counts[a]).then(a.cmp(&b)));
            let total: u64 = counts.iter().sum();
            let (mut covered, mut hot) = (0u64, Vec::new());
            for &r in &order {
                if covered as f64 >= 0.999 * total as f64 {
                    break;
                }
                covered += counts[r];
                hot.push(r);
            }
            hot.sort_unstable();
            let rare: Vec<usize> = (0..n).filter(|r| hot.binary_search(r).is_err()).collect();
            let four = QuantParams { bits: Bits::B4, block: 32, scheme: Scheme::Symmetric };
            let hot_branch = Layout::plain_branch(t.view(), hot.clone(), FloatType::F32, Some(&four)).unwrap();
            eprintln!("tiers: {} hot rows at 4 bits, {} rare rows", hot.len(), rare.len());
            let w = weights.as_deref();
            let rare_branches = [
                ("2-bit mid-rise", Layout::plain_branch(t.view(), rare.clone(), FloatType::F32, Some(&scalar)).unwrap()),
                ("product codes", Layout::coded_branch(t.view(), rare.clone(), &p, w, 0).unwrap()),
                ("rotated codes", Layout::rotated_coded_branch(t.view(), rare.clone(), &p, w, FloatType::F16, 0).unwrap()),
            ];
            for (name, branch) in rare_branches {
                let layout = Layout { n, d, dtype: FloatType::F32, basis_dtype: FloatType::F16, branches: vec![hot_branch.clone(), branch] };
                let (e, weighted) = layout.errors(t.view(), w, 0);
                let share = layout.footprint().bytes() as f64 / fp32;
                eprintln!("tiers, rare rows as {name}: {share:.4} of the fp32 table, relative error {e:.4}, weighted {:.4}", weighted.unwrap());
            }
        }
        if std::env::var("EMBCOMP_CODES_ROTATED").is_ok() {
            // Codes on coefficients: the rows in their principal axes, a d x d basis in f16.
            use crate::onnx::tensor::FloatType;
            use crate::rewrite::Layout;
            for w in [None, weights.as_deref()] {
                let start = std::time::Instant::now();
                let branch = Layout::rotated_coded_branch(t.view(), (0..n).collect(), &p, w, FloatType::F16, 0).unwrap();
                let seconds = start.elapsed().as_secs_f64();
                let layout = Layout { n, d, dtype: FloatType::F32, basis_dtype: FloatType::F16, branches: vec![branch] };
                let (e, weighted) = layout.errors(t.view(), weights.as_deref(), 0);
                let share = layout.footprint().bytes() as f64 / fp32;
                eprint!("rotated product codes ({}): {share:.4} of the fp32 table, relative error {e:.4}", if w.is_some() { "weighted fit" } else { "unweighted fit" });
                match weighted {
                    Some(weighted) => eprintln!(", weighted {weighted:.4}; fit {seconds:.1} s"),
                    None => {
                        eprintln!("; fit {seconds:.1} s");
                        break;
                    }
                }
            }
        }
        for w in [None, weights.as_deref()] {
            if w.is_none() && weights.is_some() && std::env::var("EMBCOMP_CODES_SKIP_UNWEIGHTED").is_ok() {
                continue;
            }
            let (start, cpu_start) = (std::time::Instant::now(), cpu());
            let pc = fit(t.view(), w, &p, 0).unwrap();
            let (seconds, cpu_seconds) = (start.elapsed().as_secs_f64(), cpu() - cpu_start);
            let decoded = pc.decode();
            let share = pc.bytes().total() as f64 / fp32;
            eprint!(
                "product codes ({}): {share:.4} of the fp32 table, relative error {:.4}",
                if w.is_some() { "weighted fit" } else { "unweighted fit" },
                rel(&decoded, None)
            );
            if let Some(weights) = &weights {
                eprint!(", weighted {:.4}", rel(&decoded, Some(weights)));
            }
            eprintln!("; fit {seconds:.1} s ({cpu_seconds:.1} s of CPU) on {} threads", rayon::current_num_threads());
            if weights.is_none() {
                break;
            }
        }
    }

    #[test]
    fn ties_go_to_the_first_codeword() {
        // 40 codewords (two blocks, the second padded), 3 of them equal and nearest.
        let mut words = vec![5.0f32; 40 * 2];
        for c in [33, 7, 20] {
            words[2 * c..2 * c + 2].copy_from_slice(&[1.0, -1.0]);
        }
        let (codes, d2) = Centroids::new(&words, 40, 2).assign_all(&[1.0, -1.0, 1.5, -1.0, 5.0, 5.0]);
        assert_eq!(codes, [7, 7, 0]);
        assert_eq!(d2, [0.0, 0.25, 0.0]);
        // NaN rows still get a code in range
        let (codes, _) = Centroids::new(&words, 40, 2).assign_all(&[f32::NAN, 0.0]);
        assert!((codes[0] as usize) < 40);
    }
}

/// The nearest-codeword search's speed, with and without AVX2 (`cargo test --lib
/// codes::bench -- --ignored --nocapture`).
#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod bench {
    use super::*;

    #[test]
    #[ignore]
    fn assign_speed() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let x: Vec<f32> = (0..30522 * 4).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        let words: Vec<f32> = (0..256 * 4).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        let c = Centroids::new(&words, 256, 4);
        type F<'a> = &'a dyn Fn(&[f32]) -> (Vec<u8>, Vec<f32>);
        let (dispatch, portable): (F, F) = (&|x| c.assign_all(x), &|x| c.assign_all_portable(x));
        assert_eq!(dispatch(&x), portable(&x));
        for (name, f) in [("dispatch", dispatch), ("portable", portable)] {
            let cpu = || {
                let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
                // SAFETY: t is a valid timespec to write.
                unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
                t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
            };
            let start = cpu();
            let mut s = 0usize;
            for _ in 0..100 {
                s += f(&x).0.iter().map(|&v| v as usize).sum::<usize>();
            }
            eprintln!("{name}: {:.1} ns of CPU per row ({s})", (cpu() - start) * 1e9 / (100.0 * 30522.0));
        }
    }
}
