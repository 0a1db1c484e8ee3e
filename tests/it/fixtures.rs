//! Deterministic generator of the tiny ONNX fixtures in `fixtures/`, and the test that keeps the
//! committed files equal to what the generator writes.
//!
//! Regenerate with `ONNX_EMBCOMP_BLESS=1 cargo test fixtures_match_generator`.
//!
//! Every random number comes from a seeded `ChaCha8Rng`, and only correctly rounded float
//! operations (+, -, *, /, sqrt) are used, so the bytes are the same on every machine.

use std::path::PathBuf;

use onnx_embcomp::Model;
pub use onnx_embcomp::onnx::build::{Dim, float_attr, int_attr, ints_attr, node, value_info};
use onnx_embcomp::onnx::proto::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto, tensor_proto::DataType,
};
use onnx_embcomp::onnx::tensor::{FloatType, float_tensor, int64_tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Word table of the encoder.
pub const ENCODER_TABLE: &str = "embeddings.word_embeddings.weight";
/// The encoder's word-embedding Gather.
pub const ENCODER_GATHER: &str = "/embeddings/word_embeddings/Gather";
/// Position table of the encoder (its Gather indices are computed from the input's shape).
pub const ENCODER_POSITION_GATHER: &str = "/embeddings/position_embeddings/Gather";
/// Token-type table of the encoder (2 rows).
pub const ENCODER_TOKEN_TYPE_TABLE: &str = "embeddings.token_type_embeddings.weight";
/// Its Gather.
pub const ENCODER_TOKEN_TYPE_GATHER: &str = "/embeddings/token_type_embeddings/Gather";
/// Rows, columns, subspaces and subspace dimension of the encoder's word table.
pub const ENCODER_SHAPE: (usize, usize, usize, usize) = (1000, 64, 4, 6);

/// Word table of the decoder (tied to its LM head).
pub const DECODER_TABLE: &str = "model.embed_tokens.weight";
/// The decoder's word-embedding Gather.
pub const DECODER_GATHER: &str = "/model/embed_tokens/Gather";
/// The tied LM head's Transpose of the word table.
pub const DECODER_TIED_TRANSPOSE: &str = "/lm_head/Transpose_tied";
/// Rows, columns, subspaces and subspace dimension of the decoder's word table.
pub const DECODER_SHAPE: (usize, usize, usize, usize) = (800, 48, 3, 5);

const ENCODER_TABLE_SEED: u64 = 0x656e_636f_6465_7201; // "encoder" + 1
const ENCODER_WEIGHTS_SEED: u64 = 0x656e_636f_6465_7202;
const DECODER_TABLE_SEED: u64 = 0x6465_636f_6465_7201;
const DECODER_WEIGHTS_SEED: u64 = 0x6465_636f_6465_7202;

/// A word table whose rows lie near known random subspaces.
pub struct ClusteredTable {
    pub rows: usize,
    pub cols: usize,
    /// Row-major `[rows, cols]`.
    pub data: Vec<f32>,
    /// The subspace each row was drawn from.
    pub labels: Vec<usize>,
    /// Orthonormal basis of each subspace: `dim` vectors of length `cols`.
    pub bases: Vec<Vec<Vec<f64>>>,
}

/// `rows` rows, each `s * (B_c u) / |B_c u| + noise` with c a random subspace of dimension `dim`
/// (of `k`), u uniform in [-1, 1]^dim, s uniform in [0.5, 2] and noise of relative norm ~1e-3.
pub fn clustered_table(seed: u64, rows: usize, cols: usize, k: usize, dim: usize) -> ClusteredTable {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let bases: Vec<Vec<Vec<f64>>> = (0..k).map(|_| orthonormal_basis(&mut rng, cols, dim)).collect();
    let mut data = Vec::with_capacity(rows * cols);
    let mut labels = Vec::with_capacity(rows);
    let noise_scale = 1e-3 * (3.0 / cols as f64).sqrt(); // uniform [-1,1] has variance 1/3
    for _ in 0..rows {
        let c = rng.random_range(0..k);
        let coef: Vec<f64> = (0..dim).map(|_| rng.random_range(-1.0..1.0)).collect();
        let mut row = vec![0f64; cols];
        for (b, &a) in bases[c].iter().zip(&coef) {
            for (r, &v) in row.iter_mut().zip(b) {
                *r += a * v;
            }
        }
        let norm = row.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12);
        let scale: f64 = rng.random_range(0.5..2.0);
        for r in &mut row {
            let noise: f64 = rng.random_range(-1.0..1.0);
            *r = scale * (*r / norm + noise_scale * noise);
        }
        data.extend(row.iter().map(|&v| v as f32));
        labels.push(c);
    }
    ClusteredTable { rows, cols, data, labels, bases }
}

/// `dim` orthonormal vectors of length `cols` (Gram-Schmidt, twice, on uniform vectors).
fn orthonormal_basis(rng: &mut ChaCha8Rng, cols: usize, dim: usize) -> Vec<Vec<f64>> {
    let mut basis: Vec<Vec<f64>> = Vec::with_capacity(dim);
    while basis.len() < dim {
        let mut v: Vec<f64> = (0..cols).map(|_| rng.random_range(-1.0..1.0)).collect();
        for _ in 0..2 {
            for b in &basis {
                let dot: f64 = v.iter().zip(b).map(|(x, y)| x * y).sum();
                for (x, y) in v.iter_mut().zip(b) {
                    *x -= dot * y;
                }
            }
        }
        let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        if norm > 1e-6 {
            basis.push(v.iter().map(|x| x / norm).collect());
        }
    }
    basis
}

/// The encoder's word table.
pub fn encoder_table() -> ClusteredTable {
    let (n, d, k, dim) = ENCODER_SHAPE;
    clustered_table(ENCODER_TABLE_SEED, n, d, k, dim)
}

/// The decoder's word table.
pub fn decoder_table() -> ClusteredTable {
    let (n, d, k, dim) = DECODER_SHAPE;
    clustered_table(DECODER_TABLE_SEED, n, d, k, dim)
}

/// The BERT-like encoder of `fixtures/encoder.onnx`.
pub fn encoder() -> Model {
    encoder_with(FloatType::F32)
}

/// The encoder with its word table stored as `word_dtype`; for a type other than f32 a Cast to
/// float follows the word Gather, so the rest of the graph stays f32.
pub fn encoder_with(word_dtype: FloatType) -> Model {
    encoder_variant(&Variant { word_dtype, ..Variant::default() })
}

/// How the token ids reach the word Gather.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Ids {
    /// `input_ids` is an INT64 graph input read directly.
    Int64,
    /// `input_ids` is an INT32 graph input read directly.
    Int32,
    /// `input_ids` is INT64 and goes through `Cast(to INT32)` before the Gather.
    CastToInt32,
}

/// A variant of the encoder, for coverage tests; `Variant::default()` builds the committed
/// fixture byte for byte.
#[derive(Debug, Clone)]
pub struct Variant {
    pub word_dtype: FloatType,
    pub ids: Ids,
    pub opset: i64,
    pub ir_version: i64,
    /// Also output the embedding LayerNorm's output and the word lookup's own output.
    pub extra_outputs: bool,
    /// RoBERTa-like position ids computed from the values of `input_ids` (cumulative sum of the
    /// non-padding mask), on a 1200-row position table: more rows than the word table, so only
    /// the guard on computed indices keeps it from being chosen. Needs `Ids::Int64`.
    pub positions_from_ids: bool,
    /// A T5-like relative attention bias table `[32, 8]` (more rows than columns) gathered with
    /// buckets computed from the sequence length; its lookup is the output `position_bias`.
    pub relative_bias: bool,
    /// A second input `decoder_input_ids` looked up in the same word table (shared encoder and
    /// decoder embeddings); its lookup is the output `decoder_embeddings`.
    pub second_lookup: bool,
}

impl Default for Variant {
    fn default() -> Self {
        Variant {
            word_dtype: FloatType::F32,
            ids: Ids::Int64,
            opset: 17,
            ir_version: 8,
            extra_outputs: false,
            positions_from_ids: false,
            relative_bias: false,
            second_lookup: false,
        }
    }
}

/// The encoder as `v` describes it.
pub fn encoder_variant(v: &Variant) -> Model {
    let word_dtype = v.word_dtype;
    let (_, d, _, _) = ENCODER_SHAPE;
    let hidden = 2 * d;
    let table = encoder_table();
    let mut rng = ChaCha8Rng::seed_from_u64(ENCODER_WEIGHTS_SEED);
    let mut g = Builder::default();
    let positions = if v.positions_from_ids { 1200 } else { 128 };

    g.init(float_tensor(ENCODER_TABLE, &[table.rows, d], &table.data, word_dtype));
    g.init(float_tensor(
        "embeddings.position_embeddings.weight",
        &[positions, d],
        &uniform(&mut rng, positions * d, 0.1),
        FloatType::F32,
    ));
    g.init(float_tensor(ENCODER_TOKEN_TYPE_TABLE, &[2, d], &uniform(&mut rng, 2 * d, 0.1), FloatType::F32));
    g.init(int64_tensor("/embeddings/Constant_1", &[], &[1]));
    g.init(int64_tensor("/embeddings/Constant_0", &[], &[0]));
    g.init(int64_tensor("/embeddings/Constant_step", &[], &[1]));
    g.init(int64_tensor("/embeddings/axes_0", &[1], &[0]));
    g.init(int64_tensor("/axes_last", &[1], &[-1]));

    let word = "/embeddings/word_embeddings/Gather_output_0";
    let ids = if v.ids == Ids::CastToInt32 {
        let cast = vec![int_attr("to", DataType::Int32 as i64)];
        g.node("/embeddings/ids/Cast", "Cast", &["input_ids"], &["/embeddings/ids_int32"], cast);
        "/embeddings/ids_int32"
    } else {
        "input_ids"
    };
    g.lookup("/embeddings/word_embeddings", ENCODER_TABLE, ids, word, word_dtype);
    if v.positions_from_ids {
        g.positions_from_ids("input_ids", "/embeddings/position_ids");
    } else {
        g.positions_from_shape("input_ids", "/embeddings/position_ids");
    }
    g.node(
        ENCODER_POSITION_GATHER,
        "Gather",
        &["embeddings.position_embeddings.weight", "/embeddings/position_ids"],
        &["/embeddings/position_embeddings/Gather_output_0"],
        vec![],
    );
    g.node(
        ENCODER_TOKEN_TYPE_GATHER,
        "Gather",
        &[ENCODER_TOKEN_TYPE_TABLE, "token_type_ids"],
        &["/embeddings/token_type_embeddings/Gather_output_0"],
        vec![],
    );
    g.node(
        "/embeddings/Add",
        "Add",
        &[word, "/embeddings/position_embeddings/Gather_output_0"],
        &["/embeddings/Add_output_0"],
        vec![],
    );
    g.node(
        "/embeddings/Add_1",
        "Add",
        &["/embeddings/Add_output_0", "/embeddings/token_type_embeddings/Gather_output_0"],
        &["/embeddings/Add_1_output_0"],
        vec![],
    );
    let ln = g.layer_norm(&mut rng, "/embeddings/LayerNorm", "/embeddings/Add_1_output_0", d);
    let mlp = g.mlp(&mut rng, "/encoder/mlp", &ln, d, hidden);
    g.mask_multiply("/encoder", &mlp, "attention_mask", "last_hidden_state");

    let sym = |names: &[&'static str]| names.iter().map(|&n| Dim::Sym(n)).collect::<Vec<_>>();
    let ids_type = if v.ids == Ids::Int32 { DataType::Int32 } else { DataType::Int64 };
    let mut input = vec![
        value_info("input_ids", ids_type, &sym(&["batch", "sequence"])),
        value_info("attention_mask", DataType::Int64, &sym(&["batch", "sequence"])),
        value_info("token_type_ids", DataType::Int64, &sym(&["batch", "sequence"])),
    ];
    let hidden_state = |name: &str| {
        value_info(name, DataType::Float, &[Dim::Sym("batch"), Dim::Sym("sequence"), Dim::Fixed(d as i64)])
    };
    let mut output = vec![hidden_state("last_hidden_state")];
    if v.extra_outputs {
        output.push(hidden_state(&ln));
        output.push(hidden_state(word));
    }
    if v.relative_bias {
        let heads = 8;
        g.init(float_tensor("relative_attention_bias.weight", &[32, heads], &uniform(&mut rng, 32 * heads, 0.5), FloatType::F32));
        g.relative_buckets("input_ids", "/rel/buckets", 31);
        g.node("/rel/Gather", "Gather", &["relative_attention_bias.weight", "/rel/buckets"], &["/rel/bias"], vec![]);
        g.node("/rel/Transpose", "Transpose", &["/rel/bias"], &["position_bias"], vec![ints_attr("perm", &[2, 0, 1])]);
        let dims = [Dim::Fixed(heads as i64), Dim::Sym("sequence"), Dim::Sym("sequence")];
        output.push(value_info("position_bias", DataType::Float, &dims));
    }
    if v.second_lookup {
        input.push(value_info("decoder_input_ids", DataType::Int64, &sym(&["batch", "sequence"])));
        g.lookup("/decoder/embed_tokens", ENCODER_TABLE, "decoder_input_ids", "decoder_embeddings", word_dtype);
        output.push(hidden_state("decoder_embeddings"));
    }
    let graph = GraphProto { name: Some("encoder".into()), node: g.nodes, initializer: g.inits, input, output, ..Default::default() };
    let mut model = model(graph);
    model.proto.ir_version = Some(v.ir_version);
    model.proto.opset_import[0].version = Some(v.opset);
    model
}

/// A minimal model any opset from 11 on accepts (no LayerNormalization, no Unsqueeze):
/// `input_ids -> Gather(table) [-> Cast to float] -> MatMul(W [d, d]) -> hidden`.
pub fn embedding_only(table: &ClusteredTable, dtype: FloatType, opset: i64, ir_version: i64) -> Model {
    let d = table.cols;
    let mut rng = ChaCha8Rng::seed_from_u64(ENCODER_WEIGHTS_SEED);
    let mut g = Builder::default();
    g.init(float_tensor("word_embeddings.weight", &[table.rows, d], &table.data, dtype));
    g.init(float_tensor("dense.weight", &[d, d], &uniform(&mut rng, d * d, 1.0 / (d as f32).sqrt()), FloatType::F32));
    g.lookup("/word_embeddings", "word_embeddings.weight", "input_ids", "/word_embeddings/output", dtype);
    g.node("/dense/MatMul", "MatMul", &["/word_embeddings/output", "dense.weight"], &["hidden"], vec![]);
    let graph = GraphProto {
        name: Some("embedding".into()),
        node: g.nodes,
        initializer: g.inits,
        input: vec![value_info("input_ids", DataType::Int64, &[Dim::Sym("batch"), Dim::Sym("sequence")])],
        output: vec![value_info("hidden", DataType::Float, &[Dim::Sym("batch"), Dim::Sym("sequence"), Dim::Fixed(d as i64)])],
        ..Default::default()
    };
    let mut model = model(graph);
    model.proto.ir_version = Some(ir_version);
    model.proto.opset_import[0].version = Some(opset);
    model
}

/// The tiny tied decoder of `fixtures/decoder.onnx`.
pub fn decoder() -> Model {
    let (n, d, _, _) = DECODER_SHAPE;
    let table = decoder_table();
    let mut rng = ChaCha8Rng::seed_from_u64(DECODER_WEIGHTS_SEED);
    let mut g = Builder::default();
    g.init(float_tensor(DECODER_TABLE, &[n, d], &table.data, FloatType::F32));
    g.init(int64_tensor("/axes_last", &[1], &[-1]));

    let emb = "/model/embed_tokens/Gather_output_0";
    g.node(DECODER_GATHER, "Gather", &[DECODER_TABLE, "input_ids"], &[emb], vec![]);
    let ln = g.layer_norm(&mut rng, "/model/norm_in", emb, d);
    let mlp = g.mlp(&mut rng, "/model/mlp", &ln, d, 2 * d);
    let hidden = "/model/hidden";
    g.mask_multiply("/model", &mlp, "attention_mask", hidden);
    g.node(
        DECODER_TIED_TRANSPOSE,
        "Transpose",
        &[DECODER_TABLE],
        &["/lm_head/Transpose_tied_output_0"],
        vec![ints_attr("perm", &[1, 0])],
    );
    g.node("/lm_head/MatMul", "MatMul", &[hidden, "/lm_head/Transpose_tied_output_0"], &["logits"], vec![]);

    let int_input = |name: &str| value_info(name, DataType::Int64, &[Dim::Sym("batch"), Dim::Sym("sequence")]);
    let graph = GraphProto {
        name: Some("decoder".into()),
        node: g.nodes,
        initializer: g.inits,
        input: vec![int_input("input_ids"), int_input("attention_mask")],
        output: vec![value_info(
            "logits",
            DataType::Float,
            &[Dim::Sym("batch"), Dim::Sym("sequence"), Dim::Fixed(n as i64)],
        )],
        ..Default::default()
    };
    model(graph)
}

/// The decoder exported for generation, as optimum exports them: inputs `position_ids` and
/// a key cache `past_key_values.0.key` `[batch, 2, past_sequence_length, d / 2]`, the mask
/// over `past_sequence_length + sequence`, output `present.0.key` (the past with this step's
/// keys appended, from the hidden state), and logits shifted by the positions.
pub fn decoder_with_cache() -> Model {
    let (n, d, _, _) = DECODER_SHAPE;
    let mut m = decoder();
    let g = m.graph_mut();
    for o in g.node.iter_mut().flat_map(|n| n.output.iter_mut()).filter(|o| *o == "logits") {
        *o = "/lm_head/logits".into();
    }
    g.initializer.push(int64_tensor("/cache/shape", &[4], &[0, 0, 2, (d / 2) as i64]));
    g.initializer.push(float_tensor("/positions/step", &[], &[0.01], FloatType::F32));
    let nodes = [
        node("/cache/Reshape", "Reshape", &["/model/hidden", "/cache/shape"], &["/cache/heads"], vec![]),
        node("/cache/Transpose", "Transpose", &["/cache/heads"], &["/cache/key"], vec![ints_attr("perm", &[0, 2, 1, 3])]),
        node("/cache/Concat", "Concat", &["past_key_values.0.key", "/cache/key"], &["present.0.key"], vec![int_attr("axis", 2)]),
        node("/positions/Cast", "Cast", &["position_ids"], &["/positions/float"], vec![int_attr("to", DataType::Float as i64)]),
        node("/positions/Unsqueeze", "Unsqueeze", &["/positions/float", "/axes_last"], &["/positions/column"], vec![]),
        node("/positions/Mul", "Mul", &["/positions/column", "/positions/step"], &["/positions/shift"], vec![]),
        node("/lm_head/Add", "Add", &["/lm_head/logits", "/positions/shift"], &["logits"], vec![]),
    ];
    g.node.extend(nodes);
    let past = [Dim::Sym("batch"), Dim::Fixed(2), Dim::Sym("past_sequence_length"), Dim::Fixed((d / 2) as i64)];
    let present = [Dim::Sym("batch"), Dim::Fixed(2), Dim::Sym("past_sequence_length + sequence"), Dim::Fixed((d / 2) as i64)];
    g.input = vec![
        value_info("input_ids", DataType::Int64, &[Dim::Sym("batch"), Dim::Sym("sequence")]),
        value_info("attention_mask", DataType::Int64, &[Dim::Sym("batch"), Dim::Sym("past_sequence_length + sequence")]),
        value_info("position_ids", DataType::Int64, &[Dim::Sym("batch"), Dim::Sym("sequence")]),
        value_info("past_key_values.0.key", DataType::Float, &past),
    ];
    g.output = vec![
        value_info("logits", DataType::Float, &[Dim::Sym("batch"), Dim::Sym("sequence"), Dim::Fixed(n as i64)]),
        value_info("present.0.key", DataType::Float, &present),
    ];
    m
}

/// A model of opset 17, IR 8, produced by "onnx-embcomp-fixtures".
pub fn model(graph: GraphProto) -> Model {
    Model {
        proto: ModelProto {
            ir_version: Some(8),
            opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(17) }],
            producer_name: Some("onnx-embcomp-fixtures".into()),
            producer_version: Some("1".into()),
            graph: Some(graph),
            ..Default::default()
        },
    }
}

/// `count` values uniform in [-scale, scale).
fn uniform(rng: &mut ChaCha8Rng, count: usize, scale: f32) -> Vec<f32> {
    (0..count).map(|_| rng.random_range(-1.0f32..1.0) * scale).collect()
}

/// Nodes and initializers, in order.
#[derive(Default)]
struct Builder {
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
}

impl Builder {
    fn init(&mut self, t: TensorProto) {
        self.inits.push(t);
    }

    fn node(&mut self, name: &str, op: &str, inputs: &[&str], outputs: &[&str], attribute: Vec<AttributeProto>) {
        self.nodes.push(node(name, op, inputs, outputs, attribute));
    }

    /// `out = Gather(table, ids)` (node `{prefix}/Gather`), followed by a Cast to float when the
    /// table is not f32.
    fn lookup(&mut self, prefix: &str, table: &str, ids: &str, out: &str, dtype: FloatType) {
        let gather = format!("{prefix}/Gather");
        if dtype == FloatType::F32 {
            self.node(&gather, "Gather", &[table, ids], &[out], vec![]);
        } else {
            let raw = format!("{prefix}/Gather_output_raw");
            self.node(&gather, "Gather", &[table, ids], &[&raw], vec![]);
            let to_float = vec![int_attr("to", DataType::Float as i64)];
            self.node(&format!("{prefix}/Cast"), "Cast", &[&raw], &[out], to_float);
        }
    }

    /// Position ids `[1, len]` from the input's shape, as BERT exports compute them:
    /// `Unsqueeze(Range(0, Shape(ids)[1], 1), [0])`. Needs the encoder's constants.
    fn positions_from_shape(&mut self, ids: &str, out: &str) {
        self.node("/embeddings/Shape", "Shape", &[ids], &["/embeddings/Shape_output_0"], vec![]);
        self.node(
            "/embeddings/Gather",
            "Gather",
            &["/embeddings/Shape_output_0", "/embeddings/Constant_1"],
            &["/embeddings/seq_len"],
            vec![int_attr("axis", 0)],
        );
        self.node(
            "/embeddings/Range",
            "Range",
            &["/embeddings/Constant_0", "/embeddings/seq_len", "/embeddings/Constant_step"],
            &["/embeddings/Range_output_0"],
            vec![],
        );
        self.node("/embeddings/Unsqueeze", "Unsqueeze", &["/embeddings/Range_output_0", "/embeddings/axes_0"], &[out], vec![]);
    }

    /// Position ids from the values of INT64 `ids`, as RoBERTa exports compute them: the running
    /// count of non-padding tokens (padding id 1, counted in INT32), plus the padding id.
    fn positions_from_ids(&mut self, ids: &str, out: &str) {
        self.init(int64_tensor("/positions/pad", &[], &[1]));
        self.init(int64_tensor("/positions/axis", &[], &[1]));
        self.node("/positions/Equal", "Equal", &[ids, "/positions/pad"], &["/positions/is_pad"], vec![]);
        self.node("/positions/Not", "Not", &["/positions/is_pad"], &["/positions/not_pad"], vec![]);
        let to = |t: DataType| vec![int_attr("to", t as i64)];
        self.node("/positions/Cast", "Cast", &["/positions/not_pad"], &["/positions/mask"], to(DataType::Int32));
        self.node("/positions/CumSum", "CumSum", &["/positions/mask", "/positions/axis"], &["/positions/count"], vec![]);
        self.node("/positions/Mul", "Mul", &["/positions/count", "/positions/mask"], &["/positions/masked"], vec![]);
        self.node("/positions/Cast_1", "Cast", &["/positions/masked"], &["/positions/masked64"], to(DataType::Int64));
        self.node("/positions/Add", "Add", &["/positions/masked64", "/positions/pad"], &[out], vec![]);
    }

    /// T5-like relative position buckets `[len, len]`: `min(|j - i|, max_bucket)` over the
    /// positions of `ids`. Needs the encoder's constants.
    fn relative_buckets(&mut self, ids: &str, out: &str, max_bucket: i64) {
        self.init(int64_tensor("/rel/axes_1", &[1], &[1]));
        self.init(int64_tensor("/rel/max_bucket", &[], &[max_bucket]));
        self.node("/rel/Shape", "Shape", &[ids], &["/rel/shape"], vec![]);
        let axis0 = vec![int_attr("axis", 0)];
        self.node("/rel/Gather_len", "Gather", &["/rel/shape", "/embeddings/Constant_1"], &["/rel/len"], axis0);
        let range = ["/embeddings/Constant_0", "/rel/len", "/embeddings/Constant_step"];
        self.node("/rel/Range", "Range", &range, &["/rel/range"], vec![]);
        self.node("/rel/Unsqueeze_0", "Unsqueeze", &["/rel/range", "/rel/axes_1"], &["/rel/context"], vec![]);
        self.node("/rel/Unsqueeze_1", "Unsqueeze", &["/rel/range", "/embeddings/axes_0"], &["/rel/memory"], vec![]);
        self.node("/rel/Sub", "Sub", &["/rel/memory", "/rel/context"], &["/rel/relative"], vec![]);
        self.node("/rel/Abs", "Abs", &["/rel/relative"], &["/rel/distance"], vec![]);
        self.node("/rel/Min", "Min", &["/rel/distance", "/rel/max_bucket"], &[out], vec![]);
    }

    /// LayerNormalization over the last axis with random scale (near 1) and bias.
    fn layer_norm(&mut self, rng: &mut ChaCha8Rng, prefix: &str, x: &str, d: usize) -> String {
        let (scale, bias, out) = (format!("{prefix}.weight"), format!("{prefix}.bias"), format!("{prefix}/output_0"));
        let gamma: Vec<f32> = uniform(rng, d, 0.1).iter().map(|v| 1.0 + v).collect();
        self.init(float_tensor(&scale, &[d], &gamma, FloatType::F32));
        self.init(float_tensor(&bias, &[d], &uniform(rng, d, 0.05), FloatType::F32));
        self.node(
            &format!("{prefix}/LayerNormalization"),
            "LayerNormalization",
            &[x, &scale, &bias],
            &[&out],
            vec![int_attr("axis", -1), float_attr("epsilon", 1e-12)],
        );
        out
    }

    /// `x + W2 relu(W1 x + b1) + b2`.
    fn mlp(&mut self, rng: &mut ChaCha8Rng, prefix: &str, x: &str, d: usize, hidden: usize) -> String {
        let p = |s: &str| format!("{prefix}/{s}");
        let w1_scale = 1.0 / (d as f32).sqrt();
        let w2_scale = 1.0 / (hidden as f32).sqrt();
        self.init(float_tensor(&p("fc1.weight"), &[d, hidden], &uniform(rng, d * hidden, w1_scale), FloatType::F32));
        self.init(float_tensor(&p("fc1.bias"), &[hidden], &uniform(rng, hidden, 0.01), FloatType::F32));
        self.init(float_tensor(&p("fc2.weight"), &[hidden, d], &uniform(rng, hidden * d, w2_scale), FloatType::F32));
        self.init(float_tensor(&p("fc2.bias"), &[d], &uniform(rng, d, 0.01), FloatType::F32));
        self.node(&p("fc1/MatMul"), "MatMul", &[x, &p("fc1.weight")], &[&p("fc1/MatMul_output_0")], vec![]);
        self.node(
            &p("fc1/Add"),
            "Add",
            &[&p("fc1/MatMul_output_0"), &p("fc1.bias")],
            &[&p("fc1/Add_output_0")],
            vec![],
        );
        self.node(&p("Relu"), "Relu", &[&p("fc1/Add_output_0")], &[&p("Relu_output_0")], vec![]);
        self.node(
            &p("fc2/MatMul"),
            "MatMul",
            &[&p("Relu_output_0"), &p("fc2.weight")],
            &[&p("fc2/MatMul_output_0")],
            vec![],
        );
        self.node(
            &p("fc2/Add"),
            "Add",
            &[&p("fc2/MatMul_output_0"), &p("fc2.bias")],
            &[&p("fc2/Add_output_0")],
            vec![],
        );
        let out = p("residual/Add_output_0");
        self.node(&p("residual/Add"), "Add", &[&p("fc2/Add_output_0"), x], &[&out], vec![]);
        out
    }

    /// `out = x * float(mask[..., None])`; needs the `/axes_last` initializer.
    fn mask_multiply(&mut self, prefix: &str, x: &str, mask: &str, out: &str) {
        let p = |s: &str| format!("{prefix}/{s}");
        self.node(&p("mask/Unsqueeze"), "Unsqueeze", &[mask, "/axes_last"], &[&p("mask/Unsqueeze_output_0")], vec![]);
        self.node(
            &p("mask/Cast"),
            "Cast",
            &[&p("mask/Unsqueeze_output_0")],
            &[&p("mask/Cast_output_0")],
            vec![int_attr("to", DataType::Float as i64)],
        );
        self.node(&p("mask/Mul"), "Mul", &[x, &p("mask/Cast_output_0")], &[out], vec![]);
    }
}

/// The committed fixture `name` in `fixtures/`.
pub fn path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(name)
}

/// The word table of the tiny embedding-only models (`embedding_only`).
pub const TINY_TABLE: &str = "word_embeddings.weight";
/// Their word Gather and its output (for an f32 table).
pub const TINY_GATHER: &str = "/word_embeddings/Gather";
pub const TINY_WORD: &str = "/word_embeddings/output";

/// The fuzz seeds' `[40, cols]` table: two clusters of dimension 2.
pub fn tiny_table(cols: usize) -> ClusteredTable {
    clustered_table(0x7365_6564, 40, cols, 2, 2) // "seed"
}

/// The small seeds of the fuzz targets, in `fuzz/seeds/`: tiny embedding-only models in f32,
/// f16 and bf16, one with a tied head, one of 264 rows (for product codes), and one of each
/// quantized layout (`quantized::fuzz_seeds`).
pub fn fuzz_seeds() -> Vec<(String, Model)> {
    let table = tiny_table(8);
    let mut seeds = vec![
        ("tiny-f32-opset17.onnx".to_string(), embedding_only(&table, FloatType::F32, 17, 8)),
        ("tiny-f16-opset13.onnx".to_string(), embedding_only(&table, FloatType::F16, 13, 7)),
        ("tiny-bf16-opset21.onnx".to_string(), embedding_only(&table, FloatType::Bf16, 21, 10)),
        ("tiny-tied-opset17.onnx".to_string(), tied(embedding_only(&table, FloatType::F32, 17, 8), table.rows)),
        // product codes fit 256 codewords: they need as many rows
        ("small-f16-264rows.onnx".to_string(), embedding_only(&clustered_table(0x7365_6564, 264, 8, 2, 2), FloatType::F16, 17, 8)),
    ];
    seeds.extend(crate::quantized::fuzz_seeds());
    seeds
}

/// `model` (an f32 `embedding_only`) with a tied head: `logits = hidden . table^T`, the table
/// read by a Transpose besides the Gather, as in `decoder()`.
pub fn tied(mut model: Model, rows: usize) -> Model {
    let g = model.graph_mut();
    g.node.push(node("/lm_head/Transpose_tied", "Transpose", &[TINY_TABLE], &["/lm_head/table_t"], vec![ints_attr("perm", &[1, 0])]));
    g.node.push(node("/lm_head/MatMul", "MatMul", &["hidden", "/lm_head/table_t"], &["logits"], vec![]));
    let logits = &[Dim::Sym("batch"), Dim::Sym("sequence"), Dim::Fixed(rows as i64)];
    g.output = vec![value_info("logits", DataType::Float, logits)];
    model
}

#[test]
fn fixtures_match_generator() {
    let bless = std::env::var("ONNX_EMBCOMP_BLESS").is_ok_and(|v| v == "1");
    let seeds_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz").join("seeds");
    let files = [(path("encoder.onnx"), encoder()), (path("decoder.onnx"), decoder())]
        .into_iter()
        .chain(fuzz_seeds().into_iter().map(|(name, model)| (seeds_dir.join(name), model)));
    for (file, model) in files {
        let bytes = model.encode();
        let name = file.display();
        assert!(bytes.len() < 1 << 20, "{name} is {} bytes, over 1 MB", bytes.len());
        if bless {
            std::fs::write(&file, &bytes).unwrap_or_else(|e| panic!("cannot write {}: {e}", file.display()));
            continue;
        }
        let committed = std::fs::read(&file).unwrap_or_else(|e| {
            panic!(
                "cannot read {}: {e}; run `ONNX_EMBCOMP_BLESS=1 cargo test fixtures_match_generator`",
                file.display()
            )
        });
        assert!(
            committed == bytes,
            "{} ({} bytes) differs from the generator's output ({} bytes); if the generator changed on \
             purpose, run `ONNX_EMBCOMP_BLESS=1 cargo test fixtures_match_generator`",
            file.display(),
            committed.len(),
            bytes.len()
        );
    }
}

#[test]
fn generator_is_deterministic_and_tables_follow_their_subspaces() {
    assert_eq!(encoder().encode(), encoder().encode());
    assert_eq!(decoder().encode(), decoder().encode());
    for table in [encoder_table(), decoder_table()] {
        let k = table.bases.len();
        // every cluster is populated
        for c in 0..k {
            assert!(table.labels.iter().filter(|&&l| l == c).count() > table.rows / (4 * k), "cluster {c} too small");
        }
        let mut norms = Vec::new();
        for (r, &c) in table.labels.iter().enumerate() {
            let row: Vec<f64> = table.data[r * table.cols..(r + 1) * table.cols].iter().map(|&v| v as f64).collect();
            let norm2: f64 = row.iter().map(|v| v * v).sum();
            // squared distance of the row to its own subspace, relative
            let proj2: f64 =
                table.bases[c].iter().map(|b| b.iter().zip(&row).map(|(x, y)| x * y).sum::<f64>().powi(2)).sum();
            let rel = ((norm2 - proj2).max(0.0) / norm2).sqrt();
            assert!(rel < 5e-3, "row {r} is {rel} away from subspace {c}");
            // and far from the others
            for o in (0..k).filter(|&o| o != c) {
                let p2: f64 =
                    table.bases[o].iter().map(|b| b.iter().zip(&row).map(|(x, y)| x * y).sum::<f64>().powi(2)).sum();
                assert!(((norm2 - p2) / norm2).sqrt() > 0.3, "row {r} lies near subspace {o} too");
            }
            norms.push(norm2.sqrt());
        }
        let (lo, hi) = norms.iter().fold((f64::MAX, 0f64), |(a, b), &v| (a.min(v), b.max(v)));
        assert!(lo >= 0.49 && hi <= 2.01 && hi / lo > 3.0, "row norms {lo}..{hi}");
    }
}

/// A Hugging Face word-level tokenizer.json over `words` (ids 4.. in order; 0-3 are [PAD],
/// [CLS], [SEP], [UNK]) that wraps each text in [CLS] ... [SEP].
pub fn word_level_tokenizer(words: &[&str]) -> String {
    let mut vocab = serde_json::json!({"[PAD]": 0, "[CLS]": 1, "[SEP]": 2, "[UNK]": 3});
    for (i, w) in words.iter().enumerate() {
        vocab[*w] = serde_json::json!(i + 4);
    }
    let special = |t: &str| serde_json::json!({"SpecialToken": {"id": t, "type_id": 0}});
    serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [],
        "normalizer": {"type": "Lowercase"},
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [special("[CLS]"), {"Sequence": {"id": "A", "type_id": 0}}, special("[SEP]")],
            "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {
                "[CLS]": {"id": "[CLS]", "ids": [1], "tokens": ["[CLS]"]},
                "[SEP]": {"id": "[SEP]", "ids": [2], "tokens": ["[SEP]"]}
            }
        },
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "[UNK]"}
    })
    .to_string()
}

/// A Hugging Face Unigram (SentencePiece-like) tokenizer.json over `words` (ids 4.. in
/// order, each of log-probability `-ln(words.len())`; 0-3 as in [`word_level_tokenizer`]; then
/// one piece of log-probability -40), whose prior is informative: the words share its mass.
pub fn unigram_tokenizer(words: &[&str]) -> String {
    let mut json: serde_json::Value = serde_json::from_str(&word_level_tokenizer(words)).unwrap();
    let score = -(words.len() as f64).ln();
    let mut vocab = vec![serde_json::json!(["[PAD]", 0.0]), serde_json::json!(["[CLS]", 0.0]), serde_json::json!(["[SEP]", 0.0]), serde_json::json!(["[UNK]", 0.0])];
    vocab.extend(words.iter().map(|w| serde_json::json!([w, score])));
    // A piece no text here holds, so rare that the table's rows without a token (which get
    // the least probability of any) hold next to nothing.
    vocab.push(serde_json::json!(["\u{2581}zzzz", -40.0]));
    json["model"] = serde_json::json!({"type": "Unigram", "unk_id": 3, "vocab": vocab, "byte_fallback": false});
    let special = |id: u32, t: &str| serde_json::json!({"id": id, "content": t, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true});
    json["added_tokens"] = serde_json::json!([special(0, "[PAD]"), special(1, "[CLS]"), special(2, "[SEP]"), special(3, "[UNK]")]);
    json.to_string()
}

/// `lines` seeded lines of `shortest` to `longest` words drawn from `words`.
pub fn varied_word_corpus(words: &[&str], lines: usize, shortest: usize, longest: usize, seed: u64) -> String {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..lines)
        .map(|_| {
            let len = rng.random_range(shortest..=longest);
            (0..len).map(|_| words[rng.random_range(0..words.len())]).collect::<Vec<_>>().join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `lines` seeded lines of 8 words drawn from `words`.
pub fn word_corpus(words: &[&str], lines: usize, seed: u64) -> String {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..lines)
        .map(|_| (0..8).map(|_| words[rng.random_range(0..words.len())]).collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join("\n")
}
