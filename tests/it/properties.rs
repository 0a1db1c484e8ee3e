//! Property tests: for random small tables and settings, the rewritten model's lookup computes
//! the fitted reconstruction (checked by tract during `compress`) and the stored numbers follow
//! the documented layout.

use onnx_embcomp::onnx::tensor::FloatType;
use onnx_embcomp::{Size, Subspaces, compress};
use proptest::prelude::*;

use crate::fixtures::{clustered_table, embedding_only};

/// The numbers the layout stores for `clusters` non-empty clusters.
fn layout(n: u64, d: u64, clusters: u64, j: u64) -> u64 {
    // With several clusters: zero rows, and an index of two numbers a row (cluster, position).
    if clusters == 1 { n * j + j * d } else { (n + clusters) * j + 2 * n + clusters * j * d }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn rewritten_lookup_is_the_reconstruction_and_follows_the_layout(
        n in 20usize..200,
        d in 4usize..24,
        k in 1usize..5,
        j_pick in 0.0f64..1.0,
        seed in any::<u64>(),
    ) {
        // the finder wants more rows than columns
        prop_assume!(n > d);
        // a j that saves numbers for this shape and k, if there is one
        let js: Vec<usize> = (1..d).filter(|&j| onnx_embcomp::storage::stored_numbers(n, d, k, j) < (n * d) as u64).collect();
        prop_assume!(!js.is_empty());
        let j = js[((j_pick * js.len() as f64) as usize).min(js.len() - 1)];
        let table = clustered_table(seed, n, d, k, j);
        let model = embedding_only(&table, FloatType::F32, 17, 8);
        let options =
            { let mut o = crate::float_options(); o.seed = seed; o.fit.restarts = 2; o.fit.max_iter = 6; o };
        let setting = crate::float_subspaces(Subspaces::Fixed(k), Size::Dim(j));
        let (rewritten, report) = compress(&model, &options, &setting, &mut |_| {}).map_err(|e| TestCaseError::fail(e.to_string()))?;

        let rel = report.validation.as_ref().and_then(|v| v.embedding_rel_error).expect("the lookup was checked");
        prop_assert!(rel <= 1e-5, "lookup differs from the reconstruction by {}", rel);
        prop_assert_eq!(report.j, j);
        prop_assert!(report.clusters >= 1 && report.clusters <= k);
        prop_assert_eq!(report.fit.cluster_sizes.iter().sum::<usize>(), n);
        let (n64, d64, c64, j64) = (n as u64, d as u64, report.clusters as u64, j as u64);
        prop_assert_eq!(report.numbers_after, layout(n64, d64, c64, j64));
        if report.clusters == k {
            prop_assert_eq!(report.numbers_after, onnx_embcomp::storage::stored_numbers(n, d, k, j));
        }
        // the count is what the model really stores
        let stored: i64 = rewritten
            .graph()
            .initializer
            .iter()
            .filter(|t| t.name().starts_with("embcomp/"))
            .map(|t| t.dims.iter().product::<i64>())
            .sum();
        prop_assert_eq!(stored as u64, report.numbers_after);
    }
}
