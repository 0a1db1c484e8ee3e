//! Command-line arguments (clap derive).

use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};
use crate::corpus::{Holdout, Weighting};
use crate::data::DataOptions;
use crate::onnx::io;
use crate::quant::Bits;
use crate::{Data, Goal, HotTier, Method, Options, Param, Precision, Runtime, Setting, Size, Storage, Subspaces, SweepGrid, ValidateOptions};

/// `--weighting` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WeightingArg {
    None,
    Sqrt,
    Linear,
}

impl From<WeightingArg> for Weighting {
    fn from(w: WeightingArg) -> Self {
        match w {
            WeightingArg::None => Self::None,
            WeightingArg::Sqrt => Self::Sqrt,
            WeightingArg::Linear => Self::Linear,
        }
    }
}

/// `--validate` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RuntimeArg {
    /// tract, built in.
    Tract,
    /// onnxruntime, from ORT_DYLIB_PATH or the onnxruntime package python3 imports.
    Onnxruntime,
}

impl From<RuntimeArg> for Runtime {
    fn from(r: RuntimeArg) -> Self {
        match r {
            RuntimeArg::Tract => Self::Tract,
            RuntimeArg::Onnxruntime => Self::Onnxruntime,
        }
    }
}

/// `--external-data` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExternalDataArg {
    /// As the input: external data when it had some, else inline (unless over 2 GiB).
    Auto,
    /// External data in OUT.data beside OUT.
    Always,
    /// One self-contained file (an error over protobuf's 2 GiB limit).
    Never,
}

impl ExternalDataArg {
    /// The write options for an output of the input read as `stored`.
    pub fn write_options(self, stored: &io::InputFiles) -> io::WriteOptions {
        let external_data = match self {
            Self::Auto => io::ExternalData::like(stored),
            Self::Always => io::ExternalData::Always,
            Self::Never => io::ExternalData::Never,
        };
        io::WriteOptions { external_data }
    }
}

fn parse_bits(s: &str) -> Result<Precision, String> {
    match s {
        "float" => Ok(Precision::Float),
        "8" => Ok(Precision::Bits(Bits::B8)),
        "4" => Ok(Precision::Bits(Bits::B4)),
        "2" => Ok(Precision::Bits(Bits::B2)),
        _ => Err(format!("'{s}' is not one of float, 8, 4, 2")),
    }
}

fn parse_k(s: &str) -> Result<Subspaces, String> {
    if s == "auto" {
        return Ok(Subspaces::Auto);
    }
    s.parse::<usize>().map(Subspaces::Fixed).map_err(|_| format!("'{s}' is neither a number nor 'auto'"))
}

/// Shrink the word-embedding table of an ONNX transformer by projective clustering (MESSI).
///
/// `onnx-embcomp IN.onnx OUT.onnx` fits k subspaces of dimension j to the embedding rows,
/// replaces the embedding Gather by k lookups recombined by Concat + MatMul, validates the
/// result (with tract, or onnxruntime) and writes it. `onnx-embcomp inspect IN.onnx` shows what would be chosen.
#[derive(Debug, Parser)]
#[command(name = "onnx-embcomp", version, args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub compress: CompressArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show a model's inputs, outputs, parameters and embedding candidates.
    Inspect(InspectArgs),
    /// Evaluate a grid over the whole family (plain storage, tiers, SVD, clustering, each
    /// precision) on held-out text, mark the Pareto front of bytes against fidelity, write
    /// every point as JSON and a plot, and print the command of each front point.
    Sweep(Box<SweepArgs>),
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The ONNX model.
    pub input: PathBuf,
    /// Also list every rejected Gather and why.
    #[arg(short, long)]
    pub verbose: bool,
    /// Print JSON on stdout instead of text.
    #[arg(long)]
    pub json: bool,
    /// Force the table: a Gather node name or an initializer name.
    #[arg(long, value_name = "NAME")]
    pub embedding: Option<String>,
}

#[derive(Debug, Args)]
pub struct CompressArgs {
    /// The ONNX model to compress.
    #[arg(required = true)]
    pub input: Option<PathBuf>,
    /// Where to write the compressed model (never the input itself).
    #[arg(required = true)]
    pub output: Option<PathBuf>,
    /// Number of subspaces (1 gives the plain SVD baseline), or `auto` to try 1, 2, 4 and 8
    /// at the same budget and keep the lowest error [default: 4]. With --target-cos, -k
    /// bisects that method's --ratio; without, the whole family is searched.
    #[arg(short, value_parser = parse_k)]
    pub k: Option<Subspaces>,
    /// Give each cluster its own dimension j_i, shared out by eigenvalue gain per stored number
    /// within the same budget.
    #[arg(long)]
    pub adaptive_j: bool,
    /// Dimension of each subspace (instead of --ratio).
    #[arg(short, conflicts_with = "ratio")]
    pub j: Option<usize>,
    /// Fraction of the embedding's numbers to remove, index maps included; sets j.
    #[arg(long, default_value_t = 0.4)]
    pub ratio: f64,
    #[command(flatten)]
    pub run: RunArgs,
    /// Independent restarts of the fit; the cheapest is kept.
    #[arg(long, default_value_t = Options::default().fit.restarts)]
    pub restarts: usize,
    /// Lloyd iterations per restart at most.
    #[arg(long, default_value_t = Options::default().fit.max_iter)]
    pub max_iter: usize,
    /// Rows sampled for the restarts (the best is then polished on all rows)
    /// [default: 10 per subspace dimension (k x j), at least 8192]
    #[arg(long)]
    pub sample_rows: Option<usize>,
    /// Lloyd iterations on all rows after the restarts, at most (0: none, but a fit on a
    /// sample still assigns all rows once).
    #[arg(long, default_value_t = Options::default().fit.polish_iter)]
    pub polish_iter: usize,
    /// Skip the validation.
    #[arg(long, conflicts_with = "validate")]
    pub no_validate: bool,
    /// Sequence length fed to symbolic dimensions during validation.
    #[arg(long, default_value_t = ValidateOptions::default().seq)]
    pub seq: usize,
    /// Batch size fed to symbolic batch dimensions during validation.
    #[arg(long, default_value_t = ValidateOptions::default().batch)]
    pub batch: usize,
    #[command(flatten)]
    pub data: DataArgs,
    /// Fail (exit 1, nothing written) when the mean cosine between original and compressed
    /// outputs is below this: on held-out text with --corpus, else on random token ids.
    #[arg(long, value_name = "X")]
    pub min_cos: Option<f64>,
    /// Write the smallest model of the family (plain storage, tiers, SVD, clustering, each
    /// precision: the grid of `sweep`) that reaches this mean cosine (measured as for
    /// --min-cos); with -k, the highest --ratio of that k, by bisection. The report lists every
    /// probe; nothing is written when none reaches it (exit 1).
    #[arg(long, value_name = "X", conflicts_with_all = ["j", "ratio", "min_cos", "plain"])]
    pub target_cos: Option<f64>,
    /// Write the closest model of the family that stores at most this much for the embedding:
    /// bytes, or a share of the fp32 table (`10%`).
    #[arg(
        long,
        value_name = "N|P%",
        value_parser = parse_size,
        conflicts_with_all = ["j", "ratio", "min_cos", "target_cos", "k", "plain", "codes", "bits", "hot_bits", "adaptive_j"]
    )]
    pub max_bytes: Option<Goal>,
    /// Probes of the --target-cos bisection (with -k).
    #[arg(long, default_value_t = 6)]
    pub probes: usize,
    /// Where the output's large tensors (>= 1 KiB) go: `auto` as in the input, `always` as
    /// external data in OUT.data beside OUT, `never` inline in one file.
    #[arg(long, value_enum, value_name = "WHERE", default_value_t = ExternalDataArg::Auto)]
    pub external_data: ExternalDataArg,
    /// Precision of the stored rows (coefficients, or the table's rows with --plain): float
    /// (the table's type, the paper's layout), or 8, 4 or 2 bits in per-row blocks with f16
    /// scales [default: 8].
    #[arg(long, value_name = "float|8|4|2", value_parser = parse_bits)]
    pub bits: Option<Precision>,
    /// Values per quantization block along a row.
    #[arg(long, value_name = "N", default_value_t = Storage::default().block)]
    pub block: usize,
    /// Store the table's rows themselves at --bits, no clustering: plain quantization, the
    /// baseline to compare with.
    #[arg(long, conflicts_with_all = ["k", "j", "ratio", "adaptive_j", "target_cos"])]
    pub plain: bool,
    /// Store the rows as product codes (no clustering): one byte per sub-vector of N values
    /// (default 4), the nearest of 256 codewords fitted with the row weights for its position;
    /// with --hot-bits, the rows outside the frequent tier.
    #[arg(long, value_name = "N", num_args = 0..=1, default_missing_value = "4",
          conflicts_with_all = ["k", "j", "ratio", "adaptive_j", "target_cos", "plain", "bits"])]
    pub codes: Option<usize>,
    /// With --codes: code the rows' coordinates in their principal axes (weighted by the row
    /// weights), stored as an f16 basis of d x d values; the lookup multiplies by it.
    #[arg(long, requires = "codes")]
    pub rotate: bool,
    /// Store the rows of the most frequent tokens (covering --hot-mass of the counted tokens)
    /// plain at this precision, the others as asked. Needs --corpus or --token-counts.
    #[arg(long, value_name = "float|8|4|2", value_parser = parse_bits)]
    pub hot_bits: Option<Precision>,
    /// Share of the counted tokens the frequent rows of --hot-bits cover.
    #[arg(long, value_name = "M", default_value_t = 0.999, requires = "hot_bits")]
    pub hot_mass: f64,
    /// Also write the report as JSON to this file (`-`: stdout).
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,
    /// No report and no progress bar on stderr (errors still show).
    #[arg(short, long)]
    pub quiet: bool,
}

impl CompressArgs {
    /// Refuses flags that the search across the family (`--target-cos` without -k) would
    /// ignore: it chooses the storage itself. With -k, the bisection keeps them.
    pub fn check(&self) -> Result<(), String> {
        if self.target_cos.is_some() && self.k.is_none() {
            let given = [("--bits", self.bits.is_some()), ("--hot-bits", self.hot_bits.is_some()), ("--adaptive-j", self.adaptive_j)];
            if let Some((flag, _)) = given.iter().find(|(_, on)| *on) {
                return Err(format!(
                    "{flag} cannot be used with --target-cos alone: the search across the family chooses the storage \
                     and fit itself; add -k to bisect that k's --ratio with {flag} kept"
                ));
            }
        }
        Ok(())
    }

    /// The library options these flags ask for: what the run fixes, and the setting.
    pub fn options(&self) -> (Options, Setting) {
        let mut o = Options::default();
        o.fit.restarts = self.restarts;
        o.fit.max_iter = self.max_iter;
        o.fit.sample_rows = self.sample_rows;
        o.fit.polish_iter = self.polish_iter;
        o.validate = (!self.no_validate).then(|| ValidateOptions::new(self.batch, self.seq));
        // (after the validation's settings: it sets their runtime)
        self.run.apply(&mut o);
        o.min_cos = self.min_cos;
        o.data = self.data.options();
        let mut storage = Storage::default();
        storage.bits = self.bits.unwrap_or(storage.bits);
        storage.block = self.block;
        storage.hot = self.hot_bits.map(|bits| HotTier { bits, mass: self.hot_mass });
        let method = match (self.plain, self.codes) {
            (true, _) => Method::Plain,
            (false, Some(sub)) => Method::Codes { sub, rotated: self.rotate },
            (false, None) => Method::Subspaces {
                k: self.k.unwrap_or(Subspaces::Fixed(4)),
                size: self.j.map_or(Size::Ratio(self.ratio), Size::Dim),
                adaptive: self.adaptive_j,
            },
        };
        (o, Setting::new(method, storage))
    }

}

/// The data-aware flags, shared by compress and sweep.
#[derive(Debug, Args)]
pub struct DataArgs {
    /// Text files or folders of them (`.gz` read too) to count tokens in: rows are then weighted
    /// by how often their token occurs, and held-out sentences validate the result. Needs
    /// --tokenizer.
    #[arg(long, value_name = "PATH", num_args = 1.., requires = "tokenizer", conflicts_with = "token_counts")]
    pub corpus: Vec<PathBuf>,
    /// The model's Hugging Face tokenizer.json: counts --corpus, and its prior (Unigram
    /// scores, BPE merge ranks or WordPiece order) is blended into the counts. Alone, without a
    /// corpus, the prior gives the weights and frequent tiers, and validation draws token
    /// sequences from it instead of uniform random ids.
    #[arg(long, value_name = "PATH")]
    pub tokenizer: Option<PathBuf>,
    /// How much the tokenizer's prior weighs against the counted text (as much as this many
    /// times the corpus; 0: counts alone), so tokens common in the language but absent from the
    /// corpus are not treated as never used.
    #[arg(long, value_name = "S", default_value_t = crate::prior::DEFAULT_STRENGTH)]
    pub prior_strength: f64,
    /// Share of the held-out sentences' tokens replaced by draws from the tokenizer's prior
    /// before the check (0: the held-out text as written), so that --target-cos holds on text of
    /// another source than the corpus, which brings words the corpus holds rarely or never.
    #[arg(long, value_name = "SHARE", default_value_t = crate::prior::DEFAULT_SHARE)]
    pub prior_share: f64,
    /// Token counts computed elsewhere: one `id count` pair per line.
    #[arg(long, value_name = "PATH")]
    pub token_counts: Option<PathBuf>,
    /// How counts become row weights.
    #[arg(long, value_enum, default_value_t = WeightingArg::Sqrt)]
    pub weighting: WeightingArg,
    /// Weight added to every row, as a fraction of the mean weight, so unseen tokens still count.
    #[arg(long, default_value_t = DataOptions::counts(PathBuf::new(), None).weight_floor)]
    pub weight_floor: f64,
    /// Held-out sentences (from documents never counted: one in ten files, or blocks of a large
    /// file) to validate on, at most.
    #[arg(long, default_value_t = Holdout::default().max)]
    pub holdout: usize,
}

impl DataArgs {
    /// Data-aware settings, when a corpus, token counts or the tokenizer are given.
    pub fn options(&self) -> Option<Data> {
        let mut data = match (&self.token_counts, self.corpus.is_empty(), &self.tokenizer) {
            (Some(path), _, tokenizer) => DataOptions::counts(path.clone(), tokenizer.clone()),
            (None, false, Some(tokenizer)) => DataOptions::text(self.corpus.clone(), tokenizer.clone()),
            (None, true, Some(tokenizer)) => DataOptions::prior(tokenizer.clone()),
            (None, _, None) => return None, // (clap requires --tokenizer with --corpus)
        };
        data.weighting = self.weighting.into();
        data.weight_floor = self.weight_floor;
        data.prior_strength = self.prior_strength;
        data.prior_share = self.prior_share;
        data.holdout = Holdout { max: self.holdout, ..Holdout::default() };
        Some(Data::Count(data))
    }

    /// These flags as given, to print commands that repeat them; with `counts`, those token
    /// counts stand for the corpus (and its held-out text).
    pub fn as_args(&self, counts: Option<&Path>) -> Vec<String> {
        let mut a = Vec::new();
        if let Some(c) = counts.or(self.token_counts.as_deref()) {
            a.extend(["--token-counts".to_string(), c.display().to_string()]);
        }
        if counts.is_none() && !self.corpus.is_empty() {
            a.push("--corpus".into());
            a.extend(self.corpus.iter().map(|p| p.display().to_string()));
        }
        // (with token counts, the tokenizer's prior is blended in as with the corpus)
        if let Some(t) = &self.tokenizer {
            a.extend(["--tokenizer".to_string(), t.display().to_string()]);
        }
        if self.prior_strength != crate::prior::DEFAULT_STRENGTH {
            a.extend(["--prior-strength".to_string(), self.prior_strength.to_string()]);
        }
        // (without held-out text, as with printed token counts, the share changes nothing)
        if self.prior_share != crate::prior::DEFAULT_SHARE && counts.is_none() {
            a.extend(["--prior-share".to_string(), self.prior_share.to_string()]);
        }
        if self.weighting != WeightingArg::Sqrt {
            a.extend(["--weighting".to_string(), format!("{:?}", self.weighting).to_lowercase()]);
        }
        let defaults = DataOptions::counts(PathBuf::new(), None);
        if self.weight_floor != defaults.weight_floor {
            a.extend(["--weight-floor".to_string(), self.weight_floor.to_string()]);
        }
        if self.holdout != Holdout::default().max && counts.is_none() {
            a.extend(["--holdout".to_string(), self.holdout.to_string()]);
        }
        a
    }
}

/// `--max-bytes`: bytes, or a share of the fp32 table (`10%`).
fn parse_size(s: &str) -> Result<Goal, String> {
    match s.strip_suffix('%') {
        Some(p) => match p.trim().parse::<f64>() {
            Ok(v) if v > 0.0 && v <= 100.0 => Ok(Goal::MaxShare(v / 100.0)),
            _ => Err(format!("'{s}' is not a share in (0, 100]%")),
        },
        None => s.parse::<u64>().map(Goal::MaxBytes).map_err(|_| format!("'{s}' is neither a byte count nor a share like 10%")),
    }
}

/// `onnx-embcomp sweep`.
#[derive(Debug, Args)]
pub struct SweepArgs {
    /// The ONNX model.
    pub input: PathBuf,
    #[command(flatten)]
    pub data: DataArgs,
    /// Folder for sweep.json, sweep.svg and sweep.png (created if missing).
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub out: PathBuf,
    /// Subspace counts of the grid (1: the SVD).
    #[arg(long, value_delimiter = ',', default_values_t = SweepGrid::default().ks)]
    pub ks: Vec<usize>,
    /// Ratios of the grid (fraction of numbers removed).
    #[arg(long, value_delimiter = ',', default_values_t = SweepGrid::default().ratios)]
    pub ratios: Vec<f64>,
    /// Coefficient precisions of the grid.
    #[arg(long, value_delimiter = ',', value_parser = parse_bits, default_value = "8,4,2")]
    pub bits: Vec<Precision>,
    #[command(flatten)]
    pub run: RunArgs,
    /// No progress bar on stderr.
    #[arg(short, long)]
    pub quiet: bool,
}

impl SweepArgs {
    /// The base options and the grid.
    pub fn options(&self) -> (Options, SweepGrid) {
        let mut o = Options::default();
        self.run.apply(&mut o);
        o.data = self.data.options();
        let g = SweepGrid { ks: self.ks.clone(), ratios: self.ratios.clone(), bits: self.bits.clone(), ..SweepGrid::default() };
        (o, g)
    }

    /// The flags a printed command repeats before the point's own (data-aware, seed, ...); with
    /// `counts`, the corpus is replaced by those token counts.
    pub fn common_args(&self, counts: Option<&Path>) -> Vec<String> {
        let mut a = self.data.as_args(counts);
        a.extend(self.run.as_args());
        a
    }
}

/// The flags that pick the table and seed and pace the run, shared by compress and sweep.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Force the table: a Gather node name or an initializer name.
    #[arg(long, value_name = "NAME")]
    pub embedding: Option<String>,
    /// Rewrite the lookup even if other nodes read the table, which is then kept (the file
    /// grows). A tied LM head needs it only for storage other than `--plain` rows (clustering,
    /// `--codes`, tiers), as plain rows serve the head from the stored rows.
    #[arg(long)]
    pub allow_shared: bool,
    /// Seed of all random choices; the same seed gives the same output bytes.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Threads for the fits, and for a sweep the points checked at once (0: all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// The runtime that runs the original and the compressed models for the checks (the
    /// validation, the held-out text, a sweep's points): tract (built in), or onnxruntime for
    /// models tract cannot run (its shared library from ORT_DYLIB_PATH, else from the onnxruntime
    /// package python3 imports)
    #[arg(long, value_name = "RUNTIME", value_enum, default_value_t = RuntimeArg::Tract)]
    pub validate: RuntimeArg,
}

impl RunArgs {
    fn apply(&self, o: &mut Options) {
        o.embedding = self.embedding.clone();
        o.allow_shared = self.allow_shared;
        o.seed = self.seed;
        o.threads = self.threads;
        if let Some(v) = o.validate.as_mut() {
            v.runtime = self.validate.into();
        }
    }

    /// The flags repeating these settings in a printed command (threads left out: they do not
    /// change the bytes).
    fn as_args(&self) -> Vec<String> {
        let mut a = Vec::new();
        if let Some(e) = &self.embedding {
            a.extend(["--embedding".to_string(), e.clone()]);
        }
        if self.allow_shared {
            a.push("--allow-shared".into());
        }
        if self.seed != 0 {
            a.extend(["--seed".to_string(), self.seed.to_string()]);
        }
        if self.validate != RuntimeArg::Tract {
            a.extend(["--validate".to_string(), "onnxruntime".to_string()]);
        }
        a
    }
}

/// The `compress` flags that give `setting` (after `IN OUT` and the run's flags).
pub fn setting_args(setting: &Setting) -> Vec<String> {
    let bits = |p: Precision| match p {
        Precision::Float => "float".to_string(),
        Precision::Bits(b) => b.count().to_string(),
    };
    let mut a: Vec<String> = Vec::new();
    match setting.method {
        Method::Plain => a.push("--plain".into()),
        Method::Codes { sub, rotated } => {
            a.extend(["--codes".into(), sub.to_string()]);
            if rotated {
                a.push("--rotate".into());
            }
        }
        Method::Subspaces { k, size, adaptive } => {
            a.extend(["-k".into(), match k {
                Subspaces::Fixed(k) => k.to_string(),
                Subspaces::Auto => "auto".into(),
            }]);
            match size {
                Size::Ratio(r) => a.extend(["--ratio".into(), r.to_string()]),
                Size::Dim(j) => a.extend(["-j".into(), j.to_string()]),
            }
            if adaptive {
                a.push("--adaptive-j".into());
            }
        }
    }
    let storage = &setting.storage;
    if !matches!(setting.method, Method::Codes { .. }) {
        a.extend(["--bits".into(), bits(storage.bits)]);
    }
    if storage.block != Storage::default().block {
        a.extend(["--block".into(), storage.block.to_string()]);
    }
    if let Some(h) = storage.hot {
        a.extend(["--hot-bits".into(), bits(h.bits), "--hot-mass".into(), h.mass.to_string()]);
    }
    a
}

/// The flag that sets a library parameter, for error messages.
pub fn flag(param: Param) -> &'static str {
    match param {
        Param::K => "-k",
        Param::J => "-j",
        Param::Ratio => "--ratio",
        Param::AdaptiveJ => "--adaptive-j",
        Param::Restarts => "--restarts",
        Param::MaxIter => "--max-iter",
        Param::SampleRows => "--sample-rows",
        Param::Weights => "--corpus/--token-counts",
        Param::WeightFloor => "--weight-floor",
        Param::Batch => "--batch",
        Param::Seq => "--seq",
        Param::MinCos => "--min-cos",
        Param::TargetCos => "--target-cos",
        Param::Probes => "--probes",
        Param::Bits => "--bits",
        Param::Block => "--block",
        Param::HotBits => "--hot-bits",
        Param::HotMass => "--hot-mass",
        Param::Plain => "--plain",
        Param::MaxBytes => "--max-bytes",
        Param::Embedding => "--embedding",
        Param::AllowShared => "--allow-shared",
        Param::Validate => "--no-validate",
        Param::Runtime => "--validate",
        Param::ExternalData => "--external-data",
        Param::PriorStrength => "--prior-strength",
        Param::PriorShare => "--prior-share",
        Param::Holdout => "--holdout",
        Param::SubVector => "--codes",
        // Settings without a flag keep their library name.
        other => other.name(),
    }
}
