//! Command-line arguments (clap derive).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use onnx_embcomp::Subspaces;

/// `--weighting` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WeightingArg {
    None,
    Sqrt,
    Linear,
}

impl From<WeightingArg> for onnx_embcomp::corpus::Weighting {
    fn from(w: WeightingArg) -> Self {
        match w {
            WeightingArg::None => Self::None,
            WeightingArg::Sqrt => Self::Sqrt,
            WeightingArg::Linear => Self::Linear,
        }
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
/// result with tract and writes it. `onnx-embcomp inspect IN.onnx` shows what would be chosen.
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
    /// at the same budget and keep the lowest error.
    #[arg(short, default_value = "4", value_parser = parse_k)]
    pub k: Subspaces,
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
    /// Force the table: a Gather node name or an initializer name.
    #[arg(long, value_name = "NAME")]
    pub embedding: Option<String>,
    /// Rewrite the lookup even if other nodes (a tied LM head) read the table; it is kept, so
    /// the file grows.
    #[arg(long)]
    pub allow_shared: bool,
    /// Seed of all random choices; the same seed gives the same output bytes.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Independent restarts of the fit; the cheapest is kept.
    #[arg(long, default_value_t = onnx_embcomp::Options::default().restarts)]
    pub restarts: usize,
    /// Lloyd iterations per restart at most.
    #[arg(long, default_value_t = onnx_embcomp::Options::default().max_iter)]
    pub max_iter: usize,
    /// Rows sampled for the restarts (the best is then polished on all rows)
    /// [default: 10 per subspace dimension (k x j), at least 8192]
    #[arg(long)]
    pub sample_rows: Option<usize>,
    /// Lloyd iterations on all rows after the restarts, at most (0: none, but a fit on a
    /// sample still assigns all rows once).
    #[arg(long, default_value_t = onnx_embcomp::Options::default().polish_iter)]
    pub polish_iter: usize,
    /// Threads for the fit (0: all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Skip the validation with tract.
    #[arg(long)]
    pub no_validate: bool,
    /// Sequence length fed to symbolic dimensions during validation.
    #[arg(long, default_value_t = 16)]
    pub seq: usize,
    /// Batch size fed to symbolic batch dimensions during validation.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Text files or folders of them (`.gz` read too) to count tokens in: rows are then weighted
    /// by how often their token occurs, and held-out sentences validate the result. Needs
    /// --tokenizer.
    #[arg(long, value_name = "PATH", num_args = 1.., requires = "tokenizer", conflicts_with = "token_counts")]
    pub corpus: Vec<PathBuf>,
    /// The model's Hugging Face tokenizer.json, for --corpus.
    #[arg(long, value_name = "PATH")]
    pub tokenizer: Option<PathBuf>,
    /// Token counts computed elsewhere: one `id count` pair per line.
    #[arg(long, value_name = "PATH")]
    pub token_counts: Option<PathBuf>,
    /// How counts become row weights.
    #[arg(long, value_enum, default_value_t = WeightingArg::Sqrt)]
    pub weighting: WeightingArg,
    /// Weight added to every row, as a fraction of the mean weight, so unseen tokens still count.
    #[arg(long, default_value_t = 0.1)]
    pub weight_floor: f64,
    /// Held-out sentences (never counted) to validate on, at most.
    #[arg(long, default_value_t = 200)]
    pub holdout: usize,
    /// Fail (exit 1, nothing written) when the mean cosine between original and compressed
    /// outputs is below this: on held-out text with --corpus, else on random token ids.
    #[arg(long, value_name = "X")]
    pub min_cos: Option<f64>,
    /// Search the highest --ratio whose output still reaches this mean cosine (measured as for
    /// --min-cos), by bisection; the report lists every probe.
    #[arg(long, value_name = "X", conflicts_with_all = ["j", "ratio", "min_cos"])]
    pub target_cos: Option<f64>,
    /// Probes of the --target-cos search.
    #[arg(long, default_value_t = 6)]
    pub probes: usize,
    /// Also write the report as JSON to this file (`-`: stdout).
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,
    /// No report and no progress bar on stderr (errors still show).
    #[arg(short, long)]
    pub quiet: bool,
}
