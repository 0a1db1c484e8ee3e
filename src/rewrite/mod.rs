//! Rewriting the embedding lookup: [`find`] picks the Gather, [`Factors`] holds the compressed
//! table, [`patch`] splices the k-branch lookup into the graph.

pub mod find;
pub mod patch;

use ndarray::{Array2, ArrayView2};

use crate::cluster::Clustering;
use crate::onnx::tensor::FloatType;

/// One non-empty cluster of the compressed table.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterFactors {
    /// Token ids (table rows) in this cluster, increasing.
    pub members: Vec<usize>,
    /// Coefficients of the members, `[n_i, j]`, rows in the order of `members`.
    pub coefficients: Array2<f32>,
    /// Orthonormal basis, `[d, j]`.
    pub basis: Array2<f32>,
}

/// A table `[n, d]` stored as per-cluster coefficients `[n_i, j_i]` and bases `[d, j_i]`: row t is
/// `coefficients[c][pos(t)] · basis[c]ᵀ`.
#[derive(Debug, Clone, PartialEq)]
pub struct Factors {
    /// Rows of the original table.
    pub n: usize,
    /// Columns of the original table.
    pub d: usize,
    /// The non-empty clusters.
    pub clusters: Vec<ClusterFactors>,
}

impl Factors {
    /// The factors of `table` `[n, d]` under `clustering`; empty clusters are dropped.
    pub fn new(clustering: &Clustering, table: ArrayView2<f32>, threads: usize) -> Factors {
        let coefficients = clustering.coefficients(table, threads);
        let clusters = clustering
            .members()
            .into_iter()
            .zip(coefficients)
            .zip(&clustering.bases)
            .filter(|((m, _), _)| !m.is_empty())
            .map(|((members, coefficients), basis)| ClusterFactors { members, coefficients, basis: basis.clone() })
            .collect();
        Factors { n: table.nrows(), d: table.ncols(), clusters }
    }

    /// Rounds every value to what `dtype` stores, so reconstructions match the written model.
    pub fn round_to(&mut self, dtype: FloatType) {
        let round: fn(f32) -> f32 = match dtype {
            FloatType::F32 | FloatType::F64 => return,
            FloatType::F16 => |v| half::f16::from_f32(v).to_f32(),
            FloatType::Bf16 => |v| half::bf16::from_f32(v).to_f32(),
        };
        for c in &mut self.clusters {
            c.coefficients.mapv_inplace(round);
            c.basis.mapv_inplace(round);
        }
    }

    /// Whether one cluster holds every row: the lookup then needs no index map.
    pub fn is_single(&self) -> bool {
        self.clusters.len() == 1
    }

    /// Subspace dimension of each cluster.
    pub fn dims(&self) -> Vec<usize> {
        self.clusters.iter().map(|c| c.basis.ncols()).collect()
    }

    /// Numbers the rewritten lookup stores (coefficients, zero rows, index maps, bases).
    pub fn stored_numbers(&self) -> u64 {
        let counts: Vec<usize> = self.clusters.iter().map(|c| c.members.len()).collect();
        crate::cluster::layout_numbers(self.n, self.d, &counts, &self.dims())
    }

    /// The reconstructed rows for `ids`, `[ids.len(), d]`.
    pub fn reconstruct(&self, ids: &[usize]) -> Array2<f32> {
        let mut place = vec![(0usize, 0usize); self.n];
        for (c, cl) in self.clusters.iter().enumerate() {
            for (pos, &t) in cl.members.iter().enumerate() {
                place[t] = (c, pos);
            }
        }
        let mut out = Array2::zeros((ids.len(), self.d));
        for (r, &t) in ids.iter().enumerate() {
            let (c, pos) = place[t];
            let cl = &self.clusters[c];
            out.row_mut(r).assign(&cl.basis.dot(&cl.coefficients.row(pos)));
        }
        out
    }
}
