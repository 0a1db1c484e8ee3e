//! Validation on real text: held-out sentences, tokenized, run through the original and the
//! rewritten model in tract. Encoders are compared by their mean-pooled sentence embeddings,
//! decoders by their next-token distributions.

use std::time::Instant;

use serde::Serialize;
use tract_onnx::prelude::*;

use crate::error::{Error, Result};
use crate::onnx::Model;
use crate::onnx::graph::GraphView;
use crate::rewrite::find::Candidate;
use crate::validate::{Runner, as_f32, cosine, input_values, make_tensor};

/// Tokenized held-out sentences and how to feed them.
#[derive(Debug, Clone, PartialEq)]
pub struct HeldOut {
    /// Token ids of each sentence (special tokens included).
    pub sentences: Vec<Vec<u32>>,
    /// The id that pads short sentences (its positions are masked out).
    pub pad_id: u32,
    /// Sentences per run.
    pub batch: usize,
    /// Tokens per sentence at most (longer ones are cut).
    pub max_len: usize,
}

/// What the comparison on held-out text found.
#[derive(Debug, Clone, Serialize)]
pub struct TextValidation {
    /// `encoder` (pooled embeddings compared) or `decoder` (next-token logits compared).
    pub kind: &'static str,
    /// The output compared.
    pub output: String,
    /// Sentences compared.
    pub sentences: usize,
    /// Mean and minimum cosine between original and rewritten: of sentence embeddings for an
    /// encoder, of per-token logit vectors for a decoder.
    pub mean_cosine: f64,
    pub min_cosine: f64,
    /// Encoders: how often a sentence's nearest other sentence stays the same.
    pub nn_agreement: Option<f64>,
    /// Decoders: how often the most likely next token stays the same.
    pub top1_agreement: Option<f64>,
    /// Decoders: mean KL(original || rewritten) of the next-token distributions, in nats.
    pub mean_kl: Option<f64>,
    pub seconds: f64,
}

/// The output to compare: logits over the vocabulary (`[batch, sequence, n]`: a decoder),
/// else hidden states (`[batch, sequence, _]`) or pooled embeddings (`[batch, _]`).
fn pick_output(outputs: &[TValue], n: usize, batch: usize) -> Option<(usize, &'static str)> {
    let is_float = |v: &TValue| v.datum_type().is_float();
    let shape = |v: &TValue| v.shape().to_vec();
    outputs
        .iter()
        .position(|v| is_float(v) && shape(v).len() == 3 && shape(v)[2] == n)
        .map(|i| (i, "decoder"))
        .or_else(|| outputs.iter().position(|v| is_float(v) && shape(v).len() == 3).map(|i| (i, "encoder")))
        .or_else(|| outputs.iter().position(|v| is_float(v) && shape(v).len() == 2 && shape(v)[0] == batch).map(|i| (i, "encoder")))
}

/// Runs `held_out` through both models and compares them.
pub fn validate_text(original: &Model, rewritten: &Model, candidate: &Candidate, held_out: &HeldOut) -> Result<TextValidation> {
    let start = Instant::now();
    let bad = |reason: String| Error::ValidationMismatch(format!("held-out text: {reason}"));
    let sentences: Vec<&[u32]> =
        held_out.sentences.iter().filter(|s| !s.is_empty()).map(|s| &s[..s.len().min(held_out.max_len.max(1))]).collect();
    if sentences.len() < 2 {
        return Err(bad(format!("{} usable sentences; at least 2 are needed", sentences.len())));
    }
    let ids_input = candidate.ids_input().ok_or_else(|| bad("the token ids do not come from a graph input".into()))?;
    let n = candidate.rows;
    if let Some(&id) = sentences.iter().flat_map(|s| s.iter()).find(|&&id| id as usize >= n) {
        return Err(bad(format!("the tokenizer produces id {id}, past the table's {n} rows: wrong tokenizer for this model?")));
    }
    let view = GraphView::new(original.graph());
    let inputs: Vec<_> = view.runtime_inputs().cloned().collect();
    // Sentences run in buckets of similar length (16, 32, 64, ... tokens), one plan per bucket.
    let cap = held_out.max_len.max(1).next_power_of_two();
    let bucket_of = |len: usize| len.next_power_of_two().max(16).min(cap);
    let mut buckets: Vec<usize> = sentences.iter().map(|s| bucket_of(s.len())).collect();
    buckets.sort_unstable();
    buckets.dedup();

    let mut out_kind: Option<(usize, &'static str)> = None;
    let mut pooled: Vec<Option<(Vec<f32>, Vec<f32>)>> = vec![None; sentences.len()];
    let (mut cosines, mut top1, mut kl) = (Vec::new(), Vec::new(), Vec::new());
    for len in buckets {
        let members: Vec<usize> = (0..sentences.len()).filter(|&i| bucket_of(sentences[i].len()) == len).collect();
        let batch = held_out.batch.clamp(1, members.len());
        let feed = |chunk: &[usize]| -> Result<Vec<(String, Tensor)>> {
            let (mut ids, mut mask) = (Vec::with_capacity(batch * len), Vec::with_capacity(batch * len));
            for r in 0..batch {
                // Missing rows of the last batch repeat its first sentence; their results are dropped.
                let s = sentences[*chunk.get(r).unwrap_or(&chunk[0])];
                for t in 0..len {
                    ids.push(s.get(t).map_or(held_out.pad_id as i64, |&id| id as i64));
                    mask.push(i64::from(t < s.len()));
                }
            }
            inputs
                .iter()
                .map(|i| {
                    let values = input_values(i.name(), Some(ids_input), &[batch, len], &ids, &mask);
                    Ok((i.name().to_string(), make_tensor(i, &[batch, len], &values)?))
                })
                .collect()
        };
        let first = feed(&members[..batch])?;
        let before = Runner::load(original, "original", &first, &[])?;
        let after = Runner::load(rewritten, "rewritten", &first, &[])?;
        for chunk in members.chunks(batch) {
            let fed = feed(chunk)?;
            let (a, b) = (before.run(&fed)?, after.run(&fed)?);
            let (out, kind) = match out_kind {
                Some(ok) => ok,
                None => *out_kind.insert(pick_output(&a, n, batch).ok_or_else(|| {
                    bad("no float output of shape [batch, sequence, _] or [batch, _] to compare".into())
                })?),
            };
            let shape = a[out].shape().to_vec();
            let conv = |v: &TValue| as_f32(v).map_err(|e| Error::Tract { which: "rewritten", message: format!("{e:#}") });
            let (a, b) = (conv(&a[out])?, conv(&b[out])?);
            let width = *shape.last().expect("rank >= 2");
            for (r, &i) in chunk.iter().enumerate() {
                let s = sentences[i];
                if shape.len() == 2 {
                    pooled[i] = Some((a[r * width..(r + 1) * width].to_vec(), b[r * width..(r + 1) * width].to_vec()));
                    continue;
                }
                let row = |x: &[f32], t: usize| -> Vec<f32> { x[(r * len + t) * width..(r * len + t + 1) * width].to_vec() };
                if kind == "decoder" {
                    for t in 0..s.len() {
                        let (p, q) = (row(&a, t), row(&b, t));
                        cosines.push(cosine(&p, &q));
                        top1.push(f64::from(argmax(&p) == argmax(&q)));
                        kl.push(kl_divergence(&p, &q));
                    }
                } else {
                    let mean = |x: &[f32]| -> Vec<f32> {
                        let mut acc = vec![0f32; width];
                        for t in 0..s.len() {
                            acc.iter_mut().zip(row(x, t)).for_each(|(m, v)| *m += v / s.len() as f32);
                        }
                        acc
                    };
                    pooled[i] = Some((mean(&a), mean(&b)));
                }
            }
        }
    }
    let (out, kind) = out_kind.expect("at least one batch ran");
    let (pooled_a, pooled_b): (Vec<Vec<f32>>, Vec<Vec<f32>>) = pooled.into_iter().flatten().unzip();
    let mut nn_agreement = None;
    if kind == "encoder" {
        cosines = pooled_a.iter().zip(&pooled_b).map(|(p, q)| cosine(p, q)).collect();
        let nearest = |v: &[Vec<f32>], i: usize| -> usize {
            (0..v.len()).filter(|&j| j != i).max_by(|&x, &y| cosine(&v[i], &v[x]).total_cmp(&cosine(&v[i], &v[y]))).expect("2+")
        };
        let agree = (0..pooled_a.len()).filter(|&i| nearest(&pooled_a, i) == nearest(&pooled_b, i)).count();
        nn_agreement = Some(agree as f64 / pooled_a.len() as f64);
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    Ok(TextValidation {
        kind,
        output: original.graph().output.get(out).map_or_else(String::new, |o| o.name().to_string()),
        sentences: sentences.len(),
        mean_cosine: mean(&cosines),
        min_cosine: cosines.iter().copied().fold(f64::INFINITY, f64::min),
        nn_agreement,
        top1_agreement: (kind == "decoder").then(|| mean(&top1)),
        mean_kl: (kind == "decoder").then(|| mean(&kl)),
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Index of the first largest value.
fn argmax(v: &[f32]) -> usize {
    (1..v.len()).fold(0, |best, i| if v[i] > v[best] { i } else { best })
}

/// KL(softmax(p) || softmax(q)) in nats.
fn kl_divergence(p: &[f32], q: &[f32]) -> f64 {
    let log_softmax = |x: &[f32]| -> Vec<f64> {
        let m = x.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let lse = x.iter().map(|&v| (v as f64 - m).exp()).sum::<f64>().ln() + m;
        x.iter().map(|&v| v as f64 - lse).collect()
    };
    let (lp, lq) = (log_softmax(p), log_softmax(q));
    lp.iter().zip(&lq).map(|(a, b)| a.exp() * (a - b)).sum::<f64>().max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kl_is_zero_for_equal_logits_and_positive_otherwise() {
        assert!(kl_divergence(&[1.0, 2.0, 3.0], &[1.0, 2.0, 3.0]).abs() < 1e-12);
        // softmax is shift-invariant
        assert!(kl_divergence(&[1.0, 2.0, 3.0], &[11.0, 12.0, 13.0]).abs() < 1e-9);
        let kl = kl_divergence(&[0.0, 0.0], &[0.0, 2f32.ln()]);
        // p = (1/2, 1/2), q = (1/3, 2/3): KL = 1/2 ln(3/2) + 1/2 ln(3/4)
        assert!((kl - (0.5 * 1.5f64.ln() + 0.5 * 0.75f64.ln())).abs() < 1e-6, "{kl}");
    }

    #[test]
    fn argmax_takes_the_first_maximum() {
        assert_eq!(argmax(&[0.0, 3.0, 3.0, 1.0]), 1);
    }
}
