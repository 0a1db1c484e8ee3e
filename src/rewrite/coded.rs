//! The nodes that look up rows stored as [`ProductCodes`], computing bit for bit what
//! [`ProductCodes::decode_rows`] computes.
//!
//! Standard operators only, valid from ONNX opset 13 on, that tract, onnxruntime and
//! onnxruntime-web run. With `m` positions of `sub` values, `K` codewords, `rows [.., 1]` (int64
//! GatherND indices) and `N` the number of rows looked up:
//! ```text
//! GatherND(codes [n, m] uint8, rows) -> Reshape([-1, m]) -> Cast(int32)
//!     -> Add(offsets [1, m] int32: p·K)                      flat codeword indices [N, m]
//! (zero row z:  Where(Equal(Reshape(Cast(rows, int32), [-1, 1]), z), m·K, .): rows z take the
//!               zero codeword at the codebook's end)
//! GatherND(codebook [m·K (+1), sub] int8, Unsqueeze(Cast int64 (.), -1)) -> [N, m, sub]
//!     -> Cast(float) -> Mul(scales [1, m, sub] f32)
//!     -> Reshape([-1, m·sub]) -> Slice(:cols) when the last sub-vector is padded
//!     -> Reshape(Concat(Shape(rows)[:-1], [cols]))
//! ```
//! Both tensors are read by GatherND, which no quantizer rewrites (see `patch`).
//! The codebook's int8 values widen to f32 exactly and one f32 product scales them, as
//! [`ProductCodes::decode_rows`] does, so the output is the decoded rows exactly.
//! A layout of several branches needs a row that looks up to zeros for the ids of the other
//! branches: it is the row `z = n` appended to the codes (its codes are 0, never read as such)
//! with one zero codeword appended to the codebook, so any number of codewords up to 256 works.

use crate::codes::ProductCodes;
use crate::error::Result;
use crate::onnx::build::{Subgraph, int_attr};
use crate::onnx::build::Names;
use crate::onnx::proto::{TensorProto, tensor_proto::DataType};
use crate::onnx::tensor::{FloatType, byte_tensor, float_tensor, int32_tensor, int64_tensor};

/// The initializers holding coded rows, their names and what the lookup needs to know of them.
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    /// `[n (+1), m]` uint8.
    pub codes: String,
    /// `[m·codewords (+1), sub]` int8.
    pub codebook: String,
    /// `[1, m, sub]` f32.
    pub scales: String,
    /// The row of zeros, `n`, when stored.
    pub zero_row: Option<usize>,
    pub positions: usize,
    pub codewords: usize,
    pub sub: usize,
    pub cols: usize,
    /// The raw data: [`ProductCodes::bytes`], and with a zero row `m` bytes of codes and
    /// `sub` of codebook more (what the branch's footprint counts).
    pub initializers: Vec<TensorProto>,
}

/// The initializers of `pc`, with a zero row when `zero_row`, named `{prefix}codes`,
/// `{prefix}codebook` and `{prefix}codebook_scales` (or the next free names).
pub(crate) fn stored(pc: &ProductCodes, zero_row: bool, names: &mut Names, prefix: &str) -> Stored {
    let (n, m, sub) = (pc.rows(), pc.positions(), pc.sub());
    let extra = usize::from(zero_row);
    let codes = names.fresh(&format!("{prefix}codes"));
    let codebook = names.fresh(&format!("{prefix}codebook"));
    let scales = names.fresh(&format!("{prefix}codebook_scales"));
    let mut code_bytes: Vec<u8> = pc.codes.iter().copied().collect();
    code_bytes.resize((n + extra) * m, 0);
    let mut words: Vec<u8> = pc.codebook.iter().map(|&v| v as u8).collect();
    words.resize((pc.codebook.nrows() + extra) * sub, 0);
    let initializers = vec![
        byte_tensor(&codes, &[n + extra, m], &code_bytes, false),
        byte_tensor(&codebook, &[pc.codebook.nrows() + extra, sub], &words, true),
        float_tensor(&scales, &[1, m, sub], pc.scales.as_slice().expect("standard layout"), FloatType::F32),
    ];
    Stored {
        codes,
        codebook,
        scales,
        zero_row: zero_row.then_some(n),
        positions: m,
        codewords: pc.codewords,
        sub,
        cols: pc.cols,
        initializers,
    }
}

/// The nodes computing `output` `[.., cols]` f32, the rows `rows` `[.., 1]` (int64 GatherND
/// indices, as `patch` reads every stored tensor) of the coded table `stored`, added to `g`.
/// Both tensors are read by GatherND, which no quantizer's registry rewrites. Node names start with `prefix`, constants' with `prefix` under
/// `embcomp-const/` instead of `embcomp/`.
pub(crate) fn emit(g: &mut Subgraph, prefix: &str, stored: &Stored, rows: &str, output: &str) -> Result<()> {
    let constants = prefix.replacen("embcomp/", "embcomp-const/", 1);
    let (m, k, sub, cols) = (stored.positions, stored.codewords, stored.sub, stored.cols);
    let constant = |g: &mut Subgraph, what: &str, tensor: &dyn Fn(&str) -> TensorProto| {
        let name = g.names.fresh(&format!("{constants}{what}"));
        g.initializers.push(tensor(&name));
        name
    };
    let i64s = |v: Vec<i64>| move |name: &str| int64_tensor(name, &[v.len()], &v);

    let gathered = g.op(prefix, "GatherND", &[&stored.codes, rows], "code_rows", vec![]);
    let shape = constant(g, "codes_shape", &i64s(vec![-1, m as i64]));
    let flat = g.op(prefix, "Reshape", &[&gathered, &shape], "codes", vec![]);
    let flat = g.op(prefix, "Cast", &[&flat], "codes_i32", vec![int_attr("to", DataType::Int32 as i64)]);
    let offsets: Vec<i32> = (0..m).map(|p| (p * k) as i32).collect();
    let offsets = constant(g, "position_offsets", &|name| int32_tensor(name, &[1, m], &offsets));
    let mut index = g.op(prefix, "Add", &[&flat, &offsets], "codeword_index", vec![]);
    if let Some(z) = stored.zero_row {
        let r = g.op(prefix, "Cast", &[rows], "rows_i32", vec![int_attr("to", DataType::Int32 as i64)]);
        let shape = constant(g, "rows_shape", &i64s(vec![-1, 1]));
        let r = g.op(prefix, "Reshape", &[&r, &shape], "rows_column", vec![]);
        let zero_row = constant(g, "zero_row", &|name| int32_tensor(name, &[1, 1], &[z as i32]));
        let is_zero = g.op(prefix, "Equal", &[&r, &zero_row], "is_zero_row", vec![]);
        let zero_word = constant(g, "zero_codeword", &|name| int32_tensor(name, &[1, 1], &[(m * k) as i32]));
        index = g.op(prefix, "Where", &[&is_zero, &zero_word, &index], "codeword_index_or_zero", vec![]);
    }
    let index = g.op(prefix, "Cast", &[&index], "codeword_index_i64", vec![int_attr("to", DataType::Int64 as i64)]);
    let last = constant(g, "last_axis", &i64s(vec![-1]));
    let index = g.op(prefix, "Unsqueeze", &[&index, &last], "codeword_index_nd", vec![]);
    let words = g.op(prefix, "GatherND", &[&stored.codebook, &index], "codewords", vec![]);
    let words = g.op(prefix, "Cast", &[&words], "codewords_units", vec![int_attr("to", DataType::Float as i64)]);
    let words = g.op(prefix, "Mul", &[&words, &stored.scales], "codewords_f32", vec![]);
    let shape = constant(g, "values_shape", &i64s(vec![-1, (m * sub) as i64]));
    let mut values = g.op(prefix, "Reshape", &[&words, &shape], "padded_values", vec![]);
    if m * sub > cols {
        let (start, end, axes) = (
            constant(g, "unpad_start", &i64s(vec![0])),
            constant(g, "unpad_end", &i64s(vec![cols as i64])),
            constant(g, "unpad_axes", &i64s(vec![1])),
        );
        values = g.op(prefix, "Slice", &[&values, &start, &end, &axes], "values_unpadded", vec![]);
    }
    // [.., cols]: the rows' dims (without their last, 1), then cols.
    let lead = g.op(prefix, "Shape", &[rows], "rows_shape", vec![]);
    let (start, end, axes) = (constant(g, "lead_start", &i64s(vec![0])), constant(g, "lead_end", &i64s(vec![-1])), constant(g, "lead_axes", &i64s(vec![0])));
    let lead = g.op(prefix, "Slice", &[&lead, &start, &end, &axes], "lead_shape", vec![]);
    let cols_t = constant(g, "cols", &i64s(vec![cols as i64]));
    let out_shape = g.op(prefix, "Concat", &[&lead, &cols_t], "out_shape", vec![int_attr("axis", 0)]);
    let name = g.names.fresh(&format!("{prefix}reshape_out"));
    g.nodes.push(crate::onnx::build::node(&name, "Reshape", &[&values, &out_shape], &[output], vec![]));
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::check::tract::{Runner, as_f32};
    use crate::codes::CodeParams;
    use crate::error::Role;
    use crate::onnx::Model;
    use crate::onnx::build::lookup_model;
    use crate::onnx::graph::GraphView;
    use crate::onnx::tensor::FloatType;
    use crate::rewrite::find::find_embedding;
    use crate::rewrite::{Branch, Layout, Values, patch};
    use ndarray::Array2;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use tract_onnx::prelude::Tensor;

    fn table(n: usize, d: usize, seed: u64) -> Array2<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        Array2::from_shape_fn((n, d), |(r, _)| rng.random_range(-1.0f32..1.0) * [0.05, 0.5, 2.0][r % 3])
    }

    fn params(codewords: usize) -> CodeParams {
        CodeParams { codewords, sample_rows: 0, iters: 5, ..CodeParams::default() }
    }

    /// `table`'s lookup model at `opset`, patched with `layout`.
    fn patched(table: &Array2<f32>, layout: &Layout, opset: i64) -> Model {
        let (n, d) = table.dim();
        let mut model = lookup_model(n, d, table.as_slice().unwrap(), "coded test");
        model.proto.opset_import[0].version = Some(opset);
        model.proto.ir_version = Some(if opset < 15 { 7 } else { 8 });
        let candidate = find_embedding(&GraphView::new(model.graph()), None).unwrap().chosen().unwrap().clone();
        patch::apply(&mut model, &candidate, layout, false, false).unwrap();
        model
    }

    /// The lookup of `ids` (of `shape`) in tract, checked equal bit for bit to the layout's
    /// reconstruction (the decoded codes).
    fn assert_lookup_exact(model: &Model, layout: &Layout, ids: &[usize], shape: &[usize]) {
        let (got, want) = lookup(model, layout, ids, shape);
        for (i, (g, w)) in got.iter().zip(want.iter()).enumerate() {
            assert_eq!(g.to_bits(), w.to_bits(), "element {i}: tract {g}, decoded {w}");
        }
    }

    /// The lookup of `ids` in tract, checked equal to the layout's reconstruction up to the
    /// rounding of the product by the basis (relative Frobenius difference 1e-6).
    fn assert_lookup_close(model: &Model, layout: &Layout, ids: &[usize], shape: &[usize]) {
        let (got, want) = lookup(model, layout, ids, shape);
        let diff: f64 = got.iter().zip(want.iter()).map(|(g, w)| ((g - w) as f64).powi(2)).sum();
        let norm: f64 = want.iter().map(|w| (*w as f64).powi(2)).sum();
        assert!(diff <= 1e-12 * norm, "relative difference {:.3e}", (diff / norm).sqrt());
    }

    /// The lookup of `ids` (of `shape`) in tract, checked to be `[shape.., d]`, and the layout's
    /// reconstruction of them.
    fn lookup(model: &Model, layout: &Layout, ids: &[usize], shape: &[usize]) -> (Vec<f32>, Array2<f32>) {
        let values: Vec<i64> = ids.iter().map(|&i| i as i64).collect();
        let fed = vec![("input_ids".to_string(), Tensor::from_shape(shape, &values).unwrap())];
        let out = Runner::load(model, Role::Rewritten, &fed, &[]).unwrap().run(&fed).unwrap();
        assert_eq!(out[0].shape(), [shape, &[layout.d]].concat().as_slice());
        let want = layout.reconstruct(ids);
        dump(model, &values, shape, &want);
        (as_f32(&out[0]).unwrap(), want)
    }

    /// Writes the model, its input and the expected output under `$EMBCOMP_CODED_DUMP` (when
    /// set), as `codedN.onnx`, `codedN.inputs.json` (the exchange format of
    /// `tests/runtimes/ort_run.py` and `ort_web_run.mjs`) and `codedN.expected.json`, for
    /// checking the same graphs in onnxruntime and onnxruntime-web.
    fn dump(model: &Model, ids: &[i64], shape: &[usize], want: &Array2<f32>) {
        static COUNT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let Ok(dir) = std::env::var("EMBCOMP_CODED_DUMP") else { return };
        let dir = std::path::Path::new(&dir);
        std::fs::create_dir_all(dir).unwrap();
        let tag = format!("coded{}", COUNT.fetch_add(1, std::sync::atomic::Ordering::SeqCst));
        std::fs::write(dir.join(format!("{tag}.onnx")), model.encode()).unwrap();
        let input = serde_json::json!({ "name": "input_ids", "dtype": "int64", "shape": shape, "values": ids });
        let inputs = serde_json::json!({ "runs": [{ "inputs": [input] }] });
        std::fs::write(dir.join(format!("{tag}.inputs.json")), inputs.to_string()).unwrap();
        let values: Vec<f64> = want.iter().map(|&v| v as f64).collect();
        std::fs::write(dir.join(format!("{tag}.expected.json")), serde_json::json!({ "values": values }).to_string()).unwrap();
    }

    fn ids(n: usize, count: usize, seed: u64) -> Vec<usize> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut ids: Vec<usize> = (0..count).map(|_| rng.random_range(0..n)).collect();
        ids[..2].copy_from_slice(&[0, n - 1]);
        ids
    }

    fn coded_layout(t: &Array2<f32>, branches: Vec<Branch>) -> Layout {
        let (n, d) = t.dim();
        Layout { n, d, dtype: FloatType::F32, basis_dtype: FloatType::F16, branches }
    }

    #[test]
    fn a_coded_table_looks_up_its_decoded_rows_in_tract() {
        // 10 columns: sub-vectors of 4 leave the last one padded; 3 also pads, 5 and 10 do not.
        let t = table(300, 10, 1);
        for sub in [4, 3, 5, 10] {
            let branch = Layout::coded_branch(t.view(), (0..300).collect(), &CodeParams { sub, ..params(16) }, None, 1).unwrap();
            let layout = coded_layout(&t, vec![branch]);
            // the layout's figures are those of the decoded rows
            let decoded = layout.branches[0].values.dequantized().into_owned();
            assert_eq!(layout.reconstruct(&(0..300).collect::<Vec<_>>()), decoded);
            let diff: f64 = t.iter().zip(decoded.iter()).map(|(a, b)| ((a - b) as f64).powi(2)).sum();
            let norm: f64 = t.iter().map(|a| (*a as f64).powi(2)).sum();
            let (e, weighted) = layout.errors(t.view(), Some(&[1.0; 300]), 1);
            assert!((e - (diff / norm).sqrt()).abs() < 1e-9 && (weighted.unwrap() - e).abs() < 1e-9, "{e}");
            for opset in [13, 17] {
                let model = patched(&t, &layout, opset);
                assert_lookup_exact(&model, &layout, &ids(300, 14, 2), &[2, 7]);
            }
        }
    }

    #[test]
    fn coded_rows_beside_a_plain_tier_look_up_exactly() {
        // Frequent rows as floats, the rest coded with every code in use (256 codewords): the
        // other tier's ids read the coded branch's zero row, which must give zeros.
        let t = table(700, 8, 3);
        let hot: Vec<usize> = (0..700).step_by(7).collect();
        let rare: Vec<usize> = (0..700).filter(|r| r % 7 != 0).collect();
        let plain = Layout::plain_branch(t.view(), hot, FloatType::F32, None).unwrap();
        let coded = Layout::coded_branch(t.view(), rare, &params(256), None, 1).unwrap();
        let layout = coded_layout(&t, vec![plain, coded]);
        let model = patched(&t, &layout, 13);
        for shape in [vec![40], vec![2, 20], vec![1, 4, 10]] {
            assert_lookup_exact(&model, &layout, &ids(700, 40, 4), &shape);
        }
        // Every hot row is exact: the coded branch added zeros.
        let hot_ids: Vec<usize> = (0..700).step_by(7).take(20).collect();
        assert_lookup_exact(&model, &layout, &hot_ids, &[20]);
        assert_eq!(layout.reconstruct(&hot_ids), t.select(ndarray::Axis(0), &hot_ids));
    }

    #[test]
    fn rotated_codes_look_up_their_reconstruction_in_tract() {
        let t = table(700, 10, 6);
        let p = CodeParams { sub: 4, ..params(32) };
        let rotated = Layout::rotated_coded_branch(t.view(), (0..700).collect(), &p, None, FloatType::F16, 1).unwrap();
        let basis = rotated.basis.as_ref().unwrap();
        assert_eq!(basis.dim(), (10, 10));
        assert!(basis.iter().all(|&v| half::f16::from_f32(v).to_f32() == v), "the basis as stored");
        let mut layout = coded_layout(&t, vec![rotated]);
        let model = patched(&t, &layout, 13);
        assert_lookup_close(&model, &layout, &ids(700, 14, 7), &[2, 7]);
        // beside a plain tier: coefficients, a MatMul, and rows added
        let hot: Vec<usize> = (0..700).step_by(5).collect();
        let rare: Vec<usize> = (0..700).filter(|r| r % 5 != 0).collect();
        let w: Vec<f32> = (0..700).map(|i| 1.0 + (i % 3) as f32).collect();
        layout.branches = vec![
            Layout::plain_branch(t.view(), hot, FloatType::F32, None).unwrap(),
            Layout::rotated_coded_branch(t.view(), rare, &p, Some(&w), FloatType::F16, 1).unwrap(),
        ];
        let model = patched(&t, &layout, 17);
        assert_lookup_close(&model, &layout, &ids(700, 30, 8), &[3, 10]);
        let f = layout.footprint();
        assert_eq!(f.bases.bytes, 2 * 10 * 10);
        assert_eq!(f.coefficients.bytes, (560 + 1) * 3);
        // quantizing a layout's coefficients leaves codes as they are
        let quant = crate::quant::QuantParams { bits: crate::quant::Bits::B4, block: 32, scheme: crate::quant::Scheme::Symmetric };
        assert_eq!(layout.quantized(&quant, FloatType::F16).unwrap().branches[1], layout.branches[1]);
    }

    #[test]
    fn rotation_lowers_the_error_of_correlated_columns() {
        // Rows near an 8-dimensional subspace of R^16: the principal axes hold the energy.
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let a = Array2::from_shape_fn((8, 16), |_| rng.random_range(-1.0f32..1.0));
        let z = Array2::from_shape_fn((2000, 8), |_| rng.random_range(-1.0f32..1.0));
        let t = z.dot(&a) + Array2::from_shape_fn((2000, 16), |_| 0.01 * rng.random_range(-1.0f32..1.0));
        let p = CodeParams { sub: 4, ..params(16) };
        let all: Vec<usize> = (0..2000).collect();
        let plain = coded_layout(&t, vec![Layout::coded_branch(t.view(), all.clone(), &p, None, 1).unwrap()]);
        let rotated = coded_layout(&t, vec![Layout::rotated_coded_branch(t.view(), all, &p, None, FloatType::F16, 1).unwrap()]);
        let (e_plain, _) = plain.errors(t.view(), None, 1);
        let (e_rotated, _) = rotated.errors(t.view(), None, 1);
        assert!(e_rotated < 0.8 * e_plain, "rotated {e_rotated} vs plain {e_plain}");
    }

    #[test]
    fn stored_bytes_are_the_footprint() {
        let t = table(700, 10, 5);
        let plain = Layout::plain_branch(t.view(), (0..100).collect(), FloatType::F32, None).unwrap();
        let coded = Layout::coded_branch(t.view(), (100..700).collect(), &params(64), None, 1).unwrap();
        let Values::Codes(pc) = &coded.values else { panic!("coded") };
        assert_eq!((pc.positions(), pc.bytes().codes, pc.bytes().codebook), (3, 600 * 3, 3 * 64 * 4 + 4 * 3 * 4));
        for (branches, zero_row) in [(vec![coded.clone()], false), (vec![plain, coded], true)] {
            let layout = coded_layout(&t, branches);
            let f = layout.footprint();
            let model = patched(&t, &layout, 13);
            let len = |suffix: &str| -> u64 {
                let found: Vec<u64> = model
                    .graph()
                    .initializer
                    .iter()
                    .filter(|i| i.name().starts_with("embcomp/") && i.name().ends_with(suffix))
                    .map(|i| i.raw_data.as_ref().unwrap().len() as u64)
                    .collect();
                assert_eq!(found.len(), 1, "{suffix}");
                found[0]
            };
            let z = u64::from(zero_row);
            assert_eq!(len("codes"), (600 + z) * 3);
            assert_eq!(len("codebook"), (3 * 64 + z) * 4);
            assert_eq!(len("codebook_scales"), 4 * 3 * 4);
            assert_eq!(f.codebooks.bytes, len("codebook") + len("codebook_scales"));
            assert_eq!(f.codebooks.numbers, (3 * 64 + z) * 4 + 3 * 4);
            let coded_part = *f.branches.last().unwrap();
            assert_eq!(coded_part.bytes, len("codes") + len("codebook") + len("codebook_scales"));
            assert_eq!(f.bytes(), f.plain.bytes + f.codebooks.bytes + f.index.bytes);
            // every initializer the patch added is counted, no more
            let added: u64 = model
                .graph()
                .initializer
                .iter()
                .filter(|i| i.name().starts_with("embcomp/"))
                .map(|i| i.raw_data.as_ref().unwrap().len() as u64)
                .sum();
            assert_eq!(added, f.bytes());
        }
    }
}
