//! The held-out text check: tokenized sentences run through the original once (prepare stage,
//! kept as a [`TextReference`]) and through each rewritten candidate, in the validation's
//! runtime. Encoders are compared by their mean-pooled sentence embeddings, decoders by their
//! next-token distributions.

use std::time::Instant;

use serde::Serialize;
use tract_onnx::prelude::*;

use super::runtime::{Runner, Runtime};
use super::tract::{as_f32, fed_shape, input_values, is_past, make_tensor};
use crate::metrics::{cosine, kl_divergence, mean};
use crate::error::{Error, Result, Role};
use crate::onnx::Model;
use crate::onnx::graph::GraphView;
use crate::rewrite::find::EmbeddingSite;

/// Tokenized held-out sentences and how to feed them.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct HeldOut {
    /// Token ids of each sentence (special tokens included).
    pub sentences: Vec<Vec<u32>>,
    /// The id that pads short sentences (its positions are masked out).
    pub pad_id: u32,
    /// Sentences per run.
    pub batch: usize,
    /// Tokens per sentence at most (longer ones are cut).
    pub max_len: usize,
    /// Share of the sentences' ordinary tokens replaced by draws from the tokenizer's prior
    /// ([`crate::prior::mix_into`]): 0 for text as written.
    pub prior_share: f64,
}

impl HeldOut {
    /// Sentences per run by default.
    pub const BATCH: usize = 8;
    /// Tokens per sentence at most, by default.
    pub const MAX_LEN: usize = 128;

    /// `sentences` padded with `pad_id`, run [`HeldOut::BATCH`] at a time and cut at
    /// [`HeldOut::MAX_LEN`] tokens.
    pub fn new(sentences: Vec<Vec<u32>>, pad_id: u32) -> HeldOut {
        HeldOut { sentences, pad_id, batch: Self::BATCH, max_len: Self::MAX_LEN, prior_share: 0.0 }
    }
}

/// What the comparison on held-out text found.
#[derive(Debug, Clone, Serialize)]
pub struct TextValidation {
    /// Whether pooled embeddings (encoder) or next-token logits (decoder) were compared.
    pub kind: ModelKind,
    /// The output compared.
    pub output: String,
    /// Sentences compared.
    pub sentences: usize,
    /// Share of their ordinary tokens drawn from the tokenizer's prior ([`HeldOut::prior_share`]).
    pub prior_share: f64,
    /// `Some(all)`: a screen ([`Screen`]) ran `sentences` of the `all` held-out sentences and
    /// found the candidate clearly below the target, so the rest were not run and the figures
    /// are of those `sentences` only. `None`: every sentence ran.
    pub screened_of: Option<usize>,
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
    /// Decoders: perplexity of the rewritten model on the held-out sentences (each token but
    /// the first predicted from those before it: exp of the mean negative log-likelihood).
    pub perplexity: Option<f64>,
    /// Decoders: the original's perplexity on the same tokens.
    pub perplexity_original: Option<f64>,
    pub seconds: f64,
}

impl TextValidation {
    /// What the comparison ran on, in words.
    pub fn describe(&self) -> String {
        let sentences = match self.screened_of {
            Some(all) => format!("{} of {all} held-out sentences (a screen: clearly below the target)", self.sentences),
            None => format!("{} held-out sentences", self.sentences),
        };
        match self.prior_share {
            s if s > 0.0 => format!("{sentences}, {:.0}% of their tokens drawn from the tokenizer's prior", 100.0 * s),
            _ => sentences,
        }
    }
}

/// What kind of model the held-out comparison found, from its outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// Hidden states or pooled embeddings: sentences compared by their mean-pooled vectors.
    Encoder,
    /// Logits over the vocabulary: compared token by token.
    Decoder,
}

impl std::fmt::Display for ModelKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ModelKind::Encoder => "encoder",
            ModelKind::Decoder => "decoder",
        })
    }
}

/// Screening a candidate of a search for a target cosine: an encoder's held-out sentences run
/// first on a part of them (every [`Screen::EVERY`]th batch of each length stratum), and when that part
/// puts the mean cosine of all of them clearly below the target (its upper confidence bound,
/// [`Screen::Z`] standard errors above the estimate, is under it) the rest are not run. A
/// candidate that passes the screen runs the rest and is judged on every sentence, as without a
/// screen; so a screen can only save the rest of a check that fails.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Screen {
    /// The target cosine.
    pub(crate) target: f64,
}

impl Screen {
    /// One batch (or, in buckets, one sentence) in this many, in each length stratum, runs first.
    pub(crate) const EVERY: usize = 4;
    /// The part must hold at least this many sentences, else no screen.
    pub(crate) const MIN_SENTENCES: usize = 32;
    /// Standard errors above the part's estimate that must still be under the target.
    pub(crate) const Z: f64 = 3.5;

    /// Whether the cosines `part` (each with its sentence's bucket) of a stratified part of `all`
    /// sentences, `bucket_sizes` of them in each bucket, put the mean of all clearly below the
    /// target.
    /// The estimate weighs each bucket by its share of all sentences; its standard error is
    /// that of a simple random sample of the part's size, with the finite-population correction.
    /// (The part is whole batches of sentences of like length, whose cosines may vary together:
    /// a larger error than that, which [`Screen::Z`]'s margin is meant to cover.)
    fn rejects(&self, part: &[(usize, f64)], bucket_sizes: &std::collections::BTreeMap<usize, usize>, all: usize) -> bool {
        let n = part.len();
        if n < Self::MIN_SENTENCES || n >= all {
            return false;
        }
        let mut estimate = 0.0;
        for (&bucket, &size) in bucket_sizes {
            let values: Vec<f64> = part.iter().filter(|(b, _)| *b == bucket).map(|(_, c)| *c).collect();
            if values.is_empty() {
                return false; // every bucket is in the part by construction; be safe otherwise
            }
            estimate += size as f64 / all as f64 * mean(&values);
        }
        let values: Vec<f64> = part.iter().map(|(_, c)| *c).collect();
        let m = mean(&values);
        let variance = values.iter().map(|c| (c - m).powi(2)).sum::<f64>() / (n - 1) as f64;
        let standard_error = (variance / n as f64 * (1.0 - n as f64 / all as f64)).sqrt();
        estimate.is_finite() && estimate + Self::Z * standard_error < self.target
    }
}

/// A model's plans for the held-out text across calls of [`TextReference::outputs`] (both
/// parts of a screen): its plan for any length, or that tract could not make or run one.
#[derive(Default)]
struct Plans {
    any_length: Option<Runner>,
    no_any_length: bool,
}

/// The original's logits kept for a decoder's comparison, at most (floats): 256 MiB. Sentences
/// past it are left out of the comparison (their number is in the report).
const MAX_KEPT_LOGITS: usize = 64 << 20;

/// The original model's outputs on the held-out sentences, computed once (prepare stage) and
/// compared with every candidate.
pub(crate) struct TextReference {
    /// The usable sentences, cut to the maximum length.
    sentences: Vec<Vec<u32>>,
    pad_id: u32,
    batch: usize,
    max_len: usize,
    prior_share: f64,
    /// The output compared, by index, and what kind of model it shows.
    output: usize,
    kind: ModelKind,
    /// Per sentence what the comparison needs of the original's output: the pooled vector
    /// (encoder) or the logits of its tokens (decoder); `None` past [`MAX_KEPT_LOGITS`].
    original: Vec<Option<Vec<f32>>>,
    seconds: f64,
    /// The original could not run at a symbolic length in tract: every model runs in buckets.
    pinned_only: std::sync::atomic::AtomicBool,
    /// The batches the sentences run in otherwise: sorted by length, [`HeldOut::batch`] at a
    /// time (every model runs the same batches, or the part of them a call keeps).
    chunks: Vec<Vec<usize>>,
    /// Per sentence its batch in `chunks`.
    chunk_of: Vec<usize>,
}

/// The output to compare: logits over the vocabulary (`[batch, sequence, n]`: a decoder),
/// else hidden states (`[batch, sequence, _]`) or pooled embeddings (`[batch, _]`).
fn pick_output(outputs: &[Tensor], n: usize, batch: usize) -> Option<(usize, ModelKind)> {
    let is_float = |v: &Tensor| v.datum_type().is_float();
    let shape = |v: &Tensor| v.shape().to_vec();
    outputs
        .iter()
        .position(|v| is_float(v) && shape(v).len() == 3 && shape(v)[2] == n)
        .map(|i| (i, ModelKind::Decoder))
        .or_else(|| outputs.iter().position(|v| is_float(v) && shape(v).len() == 3).map(|i| (i, ModelKind::Encoder)))
        .or_else(|| {
            outputs
                .iter()
                .position(|v| is_float(v) && shape(v).len() == 2 && shape(v)[0] == batch)
                .map(|i| (i, ModelKind::Encoder))
        })
}

fn bad(reason: String) -> Error {
    Error::ValidationMismatch(format!("held-out text: {reason}"))
}

/// Runs `held_out` through the original model, `workers` batches at once, and keeps what the
/// comparisons need.
pub(crate) fn run_original_text(runtime: Runtime, original: &Model, candidate: &EmbeddingSite, held_out: &HeldOut, workers: usize) -> Result<TextReference> {
    run_original_in(runtime, original, candidate, held_out, workers, false)
}

/// [`run_original_text`], every model in length buckets when `buckets` (as where tract cannot
/// plan the original at a symbolic length).
fn run_original_in(
    runtime: Runtime,
    original: &Model,
    candidate: &EmbeddingSite,
    held_out: &HeldOut,
    workers: usize,
    buckets: bool,
) -> Result<TextReference> {
    let start = Instant::now();
    let max_len = held_out.max_len.max(1);
    let sentences: Vec<Vec<u32>> =
        held_out.sentences.iter().filter(|s| !s.is_empty()).map(|s| s[..s.len().min(max_len)].to_vec()).collect();
    if sentences.len() < 2 {
        return Err(bad(format!("{} usable sentences; at least 2 are needed", sentences.len())));
    }
    let n = candidate.rows;
    if let Some(&id) = sentences.iter().flat_map(|s| s.iter()).find(|&&id| id as usize >= n) {
        return Err(bad(format!("the tokenizer produces id {id}, past the table's {n} rows: wrong tokenizer for this model?")));
    }
    let mut reference = TextReference {
        sentences,
        pad_id: held_out.pad_id,
        batch: held_out.batch.max(1),
        max_len,
        prior_share: held_out.prior_share,
        output: 0,
        kind: ModelKind::Encoder,
        original: Vec::new(),
        seconds: 0.0,
        pinned_only: buckets.into(),
        chunks: Vec::new(),
        chunk_of: Vec::new(),
    };
    let mut order: Vec<usize> = (0..reference.sentences.len()).collect();
    order.sort_by_key(|&i| (reference.sentences[i].len(), i));
    reference.chunks = order.chunks(reference.batch.clamp(1, order.len())).map(<[usize]>::to_vec).collect();
    reference.chunk_of = vec![0; order.len()];
    for (c, chunk) in reference.chunks.iter().enumerate() {
        chunk.iter().for_each(|&i| reference.chunk_of[i] = c);
    }
    let keep = vec![true; reference.sentences.len()];
    let mut picked = None;
    reference.original = reference.outputs(runtime, original, Role::Original, candidate, &keep, &mut picked, &mut Plans::default(), workers)?;
    (reference.output, reference.kind) = picked.expect("at least one batch ran");
    reference.seconds = start.elapsed().as_secs_f64();
    Ok(reference)
}

/// Runs the held-out sentences of `reference` through `rewritten` and compares.
/// With `screen` (an encoder's), a part of the sentences runs first and the rest only when that
/// part does not put the candidate clearly below the target ([`Screen`]).
pub(crate) fn compare_text(
    runtime: Runtime,
    reference: &TextReference,
    original: &Model,
    rewritten: &Model,
    candidate: &EmbeddingSite,
    screen: Option<Screen>,
) -> Result<TextValidation> {
    let start = Instant::now();
    let keep: Vec<bool> = reference.original.iter().map(Option::is_some).collect();
    let mut picked = Some((reference.output, reference.kind));
    let mut screened_of = None;
    // (one plan serves every length, and both parts of a screen)
    let mut plans = Plans::default();
    let after = match screen.filter(|_| reference.kind == ModelKind::Encoder) {
        None => reference.outputs(runtime, rewritten, Role::Rewritten, candidate, &keep, &mut picked, &mut plans, 1)?,
        Some(screen) => {
            let all = keep.iter().filter(|&&k| k).count();
            let part = reference.screen_part(&keep);
            let mut after = reference.outputs(runtime, rewritten, Role::Rewritten, candidate, &part, &mut picked, &mut plans, 1)?;
            let mut bucket_sizes = std::collections::BTreeMap::new();
            for i in (0..keep.len()).filter(|&i| keep[i]) {
                *bucket_sizes.entry(reference.stratum_of(i)).or_insert(0) += 1;
            }
            let cosines: Vec<(usize, f64)> = (0..keep.len())
                .filter(|&i| part[i])
                .filter_map(|i| Some((reference.stratum_of(i), cosine(reference.original[i].as_deref()?, after[i].as_deref()?))))
                .collect();
            if screen.rejects(&cosines, &bucket_sizes, all) {
                screened_of = Some(all);
            } else {
                let rest: Vec<bool> = keep.iter().zip(&part).map(|(&k, &p)| k && !p).collect();
                let more = reference.outputs(runtime, rewritten, Role::Rewritten, candidate, &rest, &mut picked, &mut plans, 1)?;
                for (a, m) in after.iter_mut().zip(more) {
                    if m.is_some() {
                        *a = m;
                    }
                }
            }
            after
        }
    };
    let (pairs, tokens): (Vec<(&[f32], &[f32])>, Vec<&[u32]>) = reference
        .original
        .iter()
        .zip(&after)
        .zip(&reference.sentences)
        .filter_map(|((a, b), s)| Some(((a.as_deref()?, b.as_deref()?), s.as_slice())))
        .unzip();
    let width_of_logits = candidate.rows;
    let (mut cosines, mut top1, mut kl) = (Vec::new(), Vec::new(), Vec::new());
    let mut nn_agreement = None;
    let (mut nll_original, mut nll) = (Vec::new(), Vec::new());
    match reference.kind {
        ModelKind::Decoder => {
            for ((a, b), s) in pairs.iter().zip(&tokens) {
                for (t, (p, q)) in a.chunks(width_of_logits).zip(b.chunks(width_of_logits)).enumerate() {
                    cosines.push(cosine(p, q));
                    top1.push(f64::from(argmax(p) == argmax(q)));
                    kl.push(kl_divergence(p, q));
                    if let Some(&next) = s.get(t + 1) {
                        nll_original.push(-log_softmax_at(p, next as usize));
                        nll.push(-log_softmax_at(q, next as usize));
                    }
                }
            }
        }
        ModelKind::Encoder => {
            cosines = pairs.iter().map(|(p, q)| cosine(p, q)).collect();
            let nearest = |v: &[&[f32]], i: usize| -> usize {
                (0..v.len()).filter(|&j| j != i).max_by(|&x, &y| cosine(v[i], v[x]).total_cmp(&cosine(v[i], v[y]))).expect("2+")
            };
            let (a, b): (Vec<&[f32]>, Vec<&[f32]>) = pairs.iter().copied().unzip();
            let agree = (0..a.len()).filter(|&i| nearest(&a, i) == nearest(&b, i)).count();
            nn_agreement = Some(agree as f64 / a.len() as f64);
        }
    }
    let decoder = reference.kind == ModelKind::Decoder;
    Ok(TextValidation {
        kind: reference.kind,
        output: original.graph().output.get(reference.output).map_or_else(String::new, |o| o.name().to_string()),
        sentences: pairs.len(),
        prior_share: reference.prior_share,
        screened_of,
        mean_cosine: mean(&cosines),
        min_cosine: cosines.iter().copied().fold(f64::INFINITY, f64::min),
        nn_agreement,
        top1_agreement: decoder.then(|| mean(&top1)),
        mean_kl: decoder.then(|| mean(&kl)),
        perplexity: (decoder && !nll.is_empty()).then(|| mean(&nll).exp()),
        perplexity_original: (decoder && !nll.is_empty()).then(|| mean(&nll_original).exp()),
        seconds: reference.seconds + start.elapsed().as_secs_f64(),
    })
}

impl TextReference {
    /// The length bucket of sentence `i`: 16, 32, 64, ... tokens, at most the maximum length's
    /// power of two: the length it is padded to where the model runs in buckets.
    fn bucket_of(&self, i: usize) -> usize {
        self.sentences[i].len().next_power_of_two().max(16).min(self.max_len.next_power_of_two())
    }

    /// The stratum of sentence `i` for a screen: its length bucket ([`TextReference::bucket_of`])
    /// where the sentences run in buckets, else the bucket of its batch's shortest sentence (a
    /// screen runs whole batches).
    fn stratum_of(&self, i: usize) -> usize {
        match self.pinned_only.load(std::sync::atomic::Ordering::Relaxed) {
            true => self.bucket_of(i),
            false => self.bucket_of(self.chunks[self.chunk_of[i]][0]),
        }
    }

    /// The sentences a screen runs first: of those marked in `keep`, the sentences of every
    /// [`Screen::EVERY`]th batch of each stratum ([`TextReference::stratum_of`]: the first, the
    /// fifth, ...), or, where the sentences run in buckets, every [`Screen::EVERY`]th sentence of
    /// each bucket; so that the part has about each stratum's share of the sentences.
    fn screen_part(&self, keep: &[bool]) -> Vec<bool> {
        let mut seen = std::collections::HashMap::new();
        if !self.pinned_only.load(std::sync::atomic::Ordering::Relaxed) {
            // Whole batches (each of one length, so that every model runs the same ones): of the
            // batches of a stratum, the first, the fifth, ...
            let mut part = vec![false; keep.len()];
            for chunk in &self.chunks {
                let k = seen.entry(self.stratum_of(chunk[0])).or_insert(0usize);
                *k += 1;
                if (*k - 1) % Screen::EVERY == 0 {
                    chunk.iter().for_each(|&i| part[i] = keep[i]);
                }
            }
            return part;
        }
        (0..keep.len())
            .map(|i| {
                keep[i] && {
                    let k = seen.entry(self.bucket_of(i)).or_insert(0usize);
                    *k += 1;
                    (*k - 1) % Screen::EVERY == 0
                }
            })
            .collect()
    }

    /// The length sentence `i` runs at, padded, for every model alike (so that a model that
    /// attends to padding sees the same in the original and in a candidate, whatever part of the
    /// sentences runs): the longest of its batch among all the sentences sorted by length, or
    /// its bucket ([`TextReference::bucket_of`]) where the original ran in buckets.
    fn run_len(&self, i: usize) -> usize {
        match self.pinned_only.load(std::sync::atomic::Ordering::Relaxed) {
            true => self.bucket_of(i),
            false => self.chunks[self.chunk_of[i]].iter().map(|&s| self.sentences[s].len()).max().expect("a batch is not empty"),
        }
    }

    /// Runs the sentences marked in `keep` through `model` and returns per sentence the pooled
    /// output (encoder) or its tokens' logits (decoder). `picked` is the output to take, chosen
    /// from the first batch when `None`. `plans` keeps the model loaded for any length for the
    /// next call (both parts of a screen), or that tract could not load or run it so.
    ///
    /// The sentences run in the reference's batches (sorted by length, [`TextReference::batch`]
    /// at a time, the part of each that `keep` marks), each padded to its longest sentence
    /// among all ([`TextReference::run_len`]): every model runs a sentence beside the same
    /// others at the same length. One load of the model serves every length (tract's plan with
    /// a symbolic length), and `workers` batches run at once (each on one thread). Where tract
    /// cannot make or run such a plan, a plan pinned to each length runs the same batches (for
    /// the original: the sentences run in buckets, as for every later model then).
    #[allow(clippy::too_many_arguments)]
    fn outputs(
        &self,
        runtime: Runtime,
        model: &Model,
        role: Role,
        candidate: &EmbeddingSite,
        keep: &[bool],
        picked: &mut Option<(usize, ModelKind)>,
        plans: &mut Plans,
        workers: usize,
    ) -> Result<Vec<Option<Vec<f32>>>> {
        let mut out = vec![None; self.sentences.len()];
        let mut kept_floats = 0;
        let pinned_only = self.pinned_only.load(std::sync::atomic::Ordering::Relaxed);
        let batch = self.batch.clamp(1, self.sentences.len());
        // The runs: (sentences, rows fed, length): the reference's batches (the part `keep`
        // marks), or the buckets' sentences `batch` at a time.
        let runs: Vec<(Vec<usize>, usize, usize)> = match pinned_only {
            false => self
                .chunks
                .iter()
                .map(|c| c.iter().copied().filter(|&i| keep[i]).collect::<Vec<_>>())
                .filter(|c| !c.is_empty())
                .map(|c| {
                    let len = self.run_len(c[0]);
                    (c, batch, len)
                })
                .collect(),
            true => {
                let mut order: Vec<usize> = (0..self.sentences.len()).filter(|&i| keep[i]).collect();
                order.sort_by_key(|&i| (self.bucket_of(i), self.sentences[i].len(), i));
                let mut runs = Vec::new();
                for group in order.chunk_by(|&a, &b| self.bucket_of(a) == self.bucket_of(b)) {
                    let rows = self.batch.clamp(1, group.len());
                    runs.extend(group.chunks(rows).map(|c| (c.to_vec(), rows, self.bucket_of(c[0]))));
                }
                runs
            }
        };
        if !pinned_only && !plans.no_any_length {
            let mut any_length = || -> Result<()> {
                let mut next = 0;
                while next < runs.len() {
                    // (the first run loads the model; then `workers` runs at once)
                    let wave = &runs[next..(next + if plans.any_length.is_some() { workers.max(1) } else { 1 }).min(runs.len())];
                    let feeds = wave.iter().map(|(c, rows, len)| self.feed(model, candidate, c, *rows, *len)).collect::<Result<Vec<_>>>()?;
                    if plans.any_length.is_none() {
                        plans.any_length = Some(Runner::load_any_length(runtime, model, role, &feeds[0], wave[0].2)?);
                    }
                    let r = plans.any_length.as_ref().expect("loaded above");
                    let values: Vec<Result<Vec<Tensor>>> = std::thread::scope(|scope| {
                        let others: Vec<_> = feeds[1..].iter().map(|f| scope.spawn(move || r.run(f))).collect();
                        let first = r.run(&feeds[0]);
                        std::iter::once(first)
                            .chain(others.into_iter().map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))))
                            .collect()
                    });
                    for ((chunk, rows, len), values) in wave.iter().zip(values) {
                        self.take(&values?, role, candidate, chunk, *rows, *len, picked, &mut kept_floats, &mut out)?;
                    }
                    next += wave.len();
                }
                Ok(())
            };
            match any_length() {
                Ok(()) => return Ok(out),
                // (a model tract cannot plan or run at a symbolic length: plans pinned to each
                // length, which report tract's error if it fails there too)
                Err(Error::Tract { .. }) if runtime == Runtime::Tract => {
                    (plans.any_length, plans.no_any_length) = (None, true);
                    if role == Role::Original {
                        // (the original, and every later model, in buckets)
                        self.pinned_only.store(true, std::sync::atomic::Ordering::Relaxed);
                        return self.outputs(runtime, model, role, candidate, keep, picked, plans, workers);
                    }
                    (out, kept_floats) = (vec![None; self.sentences.len()], 0);
                }
                Err(e) => return Err(e),
            }
        }
        // A plan pinned to each (rows, length), the runs coming by length: one alive at a time.
        let mut loaded: Option<((usize, usize), Runner)> = None;
        for (chunk, rows, len) in &runs {
            let fed = self.feed(model, candidate, chunk, *rows, *len)?;
            if loaded.as_ref().is_none_or(|(shape, _)| *shape != (*rows, *len)) {
                drop(loaded.take()); // (freed before the next is made)
                loaded = Some(((*rows, *len), Runner::load(runtime, model, role, &fed, &[])?));
            }
            let values = loaded.as_ref().expect("loaded above").1.run(&fed)?;
            self.take(&values, role, candidate, chunk, *rows, *len, picked, &mut kept_floats, &mut out)?;
        }
        Ok(out)
    }

    /// The inputs of `model` for the sentences `chunk`, `batch` rows of `len` tokens: short
    /// sentences padded (masked out), missing rows repeating the chunk's first sentence (their
    /// results are dropped).
    fn feed(&self, model: &Model, candidate: &EmbeddingSite, chunk: &[usize], batch: usize, len: usize) -> Result<Vec<(String, Tensor)>> {
        let ids_input = candidate.ids_input().ok_or_else(|| bad("the token ids do not come from a graph input".into()))?;
        let (mut ids, mut mask) = (Vec::with_capacity(batch * len), Vec::with_capacity(batch * len));
        for r in 0..batch {
            let s = &self.sentences[*chunk.get(r).unwrap_or(&chunk[0])];
            for t in 0..len {
                ids.push(s.get(t).map_or(self.pad_id as i64, |&id| id as i64));
                mask.push(i64::from(t < s.len()));
            }
        }
        GraphView::new(model.graph())
            .runtime_inputs()
            .map(|i| {
                // A decoder's cache is fed empty (a first step); every other input is [batch, len].
                let shape = if is_past(i.name()) { fed_shape(i, batch, len) } else { vec![batch, len] };
                let values = input_values(i.name(), Some(ids_input), &shape, &ids, &mask);
                Ok((i.name().to_string(), make_tensor(i, &shape, &values)?))
            })
            .collect()
    }

    /// Keeps in `out` what the comparison needs of one run's `values` for the sentences
    /// `chunk` (fed `batch` rows of `len` tokens): the pooled output or the tokens' logits.
    #[allow(clippy::too_many_arguments)]
    fn take(
        &self,
        values: &[Tensor],
        role: Role,
        candidate: &EmbeddingSite,
        chunk: &[usize],
        batch: usize,
        len: usize,
        picked: &mut Option<(usize, ModelKind)>,
        kept_floats: &mut usize,
        out: &mut [Option<Vec<f32>>],
    ) -> Result<()> {
        let (output, kind) = match *picked {
            Some(p) => p,
            None => *picked.insert(
                pick_output(values, candidate.rows, batch)
                    .ok_or_else(|| bad("no float output of shape [batch, sequence, _] or [batch, _] to compare".into()))?,
            ),
        };
        let value = values.get(output).ok_or_else(|| bad(format!("the {role} model has no output {output}")))?;
        let shape = value.shape().to_vec();
        let x = as_f32(value).map_err(|e| bad(format!("the {role} model's output {output}: {e:#}")))?;
        let width = *shape.last().ok_or_else(|| bad("a scalar output".into()))?;
        for (r, &i) in chunk.iter().enumerate() {
            let s = &self.sentences[i];
            let row = |t: usize| &x[(r * len + t) * width..(r * len + t + 1) * width];
            out[i] = Some(match (shape.len(), kind) {
                (2, _) => x[r * width..(r + 1) * width].to_vec(),
                (_, ModelKind::Decoder) => {
                    if role == Role::Original && *kept_floats + s.len() * width > MAX_KEPT_LOGITS {
                        continue;
                    }
                    *kept_floats += s.len() * width;
                    (0..s.len()).flat_map(row).copied().collect()
                }
                (_, ModelKind::Encoder) => {
                    let mut acc = vec![0f32; width];
                    for t in 0..s.len() {
                        acc.iter_mut().zip(row(t)).for_each(|(m, v)| *m += v / s.len() as f32);
                    }
                    acc
                }
            });
        }
        Ok(())
    }
}

/// `log softmax(logits)[i]` (f64; `-inf` past the logits).
fn log_softmax_at(logits: &[f32], i: usize) -> f64 {
    let Some(&x) = logits.get(i) else { return f64::NEG_INFINITY };
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = logits.iter().map(|&v| (v as f64 - max).exp()).sum();
    x as f64 - max - sum.ln()
}

/// Index of the first largest value.
fn argmax(v: &[f32]) -> usize {
    (1..v.len()).fold(0, |best, i| if v[i] > v[best] { i } else { best })
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
    fn log_softmax_of_equal_logits_is_minus_log_n() {
        assert!((log_softmax_at(&[3.0; 4], 2) + 4f64.ln()).abs() < 1e-12);
        assert!((log_softmax_at(&[0.0, 2f32.ln()], 1) - (2.0f64 / 3.0).ln()).abs() < 1e-6);
        assert_eq!(log_softmax_at(&[0.0], 5), f64::NEG_INFINITY);
    }

    #[test]
    fn a_screen_rejects_only_a_part_clearly_below_the_target() {
        let screen = Screen { target: 0.99 };
        let one_bucket = |n: usize| std::collections::BTreeMap::from([(16usize, n)]);
        let part = |values: &[f64]| values.iter().map(|&c| (16usize, c)).collect::<Vec<_>>();
        // 40 of 200 sentences at 0.90: clearly below
        assert!(screen.rejects(&part(&[0.90; 40]), &one_bucket(200), 200));
        // mean 0.985 with a spread of 0.02: within 3.5 standard errors of 0.99, so not rejected
        let near: Vec<f64> = (0..40).map(|i| if i % 2 == 0 { 0.965 } else { 1.005 }).collect();
        assert!(!screen.rejects(&part(&near), &one_bucket(200), 200));
        // ... but rejected against a target far above it
        assert!(Screen { target: 0.999 }.rejects(&part(&near), &one_bucket(200), 200));
        // too few sentences, or the part is all of them: no screen
        assert!(!screen.rejects(&part(&[0.5; 31]), &one_bucket(200), 200));
        assert!(!screen.rejects(&part(&[0.5; 40]), &one_bucket(40), 40));
        // Buckets weigh by their share of all sentences, not of the part: 150 short sentences
        // at 0.999 (10 in the part) and 50 long ones at 0.9 (30 in the part) average 0.974.
        let buckets = std::collections::BTreeMap::from([(16usize, 150usize), (64, 50)]);
        let mixed: Vec<(usize, f64)> = [(16usize, 0.999); 10].into_iter().chain([(64usize, 0.9); 30]).collect();
        assert!(!Screen { target: 0.95 }.rejects(&mixed, &buckets, 200), "the part's own mean (0.925) would reject");
        assert!(Screen { target: 0.999 }.rejects(&mixed, &buckets, 200));
    }

    /// Held-out sentences of 1 to 60 tokens of a `[n, d]` table's lookup model, and its site.
    fn lookup_and_sentences(n: usize, d: usize) -> (Model, EmbeddingSite, HeldOut) {
        let data: Vec<f32> = (0..n * d).map(|i| ((i * 7919) % 101) as f32 / 50.0 - 1.0).collect();
        let model = crate::onnx::build::lookup_model(n, d, &data, "text test");
        let site = crate::rewrite::find::find_embedding(&GraphView::new(model.graph()), None).unwrap().chosen().unwrap().clone();
        let sentences: Vec<Vec<u32>> = (0..37).map(|s| (0..1 + s * 23 % 60).map(|t| ((s * 13 + t * 5) % n) as u32).collect()).collect();
        (model, site, HeldOut::new(sentences, 0))
    }

    #[test]
    fn sentences_run_at_their_own_length_in_one_plan_as_in_buckets() {
        let (model, site, held_out) = lookup_and_sentences(50, 8);
        let exact = run_original_text(Runtime::Tract, &model, &site, &held_out, 2).unwrap();
        assert!(!exact.pinned_only.load(std::sync::atomic::Ordering::Relaxed), "the lookup runs at a symbolic length in tract");
        let buckets = run_original_in(Runtime::Tract, &model, &site, &held_out, 2, true).unwrap();
        assert!(buckets.pinned_only.load(std::sync::atomic::Ordering::Relaxed));
        assert_eq!(exact.original.len(), 37);
        // The mean of each sentence's own rows, however long the batch it ran in
        for (s, (a, b)) in held_out.sentences.iter().zip(exact.original.iter().zip(&buckets.original)) {
            let (a, b) = (a.as_deref().unwrap(), b.as_deref().unwrap());
            let mut want = vec![0f32; 8];
            for &id in s {
                for (c, w) in want.iter_mut().enumerate() {
                    *w += ((id as usize * 8 + c) * 7919 % 101) as f32 / 50.0 - 1.0;
                }
            }
            for (c, w) in want.iter().enumerate() {
                let w = w / s.len() as f32;
                assert!((a[c] - w).abs() <= 1e-5 && (b[c] - w).abs() <= 1e-5, "{} tokens: {} and {} for {w}", s.len(), a[c], b[c]);
            }
        }
        // A candidate (the same model) compared with either: both parts of a screen, every length
        for reference in [&exact, &buckets] {
            let v = compare_text(Runtime::Tract, reference, &model, &model, &site, Some(Screen { target: 0.99 })).unwrap();
            assert_eq!((v.sentences, v.screened_of), (37, None));
            assert!(v.min_cosine > 1.0 - 1e-6, "{}", v.min_cosine);
        }
    }

    #[test]
    fn a_sentence_runs_padded_alike_whatever_part_of_the_sentences_runs() {
        // A model whose every position sees the padding (no mask): each row plus the mean of
        // the sequence's rows, pads included.
        use crate::onnx::build::{int_attr, ints_attr, node};
        let (mut model, site, held_out) = lookup_and_sentences(50, 8);
        let g = model.proto.graph.as_mut().unwrap();
        g.node[0].output[0] = "rows".into();
        g.node.push(node("mean", "ReduceMean", &["rows"], &["mean"], vec![ints_attr("axes", &[1]), int_attr("keepdims", 1)]));
        g.node.push(node("add", "Add", &["rows", "mean"], &["embeddings"], vec![]));
        let reference = run_original_text(Runtime::Tract, &model, &site, &held_out, 2).unwrap();
        assert!(!reference.pinned_only.load(std::sync::atomic::Ordering::Relaxed));
        assert!((0..37).filter(|&i| reference.run_len(i) > reference.sentences[i].len()).count() > 10, "few padded sentences");
        let all = vec![true; 37];
        let every_third: Vec<bool> = (0..37).map(|i| i % 3 == 0).collect();
        // (a part, a screen's part, all; in the plan for any length, and in plans pinned to each
        // length as for a candidate tract cannot run so)
        for keep in [every_third, reference.screen_part(&all), all.clone()] {
            for no_any_length in [false, true] {
                let mut picked = Some((reference.output, reference.kind));
                let mut plans = Plans { any_length: None, no_any_length };
                let out = reference.outputs(Runtime::Tract, &model, Role::Rewritten, &site, &keep, &mut picked, &mut plans, 1).unwrap();
                for i in (0..37).filter(|&i| keep[i]) {
                    assert_eq!(out[i], reference.original[i], "sentence {i} of {} tokens", reference.sentences[i].len());
                }
            }
        }
        let part = reference.screen_part(&all).iter().filter(|&&p| p).count();
        assert!(part > 0 && part < 37, "{part} of 37 in the screen's part");
    }

    #[test]
    fn argmax_takes_the_first_maximum() {
        assert_eq!(argmax(&[0.0, 3.0, 3.0, 1.0]), 1);
    }
}
