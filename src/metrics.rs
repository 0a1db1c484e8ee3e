//! The fidelity formulas, each in one place: cosine similarity, mean, KL divergence of
//! logits, relative Frobenius error.

/// Cosine similarity; 1 for two zero vectors.
pub fn cosine(p: &[f32], q: &[f32]) -> f64 {
    let (mut pq, mut pp, mut qq) = (0f64, 0f64, 0f64);
    for (&a, &b) in p.iter().zip(q) {
        pq += a as f64 * b as f64;
        pp += a as f64 * a as f64;
        qq += b as f64 * b as f64;
    }
    if pp == 0.0 && qq == 0.0 { 1.0 } else { pq / (pp.sqrt() * qq.sqrt()).max(f64::MIN_POSITIVE) }
}

/// The mean of `v`; 0 for none.
pub(crate) fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// KL(softmax(p) || softmax(q)) in nats.
pub(crate) fn kl_divergence(p: &[f32], q: &[f32]) -> f64 {
    let log_softmax = |x: &[f32]| -> Vec<f64> {
        let m = x.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let lse = x.iter().map(|&v| (v as f64 - m).exp()).sum::<f64>().ln() + m;
        x.iter().map(|&v| v as f64 - lse).collect()
    };
    let (lp, lq) = (log_softmax(p), log_softmax(q));
    lp.iter().zip(&lq).map(|(a, b)| a.exp() * (a - b)).sum::<f64>().max(0.0)
}

/// A relative Frobenius error from squared sums: `sqrt(diff / norm)`, or `sqrt(diff)` when the
/// reference is zero.
pub(crate) fn relative_frobenius(diff: f64, norm: f64) -> f64 {
    if norm > 0.0 { (diff / norm).sqrt() } else { diff.sqrt() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas() {
        assert_eq!(cosine(&[1.0, 0.0], &[2.0, 0.0]), 1.0);
        assert_eq!(cosine(&[1.0, 0.0], &[0.0, 3.0]), 0.0);
        assert_eq!(cosine(&[0.0], &[0.0]), 1.0);
        assert_eq!(mean(&[1.0, 2.0, 6.0]), 3.0);
        assert_eq!(mean(&[]), 0.0);
        assert_eq!(relative_frobenius(1.0, 4.0), 0.5);
        assert!(kl_divergence(&[1.0, 2.0], &[1.0, 2.0]).abs() < 1e-12);
        assert!(kl_divergence(&[1.0, 2.0], &[2.0, 1.0]) > 0.1);
    }
}
