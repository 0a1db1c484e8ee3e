//! Dense kernels on row-major ndarray data, computed by faer (pure Rust, multithreaded).
//!
//! faer's GEMM splits work over output blocks only, so results do not depend on the thread
//! count; the tests check this.

use faer::linalg::matmul::matmul;
use faer::linalg::matmul::triangular::{self, BlockStructure};
use faer::{Accum, MatMut, MatRef, Par, Side};
use ndarray::{Array2, ArrayView2, ArrayViewMut2};

use crate::error::{Error, Result};

/// Rows per block in row-blocked passes: bounds temporaries to `ROW_BLOCK x width` numbers.
pub const ROW_BLOCK: usize = 1024;

/// faer's parallelism for `threads` (0 = all of rayon's threads).
pub fn par(threads: usize) -> Par {
    if threads == 1 { Par::Seq } else { Par::rayon(threads) }
}

fn view<'a>(a: &'a ArrayView2<'a, f32>) -> MatRef<'a, f32> {
    let s = a.as_slice().expect("row-major contiguous input");
    MatRef::from_row_major_slice(s, a.nrows(), a.ncols())
}

fn view_mut<'a>(a: &'a mut ArrayViewMut2<'a, f32>) -> MatMut<'a, f32> {
    let (r, c) = a.dim();
    MatMut::from_row_major_slice_mut(a.as_slice_mut().expect("row-major contiguous output"), r, c)
}

/// `out = a · b`. Shapes: a `[m, p]`, b `[p, q]`, out `[m, q]`; all row-major contiguous.
pub fn gemm_into(a: ArrayView2<f32>, b: ArrayView2<f32>, mut out: ArrayViewMut2<f32>, par: Par) {
    matmul(view_mut(&mut out.view_mut()), Accum::Replace, view(&a), view(&b), 1.0f32, par);
}

/// `a · b` as a new array. Shapes: a `[m, p]`, b `[p, q]` -> `[m, q]`.
pub fn gemm(a: ArrayView2<f32>, b: ArrayView2<f32>, par: Par) -> Array2<f32> {
    let mut out = Array2::zeros((a.nrows(), b.ncols()));
    gemm_into(a, b, out.view_mut(), par);
    out
}

/// `acc += sign · xᵀ · x` for a row block x `[m, d]`, on the lower triangle of acc `[d, d]` only
/// (f64 accumulation; the upper triangle is left as it was). `scratch` is a `[d, d]` f32 buffer
/// reused between calls. `sign` is +1 to add rows, -1 to take them out.
pub fn add_gram_lower(x: ArrayView2<f32>, sign: f64, acc: &mut Array2<f64>, scratch: &mut Array2<f32>, par: Par) {
    if x.nrows() == 0 {
        return;
    }
    let xv = view(&x);
    let mut sv = scratch.view_mut();
    triangular::matmul(
        view_mut(&mut sv),
        BlockStructure::TriangularLower,
        Accum::Replace,
        xv.transpose(),
        BlockStructure::Rectangular,
        xv,
        BlockStructure::Rectangular,
        1.0f32,
        par,
    );
    let d = acc.nrows();
    for r in 0..d {
        let (a, s) = (&mut acc.row_mut(r), scratch.row(r));
        for c in 0..=r {
            a[c] += sign * s[c] as f64;
        }
    }
}

/// All eigenpairs of a symmetric matrix g `[d, d]` given by its lower triangle: eigenvectors
/// as the columns of a `[d, d]` f32 matrix (orthonormal), eigenvalues in decreasing order.
///
/// The decomposition runs in f32 (twice as fast as f64; the Gram matrix is accumulated in f64)
/// and sequentially, so its bits never depend on the thread count; callers parallelise across
/// clusters instead.
pub fn eigen_desc(g: &Array2<f64>) -> Result<(Array2<f32>, Vec<f64>)> {
    let d = g.nrows();
    let m = faer::Mat::<f32>::from_fn(d, d, |r, c| g[[r.max(c), r.min(c)]] as f32);
    let mut s = faer::diag::Diag::<f32>::zeros(d);
    let mut u = faer::Mat::<f32>::zeros(d, d);
    let par = Par::Seq;
    let scratch = faer::linalg::evd::self_adjoint_evd_scratch::<f32>(
        d,
        faer::linalg::evd::ComputeEigenvectors::Yes,
        par,
        Default::default(),
    );
    faer::linalg::evd::self_adjoint_evd(
        m.as_ref(),
        s.as_mut(),
        Some(u.as_mut()),
        par,
        faer::dyn_stack::MemStack::new(&mut faer::dyn_stack::MemBuffer::new(scratch)),
        Default::default(),
    )
    .map_err(|e| Error::Numerical(format!("symmetric eigendecomposition of a {d}x{d} Gram matrix: {e:?}")))?;
    // faer's order is ascending: reverse it.
    let vectors = Array2::from_shape_fn((d, d), |(r, c)| u[(r, d - 1 - c)]);
    let values = (0..d).map(|c| s[d - 1 - c] as f64).collect();
    Ok((vectors, values))
}

/// The Gram matrix `xᵀ · x` of all rows of x `[n, d]`, lower triangle only (f64), accumulated
/// by row blocks. x must be row-major contiguous.
pub(crate) fn gram_lower(x: ArrayView2<f32>, threads: usize) -> Array2<f64> {
    let d = x.ncols();
    let mut gram = Array2::<f64>::zeros((d, d));
    let mut scratch = Array2::<f32>::zeros((d, d));
    for start in (0..x.nrows()).step_by(ROW_BLOCK) {
        let end = (start + ROW_BLOCK).min(x.nrows());
        add_gram_lower(x.slice(ndarray::s![start..end, ..]), 1.0, &mut gram, &mut scratch, par(threads));
    }
    gram
}

/// Scales each row of x by the square root of its weight: squared distances of the scaled
/// rows are the weighted squared distances.
pub(crate) fn scale_rows(mut x: ArrayViewMut2<f32>, weights: &[f32]) {
    for (mut row, &w) in x.rows_mut().into_iter().zip(weights) {
        row *= w.sqrt();
    }
}


/// All eigenvalues of a symmetric matrix `[d, d]`, in decreasing order.
/// Reads the lower triangle of g only.
pub fn eigenvalues_desc(g: &Array2<f64>) -> Result<Vec<f64>> {
    let d = g.nrows();
    let m = MatRef::from_row_major_slice(g.as_slice().expect("contiguous gram"), d, d);
    let mut v = m
        .self_adjoint_eigenvalues(Side::Lower)
        .map_err(|e| Error::Numerical(format!("eigenvalues of a {d}x{d} Gram matrix: {e:?}")))?;
    v.reverse();
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn gemm_matches_hand_product() {
        let a = array![[1.0f32, 2.0], [3.0, 4.0], [5.0, 6.0]];
        let b = array![[1.0f32, 0.0, 2.0], [0.0, 1.0, -1.0]];
        assert_eq!(gemm(a.view(), b.view(), Par::Seq), array![[1.0, 2.0, 0.0], [3.0, 4.0, 2.0], [5.0, 6.0, 4.0]]);
    }

    #[test]
    fn gram_and_eigen() {
        let x = array![[3.0f32, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 1.0]];
        let mut g = Array2::zeros((3, 3));
        add_gram_lower(x.view(), 1.0, &mut g, &mut Array2::zeros((3, 3)), Par::Seq);
        let (v, e) = eigen_desc(&g).unwrap();
        assert!((e[0] - 9.0).abs() < 1e-5 && (e[1] - 4.0).abs() < 1e-5 && (e[2] - 1.0).abs() < 1e-5, "{e:?}");
        for c in 0..3 {
            assert!((v[[c, c]].abs() - 1.0).abs() < 1e-6, "{v:?}");
        }
        let exact = eigenvalues_desc(&g).unwrap();
        assert!(exact.iter().zip(&e).all(|(a, b)| (a - b).abs() < 1e-5), "{exact:?} vs {e:?}");
    }

    #[test]
    fn gram_rows_taken_out_leave_the_gram_of_the_rest() {
        let x = array![[1.0f32, 2.0], [3.0, -1.0], [0.5, 4.0]];
        let mut g = Array2::zeros((2, 2));
        let mut scratch = Array2::zeros((2, 2));
        add_gram_lower(x.view(), 1.0, &mut g, &mut scratch, Par::Seq);
        add_gram_lower(x.slice(ndarray::s![1.., ..]), -1.0, &mut g, &mut scratch, Par::Seq);
        // Only row 0 is left: [[1, 2], [2, 4]], lower triangle.
        assert_eq!((g[[0, 0]], g[[1, 0]], g[[1, 1]]), (1.0, 2.0, 4.0));
    }
}
