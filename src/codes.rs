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
//! | codebook | `[m·codewords, sub]` (position p's codeword c is row `p·codewords + c`) | f16 | `2·m·codewords·sub` |
//!
//! The codebook is f16: it halves the codebook (on a 30522 x 384 table, 196 KiB instead of 393
//! KiB against 1.1 MiB of codes) and the lookup casts the gathered values to f32, exactly.
//! Padding columns are stored in the codebook (they are zero-padded rows' values, fitted like
//! the others), and the lookup drops them.
//!
//! The fit: per position, a weighted k-means (weights are the rows', e.g. token frequencies:
//! the fit minimises `Σ w_i |x_i - x̂_i|²`): k-means++ seeding (each new codeword drawn with
//! probability proportional to `w · D²`), then Lloyd iterations, first `iters` on a seeded
//! sample of `sample_rows` rows, then `polish` on all rows; the codewords are then rounded to
//! f16 and every row is coded with its nearest f16 codeword (ties to the lowest index). A
//! codeword left without weight is moved to the row of largest weighted error. Positions are
//! fitted in parallel, each from its own stream of the seed, so the result depends only on the
//! rows, the weights and the parameters (not on the thread count).

use half::f16;
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
    /// Rows the seeding and the first `iters` iterations run on (default 32768); 0, or more
    /// than the rows, for all rows (then `polish` is not needed).
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
    /// The f16 codebook.
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

    /// Bytes `n` rows of `cols` values take coded: `n·m` bytes of codes, `2·m·codewords·sub`
    /// bytes of codebook.
    pub fn bytes(&self, n: usize, cols: usize) -> CodeBytes {
        let m = self.positions(cols) as u64;
        CodeBytes { codes: n as u64 * m, codebook: 2 * m * (self.codewords * self.sub) as u64 }
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
    /// `[m·codewords, sub]`: position p's codeword c is row `p·codewords + c`.
    pub codebook: Array2<f16>,
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
        CodeBytes { codes: self.codes.len() as u64, codebook: 2 * self.codebook.len() as u64 }
    }

    /// The decoded rows `ids`, `[ids.len(), cols]`: each row's codewords, as f32. Panics on an
    /// id past the table.
    pub fn decode_rows(&self, ids: &[usize]) -> Array2<f32> {
        let (sub, cols) = (self.sub(), self.cols);
        let mut out = Array2::<f32>::zeros((ids.len(), cols));
        for (mut o, &id) in out.rows_mut().into_iter().zip(ids) {
            for (p, &c) in self.codes.row(id).iter().enumerate() {
                let word = self.codebook.row(p * self.codewords + c as usize);
                for (j, v) in word.iter().enumerate().take(cols - (p * sub).min(cols)) {
                    o[p * sub + j] = v.to_f32();
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
            let words: Vec<f32> = self.codebook.slice(ndarray::s![p * k..(p + 1) * k, ..]).iter().map(|v| v.to_f32()).collect();
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
        let stored: Vec<f16> = words.iter().map(|&v| to_f16(v)).collect();
        let rounded: Vec<f32> = stored.iter().map(|v| v.to_f32()).collect();
        let (codes, _) = Centroids::new(&rounded, k, sub).assign_all(&x);
        (stored, codes)
    });
    let mut codebook = Vec::with_capacity(m * k * sub);
    let mut codes = Vec::with_capacity(m);
    for (words, c) in fitted {
        codebook.extend(words);
        codes.push(c);
    }
    Ok(ProductCodes {
        codes: gather_codes(n, codes),
        codebook: Array2::from_shape_vec((m * k, sub), codebook).expect("m·k codewords of sub values"),
        codewords: k,
        cols,
    })
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

/// `v` in f16, clamped to its finite range (NaN to 0).
fn to_f16(v: f32) -> f16 {
    if v.is_nan() { f16::ZERO } else { f16::from_f32(v.clamp(-f16::MAX.to_f32(), f16::MAX.to_f32())) }
}

/// One position's codewords `[k, sub]` (f32, row-major), fitted to its sub-vectors `x` `[n, sub]`.
fn fit_position(x: &[f32], sub: usize, weights: Option<&[f32]>, params: &CodeParams, rng: &mut impl Rng) -> Vec<f32> {
    let n = x.len() / sub;
    let k = params.codewords;
    let sampled = params.sample_rows != 0 && params.sample_rows < n;
    let mut words = if sampled {
        let mut idx = rand::seq::index::sample(rng, n, params.sample_rows).into_vec();
        idx.sort_unstable();
        let xs: Vec<f32> = idx.iter().flat_map(|&i| x[i * sub..(i + 1) * sub].iter().copied()).collect();
        let ws: Option<Vec<f32>> = weights.map(|w| idx.iter().map(|&i| w[i]).collect());
        let ws = ws.filter(|w| w.iter().any(|&v| v > 0.0));
        let seeded = seed(&xs, sub, k, ws.as_deref(), rng);
        lloyd(&xs, sub, ws.as_deref(), seeded, params.iters)
    } else {
        let seeded = seed(x, sub, k, weights, rng);
        lloyd(x, sub, weights, seeded, params.iters)
    };
    if sampled {
        words = lloyd(x, sub, weights, words, params.polish);
    }
    words
}

/// k-means++ seeding of `k` codewords among the rows of `x` `[n, sub]` (n >= k): the first drawn
/// with probability proportional to the weight, each next one proportional to `w · D²` (D the
/// distance to the nearest codeword drawn so far); uniformly when that is zero everywhere.
fn seed(x: &[f32], sub: usize, k: usize, weights: Option<&[f32]>, rng: &mut impl Rng) -> Vec<f32> {
    let n = x.len() / sub;
    let w = |i: usize| weights.map_or(1.0, |w| w[i] as f64);
    let mut d2 = vec![f64::INFINITY; n];
    let mut words = Vec::with_capacity(k * sub);
    for _ in 0..k {
        let total: f64 = (0..n).map(|i| if d2[i].is_finite() { w(i) * d2[i] } else { w(i) }).sum();
        let pick = if total > 0.0 && total.is_finite() {
            let mut u = rng.random::<f64>() * total;
            (0..n)
                .position(|i| {
                    u -= if d2[i].is_finite() { w(i) * d2[i] } else { w(i) };
                    u < 0.0
                })
                .unwrap_or(n - 1)
        } else {
            rng.random_range(0..n)
        };
        let word = &x[pick * sub..(pick + 1) * sub];
        words.extend_from_slice(word);
        for (d, row) in d2.iter_mut().zip(x.chunks_exact(sub)) {
            *d = d.min(squared_distance(row, word));
        }
    }
    words
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
/// once, a position's values vectorised over the codewords.
struct Centroids {
    k: usize,
    sub: usize,
    /// `[sub, k]`: `-2 c_j` of every codeword, value j's row.
    neg2t: Vec<f32>,
    /// `[k]`: `|c|²`.
    norms: Vec<f32>,
}

impl Centroids {
    /// From codewords `[k, sub]`, row-major.
    fn new(words: &[f32], k: usize, sub: usize) -> Centroids {
        let mut neg2t = vec![0f32; k * sub];
        let mut norms = vec![0f32; k];
        for (c, word) in words.chunks_exact(sub).enumerate() {
            for (j, &v) in word.iter().enumerate() {
                neg2t[j * k + c] = -2.0 * v;
            }
            norms[c] = word.iter().map(|v| v * v).sum();
        }
        Centroids { k, sub, neg2t, norms }
    }

    /// The nearest codeword of every row of `x` `[n, sub]` and its squared distance.
    fn assign_all(&self, x: &[f32]) -> (Vec<u8>, Vec<f32>) {
        let n = x.len() / self.sub;
        let (mut codes, mut d2) = (Vec::with_capacity(n), Vec::with_capacity(n));
        let mut scratch = vec![0f32; self.k];
        for row in x.chunks_exact(self.sub) {
            scratch.copy_from_slice(&self.norms);
            for (j, &v) in row.iter().enumerate() {
                for (d, &c) in scratch.iter_mut().zip(&self.neg2t[j * self.k..(j + 1) * self.k]) {
                    *d += v * c;
                }
            }
            let (c, d) = argmin(&scratch);
            codes.push(c as u8);
            d2.push((d + row.iter().map(|v| v * v).sum::<f32>()).max(0.0));
        }
        (codes, d2)
    }
}

/// The index of the smallest value (the first of equal ones) and the value; index 0 when every
/// value is NaN. Eight lanes, so that it vectorises.
fn argmin(v: &[f32]) -> (usize, f32) {
    const L: usize = 8;
    let mut best = [f32::INFINITY; L];
    let mut at = [0u32; L];
    let chunks = v.chunks_exact(L);
    let tail = chunks.remainder();
    for (i, chunk) in chunks.enumerate() {
        for l in 0..L {
            let better = chunk[l] < best[l];
            best[l] = if better { chunk[l] } else { best[l] };
            at[l] = if better { i as u32 } else { at[l] };
        }
    }
    let (mut index, mut value) = (0usize, f32::INFINITY);
    for l in 0..L {
        let i = at[l] as usize * L + l;
        if best[l] < value || (best[l] == value && i < index) {
            (index, value) = (i, best[l]);
        }
    }
    let start = v.len() - tail.len();
    for (i, &t) in tail.iter().enumerate() {
        if t < value {
            (index, value) = (start + i, t);
        }
    }
    if value == f32::INFINITY {
        // every value infinite or NaN: the first infinite one, else 0
        index = v.iter().position(|&t| t == f32::INFINITY).unwrap_or(0);
    }
    (index, value)
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
                        assert_eq!(decoded[[r, p * 4 + j]].to_bits(), word[j].to_f32().to_bits(), "row {r} col {}", p * 4 + j);
                    }
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
                    let w: Vec<f32> = pc.codebook.row(p * 8 + c).iter().map(|v| v.to_f32()).collect();
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
        assert_eq!((b.codes, b.codebook, b.total()), (300 * 3, 2 * 3 * 16 * 4, 900 + 384));
        // all-MiniLM-L6-v2's table at the defaults: 6.7% of the fp32 table
        let b = CodeParams::default().bytes(30522, 384);
        assert_eq!((b.codes, b.codebook), (30522 * 96, 2 * 96 * 256 * 4));
        assert!((b.total() as f64 / (30522.0 * 384.0 * 4.0) - 0.0667).abs() < 1e-3, "{b:?}");
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
        assert!(pc.codebook.iter().all(|v| v.is_finite()));
    }

    /// Figures on a real table (`cargo test --lib codes::tests::real_table -- --ignored
    /// --nocapture`): `EMBCOMP_CODES_MODEL` (default all-MiniLM-L6-v2 from
    /// `../shared/models/fetch.sh`'s cache), `EMBCOMP_CODES` = `sub,codewords,iters,polish,sample`
    /// (default the defaults); with `EMBCOMP_CODES_CORPUS` (paths, `:`-separated) and the model's
    /// `EMBCOMP_CODES_TOKENIZER`, rows weighted by token counts (sqrt, floor 0.1) too.
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
        let weights = std::env::var("EMBCOMP_CODES_CORPUS").ok().map(|paths| {
            let tokenizer = std::env::var("EMBCOMP_CODES_TOKENIZER").unwrap();
            let data = crate::corpus::DataOptions::text(paths.split(':').map(Into::into).collect(), tokenizer.into());
            let counted = data.count(n, &mut |_, _, _| {}).unwrap();
            eprintln!("corpus: {} tokens, {} rows seen", counted.figures.tokens, counted.figures.seen_rows);
            counted.weights.unwrap()
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
        for w in [None, weights.as_deref()] {
            if w.is_none() && weights.is_some() && std::env::var("EMBCOMP_CODES_SKIP_UNWEIGHTED").is_ok() {
                continue;
            }
            let start = std::time::Instant::now();
            let pc = fit(t.view(), w, &p, 0).unwrap();
            let seconds = start.elapsed().as_secs_f64();
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
            eprintln!("; fit {seconds:.1} s on {} threads", rayon::current_num_threads());
            if weights.is_none() {
                break;
            }
        }
    }

    #[test]
    fn argmin_is_the_first_smallest() {
        let v: Vec<f32> = (0..21).map(|i| ((i * 7) % 5) as f32).collect();
        assert_eq!(argmin(&v), (0, 0.0));
        let mut w = vec![3.0f32; 21];
        w[20] = -1.0;
        assert_eq!(argmin(&w), (20, -1.0));
        w[9] = -1.0;
        assert_eq!(argmin(&w), (9, -1.0));
        w[17] = -1.0;
        w[9] = 0.0;
        assert_eq!(argmin(&w), (17, -1.0));
        assert_eq!(argmin(&[f32::NAN, f32::NAN]).0, 0);
    }
}
