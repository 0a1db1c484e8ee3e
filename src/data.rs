//! Token statistics for data-aware compression: where they come from ([`DataOptions`]: a
//! corpus, a count file, or the tokenizer alone), and what they give ([`TokenData`]): counts
//! blended with the tokenizer's prior ([`crate::prior`]) into row weights and frequent tiers,
//! held-out text, and the figures the report shows.

use std::path::PathBuf;

use serde::Serialize;

use crate::check::HeldOut;
use crate::corpus::{Holdout, TextTokenizer, Weighting, count_corpus, read_token_counts, weights};
use crate::error::{Error, Param, Result};
use crate::prior::{self, Prior, PriorSource};

/// Where the token statistics of data-aware compression come from.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum TokenSource {
    /// Text files or folders of them (`.gz` too), tokenized with the model's `tokenizer.json`;
    /// documents held out of the count validate the result.
    Text { paths: Vec<PathBuf>, tokenizer: PathBuf },
    /// Counts computed elsewhere: one `id count` pair per line (no held-out text); with the
    /// model's tokenizer, blended with its prior as a corpus's counts are.
    Counts { path: PathBuf, tokenizer: Option<PathBuf> },
    /// No corpus: the tokenizer's prior alone gives the weights and the frequent tier.
    Prior { tokenizer: PathBuf },
}

impl TokenSource {
    /// The tokenizer whose prior is blended in, when there is one.
    fn tokenizer(&self) -> Option<&PathBuf> {
        match self {
            TokenSource::Text { tokenizer, .. } | TokenSource::Prior { tokenizer } => Some(tokenizer),
            TokenSource::Counts { tokenizer, .. } => tokenizer.as_ref(),
        }
    }
}

/// Data-aware compression: rows weighted by how often their token occurs (in a corpus, and as
/// the tokenizer's prior says), and the result compared on held-out text.
/// [`DataOptions::text`], [`DataOptions::counts`] and [`DataOptions::prior`] give the defaults
/// documented on each field.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct DataOptions {
    pub source: TokenSource,
    /// How counts become weights (default [`Weighting::Sqrt`]).
    pub weighting: Weighting,
    /// Weight added to every row, as a fraction of the mean weight (default 0.1).
    pub weight_floor: f64,
    /// How much the tokenizer's prior weighs against the counts: as much as this many times the
    /// counted text (default [`prior::DEFAULT_STRENGTH`]; 0: counts alone). Without counts the
    /// prior alone is used whatever the strength.
    pub prior_strength: f64,
    /// Share of the held-out sentences' tokens replaced by draws from the tokenizer's prior
    /// (default [`prior::DEFAULT_SHARE`]; 0: the held-out text as written), so that the check
    /// sees what text of another source brings: words the corpus holds rarely or never. Needs
    /// the tokenizer (no prior, no draws).
    pub prior_share: f64,
    /// Documents held out of the count (default [`Holdout::default`]: one in ten, at most 200
    /// sentences from them; which ones, the run's seed decides).
    pub holdout: Holdout,
    /// Held-out sentences per run (default [`HeldOut::BATCH`]) and tokens per sentence at
    /// most (default [`HeldOut::MAX_LEN`]).
    pub batch: usize,
    pub max_len: usize,
}

impl DataOptions {
    /// Count the text under `paths` with `tokenizer`, with the default settings.
    pub fn text(paths: Vec<PathBuf>, tokenizer: PathBuf) -> DataOptions {
        DataOptions::with_source(TokenSource::Text { paths, tokenizer })
    }

    /// Read token counts from `path` (blended with `tokenizer`'s prior when given), with the
    /// default settings.
    pub fn counts(path: PathBuf, tokenizer: Option<PathBuf>) -> DataOptions {
        DataOptions::with_source(TokenSource::Counts { path, tokenizer })
    }

    /// No corpus: `tokenizer`'s prior alone, with the default settings.
    pub fn prior(tokenizer: PathBuf) -> DataOptions {
        DataOptions::with_source(TokenSource::Prior { tokenizer })
    }

    fn with_source(source: TokenSource) -> DataOptions {
        DataOptions {
            source,
            weighting: Weighting::Sqrt,
            weight_floor: 0.1,
            prior_strength: prior::DEFAULT_STRENGTH,
            prior_share: prior::DEFAULT_SHARE,
            holdout: Holdout::default(),
            batch: HeldOut::BATCH,
            max_len: HeldOut::MAX_LEN,
        }
    }

    /// The settings that need no table, checked.
    pub(crate) fn check(&self) -> Result<()> {
        if !(self.weight_floor >= 0.0 && self.weight_floor.is_finite()) {
            return Err(Error::InvalidParameter {
                param: Param::WeightFloor,
                reason: format!("{} is not a non-negative number", self.weight_floor),
            });
        }
        if !(self.prior_strength >= 0.0 && self.prior_strength.is_finite()) {
            return Err(Error::InvalidParameter {
                param: Param::PriorStrength,
                reason: format!("{} is not a non-negative number", self.prior_strength),
            });
        }
        if !(0.0..=1.0).contains(&self.prior_share) {
            return Err(Error::InvalidParameter {
                param: Param::PriorShare,
                reason: format!("{} is not a share of the held-out tokens in [0, 1]", self.prior_share),
            });
        }
        if !(0.0..=1.0).contains(&self.holdout.fraction) {
            return Err(Error::InvalidParameter {
                param: Param::Holdout,
                reason: format!("{} is not a share of the documents in [0, 1]", self.holdout.fraction),
            });
        }
        Ok(())
    }

    /// Counts the tokens for a table of `n` rows and turns them, with the tokenizer's prior,
    /// into weights, a tier rule and held-out sentences (chosen by `seed`).
    /// `progress(files_done, files, tokens)` hears about a corpus's counting.
    pub fn count(&self, n: usize, seed: u64, progress: &mut dyn FnMut(usize, usize, u64)) -> Result<TokenData> {
        self.check()?;
        let tokenizer = self.source.tokenizer().map(|t| TextTokenizer::from_file(t)).transpose()?;
        let (counts, files, skipped, documents, held_out) = match &self.source {
            TokenSource::Counts { path, .. } => (Some(read_token_counts(path, n)?), 1, 0, (0, 0), None),
            TokenSource::Prior { .. } => (None, 0, 0, (0, 0), None),
            TokenSource::Text { paths, .. } => {
                let tokenizer = tokenizer.as_ref().expect("text comes with its tokenizer");
                let counted = count_corpus(tokenizer, paths, n, &self.holdout, seed, progress)?;
                let sentences: Vec<&str> = counted.held_out.iter().map(String::as_str).collect();
                let held_out = if sentences.len() >= 2 {
                    let mut h = HeldOut::new(tokenizer.encode(&sentences)?, tokenizer.pad_id());
                    (h.batch, h.max_len) = (self.batch, self.max_len);
                    Some(h)
                } else {
                    None
                };
                let documents = (counted.documents, counted.held_out_documents);
                (Some(counted.counts), counted.files, counted.skipped_files.len(), documents, held_out)
            }
        };
        let strength = if counts.is_some() { self.prior_strength } else { 1.0 };
        // The prior is blended in at a positive strength; held-out text draws from it whatever
        // the strength.
        let mixes = self.prior_share > 0.0 && held_out.is_some();
        let prior = match &tokenizer {
            Some(t) if strength > 0.0 || mixes => Some(Prior::from_tokenizer(t, n)?),
            _ => None,
        };
        // Held-out tokens the count never saw: what live text brings that the corpus lacks.
        let (held_out_tokens, unseen) = match (&held_out, &counts) {
            (Some(h), Some(c)) => {
                let ids = h.sentences.iter().flatten();
                let unseen = ids.clone().filter(|&&t| c.get(t as usize).is_none_or(|&c| c == 0)).count();
                (ids.count() as u64, unseen as u64)
            }
            _ => (0, 0),
        };
        // Then the tokens of another source: the figures above are of the text as written.
        let mut held_out = held_out;
        let mut replaced = 0;
        if let (Some(h), Some(p)) = (&mut held_out, &prior) {
            replaced = prior::mix_into(p, &mut h.sentences, self.prior_share, seed ^ MIX_SEED);
            h.prior_share = self.prior_share;
        }
        // How much of what the tokenizer expects the corpus saw ([`CorpusFigures::prior_mass_seen`]).
        // A uniform prior knows nothing of other text: its mass is only the share of rows.
        let prior_mass_seen = match (&prior, &counts) {
            (Some(p), Some(c)) if p.source != PriorSource::Uniform => Some(prior::mass_seen(p, c)),
            _ => None,
        };
        let prior = prior.filter(|_| strength > 0.0);
        let figures = CorpusFigures {
            files,
            skipped_files: skipped,
            documents: documents.0,
            held_out_documents: documents.1,
            tokens: counts.as_ref().map_or(0, |c| c.iter().sum()),
            seen_rows: counts.as_ref().map_or(0, |c| c.iter().filter(|&&c| c > 0).count()),
            held_out: held_out.as_ref().map_or(0, |h| h.sentences.len()),
            held_out_tokens,
            held_out_unseen_tokens: unseen,
            held_out_prior_tokens: replaced,
            prior_mass_seen,
            prior: prior.as_ref().map(|p| p.source),
            prior_strength: prior.as_ref().map(|_| strength),
            weighting: self.weighting,
            weight_floor: self.weight_floor,
        };
        let stats = TokenStats { counts, prior, strength };
        let weights = weights(&stats.pseudo_counts(), self.weighting, self.weight_floor);
        Ok(TokenData { stats, weights, held_out, figures })
    }
}

/// Seeds the draws of [`DataOptions::prior_share`] apart from the run's other draws.
const MIX_SEED: u64 = 0x6d69_785f_7072_696f;

/// Token statistics of a table's rows: counts (from a corpus or a count file) and the
/// tokenizer's prior, blended at a strength.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenStats {
    /// Occurrences of each row's token, `[n]`, when counted.
    pub counts: Option<Vec<u64>>,
    /// The tokenizer's prior, when there was a tokenizer (and a strength above 0).
    pub prior: Option<Prior>,
    /// How much the prior weighs against the counts.
    pub strength: f64,
}

impl TokenStats {
    /// The counts as the weights see them: blended with the prior when there is one.
    pub fn pseudo_counts(&self) -> Vec<u64> {
        match (&self.prior, &self.counts) {
            (Some(p), c) => prior::as_counts(&prior::blend(c.as_deref(), p, self.strength)),
            (None, Some(c)) => c.clone(),
            (None, None) => Vec::new(),
        }
    }

    /// The rows of the frequent tier covering `mass`, increasing: the fewest covering `mass` of
    /// the counted tokens; with a prior, as many rows but those the blend ranks first (without
    /// counts, the fewest covering `mass` of the prior).
    pub fn tier(&self, mass: f64) -> Vec<usize> {
        match (&self.prior, &self.counts) {
            (Some(p), c) => prior::tier_rows(c.as_deref(), p, self.strength, mass),
            (None, Some(c)) => prior::covering_rows(&c.iter().map(|&v| v as f64).collect::<Vec<_>>(), mass),
            (None, None) => Vec::new(),
        }
    }

    /// The share of the counted tokens (without counts: of the prior's mass) that `rows` cover.
    pub fn covered(&self, rows: &[usize]) -> f64 {
        let share = |v: &dyn Fn(usize) -> f64, len: usize| {
            let total: f64 = (0..len).map(v).sum();
            if total > 0.0 { rows.iter().map(|&r| v(r)).sum::<f64>() / total } else { 0.0 }
        };
        match (&self.counts, &self.prior) {
            (Some(c), _) => share(&|i| c[i] as f64, c.len()),
            (None, Some(p)) => share(&|i| p.probabilities[i], p.probabilities.len()),
            (None, None) => 0.0,
        }
    }
}

/// What counting found: token statistics and weights, held-out sentences, figures for the
/// report.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenData {
    pub stats: TokenStats,
    /// The row weights, `[n]` (`None` for [`Weighting::None`]).
    pub weights: Option<Vec<f32>>,
    /// Held-out sentences, when the source was text with at least two of them.
    pub held_out: Option<HeldOut>,
    pub figures: CorpusFigures,
}

/// Where row weights came from, for the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CorpusFigures {
    /// Files counted (corpus) or the token-count file (0 for the prior alone).
    pub files: usize,
    /// Files skipped as not text.
    pub skipped_files: usize,
    /// Documents the corpus was cut into, and those held out of the count.
    pub documents: usize,
    pub held_out_documents: usize,
    /// Tokens counted.
    pub tokens: u64,
    /// Table rows whose token occurred at least once.
    pub seen_rows: usize,
    /// Held-out sentences used for validation.
    pub held_out: usize,
    /// Their tokens, and those of rows the count never saw.
    pub held_out_tokens: u64,
    pub held_out_unseen_tokens: u64,
    /// Held-out tokens replaced by draws from the prior ([`DataOptions::prior_share`]).
    pub held_out_prior_tokens: u64,
    /// The share of the tokenizer's prior mass on the rows the count saw (with counts and a
    /// tokenizer whose prior is not uniform): how much of the text the tokenizer was made for the corpus looks like. Under
    /// [`prior::NARROW_COVERAGE`], figures on held-out text also need sequences drawn from the
    /// prior to agree ([`crate::check::IdSource::Prior`]).
    pub prior_mass_seen: Option<f64>,
    /// The tokenizer's prior blended in, and at what strength.
    pub prior: Option<PriorSource>,
    pub prior_strength: Option<f64>,
    pub weighting: Weighting,
    pub weight_floor: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One case per setting `DataOptions::check` rejects, each naming its parameter.
    #[test]
    fn each_invalid_data_setting_names_its_parameter() {
        let base = || DataOptions::prior(PathBuf::from("tokenizer.json"));
        assert!(base().check().is_ok());
        let cases: Vec<(Param, Box<dyn Fn(&mut DataOptions)>)> = vec![
            (Param::WeightFloor, Box::new(|d| d.weight_floor = -0.1)),
            (Param::WeightFloor, Box::new(|d| d.weight_floor = f64::NAN)),
            (Param::PriorStrength, Box::new(|d| d.prior_strength = -1.0)),
            (Param::PriorStrength, Box::new(|d| d.prior_strength = f64::INFINITY)),
            (Param::PriorShare, Box::new(|d| d.prior_share = 1.5)),
            (Param::PriorShare, Box::new(|d| d.prior_share = -0.01)),
            (Param::PriorShare, Box::new(|d| d.prior_share = f64::NAN)),
            (Param::Holdout, Box::new(|d| d.holdout.fraction = 2.0)),
        ];
        for (param, set) in cases {
            let mut d = base();
            set(&mut d);
            match d.check() {
                Err(Error::InvalidParameter { param: p, .. }) => assert_eq!(p, param, "{d:?}"),
                other => panic!("{param}: {other:?}"),
            }
            // Checked before anything is read: the tokenizer file does not exist.
            assert!(matches!(d.count(10, 0, &mut |_, _, _| {}), Err(Error::InvalidParameter { .. })));
        }
    }
}
