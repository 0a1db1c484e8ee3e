//! Text for a terminal: the report, the inspect summary and the sweep's table. The library's
//! types carry the figures; the words and the layout are the command line's.

use std::fmt::Write as _;
use std::path::Path;

use crate::inspect::Summary;
use crate::report::Family;
use crate::{Report, Sweep};

use super::args::SweepArgs;

pub fn report(r: &Report) -> String {
    let mut s = String::new();
    let [n, d] = r.shape;
    let _ = writeln!(s, "embedding   {} [{n} x {d}] {:?}, lookups: {}", r.table, r.dtype, r.lookups.join(", "));
    let dims = if r.dims.iter().all(|&j| j == r.j) {
        format!("j = {}", r.j)
    } else {
        format!("j per cluster {:?}", r.dims)
    };
    let storage = &r.storage;
    if let (Some(t), Some(h)) = (&r.tiers, storage.hot) {
        let _ = writeln!(
            s,
            "tier        {} most frequent rows ({:.2}% of the counted tokens) plain at {}: {} bytes",
            t.hot_rows,
            100.0 * t.mass,
            h.bits,
            t.hot.bytes
        );
    }
    let rest = if r.tiers.is_some() { "other rows" } else { "rows" };
    if r.stored.codebooks.bytes > 0 {
        // (codes in the principal axes are a coefficient branch, with the axes as its basis)
        let axes = match r.stored.bases.bytes {
            0 => String::new(),
            b => format!(", in their principal axes ({b} bytes of f16 basis)"),
        };
        let _ = writeln!(
            s,
            "layout      {rest} as product codes: {} bytes of codes, {} bytes of codebooks (int8){axes}",
            r.stored.plain.bytes - r.tiers.as_ref().map_or(0, |t| t.hot.bytes) + r.stored.coefficients.bytes,
            r.stored.codebooks.bytes
        );
    } else if r.k == 0 {
        let _ = writeln!(s, "layout      {rest} plain at {} (block {})", storage.bits, storage.block);
    } else {
        let values = match storage.bits {
            crate::storage::Precision::Float => String::new(),
            b => format!(", coefficients at {b} (block {}), bases f16", storage.block),
        };
        let _ = writeln!(
            s,
            "layout      k = {} ({} non-empty), {dims}; rows per cluster {:?}{values}",
            r.k, r.clusters, r.fit.cluster_sizes
        );
    }
    for t in &r.tried {
        let w = t.weighted_relative_error.map_or(String::new(), |w| format!(", weighted {w:.4}"));
        let mark = if t.k == r.k { " (chosen)" } else { "" };
        let _ = writeln!(s, "  tried     k = {}: error {:.4}{w}, {} numbers{mark}", t.k, t.relative_error, t.numbers);
    }
    let _ = writeln!(s, "{:<22}{:>16}{:>16}{:>10}", "", "before", "after", "change");
    let _ = writeln!(
        s,
        "{:<22}{:>16}{:>16}{:>9.1}%",
        "embedding numbers",
        r.numbers_before,
        r.numbers_after,
        -r.saved_percent
    );
    let pct = 100.0 * (r.embedding_bytes_after as f64 / r.embedding_bytes_before.max(1) as f64 - 1.0);
    let _ = writeln!(
        s,
        "{:<22}{:>16}{:>16}{:>9.1}%",
        "embedding bytes", r.embedding_bytes_before, r.embedding_bytes_after, pct
    );
    if let (Some(b), Some(a)) = (r.bytes_before, r.bytes_after) {
        let pct = 100.0 * (a as f64 / b.max(1) as f64 - 1.0);
        let _ = writeln!(s, "{:<22}{:>16}{:>16}{:>9.1}%", "file bytes", b, a, pct);
    }
    if !r.heads_served.is_empty() {
        let how = match r.head_product {
            Some(crate::report::HeadProduct::Integer) => "the stored 8-bit codes (integer products: a quarter of the table's memory at run time)",
            _ => "the dequantized stored rows (a float product: onnxruntime dequantizes them once at load, tract on every run)",
        };
        let _ = writeln!(s, "lm head     tied: {} read(s) {how}, the table is gone", r.heads_served.join(", "));
    }
    if r.table_kept {
        let _ = writeln!(s, "note: the table is kept for its other readers (--allow-shared), so the model grows");
    }
    let weighted = r.fit.weighted_relative_error.map_or(String::new(), |w| format!(", weighted {w:.4}"));
    // The error is of what is stored (rounded rows included); the SVD baseline's is of
    // unrounded floats at the same count of numbers, so with quantized storage it is not a
    // comparison at equal bytes: the line says so.
    let rounded = r.storage.bits != crate::storage::Precision::Float || r.storage.hot.is_some();
    let svd = r.svd.as_ref().map_or(String::new(), |svd| {
        let w = if weighted.is_empty() { "" } else { " (weighted)" };
        let floats = if rounded { ", in floats" } else { "" };
        format!("; SVD rank {} at the same numbers{floats}: {:.4}{w}", svd.rank, svd.relative_error)
    });
    let what = if rounded { "relative Frobenius, as stored" } else { "relative Frobenius" };
    let _ = writeln!(s, "fit error   {:.4} {what}{weighted} ({} iterations){svd}", r.fit.relative_error, r.fit.iterations);
    if let Some(v) = &r.validation {
        let inputs: Vec<String> = v.inputs.iter().map(|i| format!("{}{:?}", i.name, i.shape)).collect();
        let ids = match v.ids {
            crate::check::IdSource::Prior => "token sequences from the tokenizer's prior",
            crate::check::IdSource::Uniform => "uniform random ids",
        };
        let _ = writeln!(s, "validation  {}, {ids}, inputs {}", v.runtime, inputs.join(", "));
        if let Some(e) = v.embedding_rel_error {
            let _ = writeln!(s, "            lookup output = fitted reconstruction (relative difference {e:.1e})");
        }
        for o in &v.outputs {
            let cos = o.mean_cosine.map_or("-".to_string(), |c| format!("{c:.5}"));
            let _ = writeln!(
                s,
                "            output {} {:?}: mean cosine {cos}, max |diff| {:.4e}",
                o.name, o.shape, o.max_abs_diff
            );
        }
    }
    if let Some(c) = &r.corpus {
        let counted = match (c.prior, c.files) {
            (Some(p), 0) => format!("the tokenizer's prior alone ({}; no corpus)", prior_name(p)),
            (Some(p), _) => format!("token counts blended with the tokenizer's prior ({}, strength {})", prior_name(p), c.prior_strength.unwrap_or(0.0)),
            (None, _) => "token counts".to_string(),
        };
        let scheme = match c.weighting {
            crate::corpus::Weighting::None => "none (--weighting none)".to_string(),
            w => format!("{} of {counted} + {} x mean", format!("{w:?}").to_lowercase(), c.weight_floor),
        };
        let _ = writeln!(s, "weights     {scheme}");
        if c.files > 0 {
            let docs = if c.documents > 0 { format!(", {} of {} documents held out", c.held_out_documents, c.documents) } else { String::new() };
            let _ = writeln!(
                s,
                "counts      {} tokens from {} file(s){docs}; {} of {n} rows seen ({:.1}%); {} held-out sentences",
                c.tokens,
                c.files,
                c.seen_rows,
                100.0 * c.seen_rows as f64 / n as f64,
                c.held_out
            );
        }
        if c.held_out > 0 {
            let _ = writeln!(
                s,
                "            their {} tokens: {} ({:.1}%) of rows the count never saw",
                c.held_out_tokens,
                c.held_out_unseen_tokens,
                100.0 * c.held_out_unseen_tokens as f64 / c.held_out_tokens.max(1) as f64
            );
            if c.held_out_prior_tokens > 0 {
                let _ = writeln!(
                    s,
                    "            then {} of them drawn from the tokenizer's prior instead (--prior-share), as text of another source brings words the corpus lacks",
                    c.held_out_prior_tokens
                );
            }
        }
        if r.evidence().narrow() {
            let _ = writeln!(
                s,
                "note        the counted rows hold {:.0}% of the tokenizer's prior mass (under {:.0}%): fidelity is judged by the lower of the held-out text and token sequences drawn from the prior, which stand for the text (e.g. languages) the corpus lacks",
                100.0 * c.prior_mass_seen.unwrap_or(0.0),
                100.0 * crate::prior::NARROW_COVERAGE
            );
        }
        if let (true, Some(v)) = (c.files > 0 && (c.seen_rows as f64) < 0.5 * n as f64, &r.validation) {
            let ids = match v.ids {
                crate::check::IdSource::Prior => "token sequences drawn from the tokenizer's prior",
                crate::check::IdSource::Uniform => "uniform random ids",
            };
            let _ = writeln!(
                s,
                "note        the corpus saw only {:.0}% of the rows: the held-out figure is for text like it; on {ids} (the validation line) the rest shows",
                100.0 * c.seen_rows as f64 / n as f64
            );
        }
    }
    if let Some(t) = &r.text_validation {
        let extra = match (t.nn_agreement, t.top1_agreement, t.mean_kl) {
            (Some(nn), _, _) => format!(", nearest-neighbour agreement {nn:.3}"),
            (_, Some(top1), Some(kl)) => {
                let ppl = match (t.perplexity_original, t.perplexity) {
                    (Some(a), Some(b)) => format!(", perplexity {a:.2} -> {b:.2} ({:+.2}%)", 100.0 * (b / a - 1.0)),
                    _ => String::new(),
                };
                format!(", top-1 next-token agreement {top1:.3}, mean KL {kl:.4} nats/token{ppl}")
            }
            _ => String::new(),
        };
        let _ = writeln!(
            s,
            "held-out    {} ({}, output {}): mean cosine {:.4}, min {:.4}{extra}",
            t.describe(), t.kind, t.output, t.mean_cosine, t.min_cosine
        );
    }
    if let Some(c) = r.chosen {
        let skipped = match r.skipped {
            0 => String::new(),
            k => format!(" ({k} more not listed: none could be smaller than the choice, or a more precise point of the same fit missed the target)"),
        };
        let _ = writeln!(s, "search      {} points of the family, smallest first, on {}{skipped}:", r.points.len(), r.points[c].on);
        for (i, p) in r.points.iter().enumerate() {
            let mark = if i == c { " <- chosen" } else if p.on_front { " (front)" } else { "" };
            let screened = if p.screened { " (screened: a part of the text)" } else { "" };
            let _ = writeln!(s, "            {:<18} {:>10} bytes {:>6.2}%  mean cosine {:.4}{screened}{mark}", p.label, p.bytes, 100.0 * p.share, p.mean_cosine);
        }
        let reference: Vec<String> = r
            .points
            .iter()
            .filter(|p| p.family == Family::Plain && matches!(p.setting.storage.bits, crate::storage::Precision::Bits(b) if b.count() >= 4))
            .map(|p| format!("{} {} bytes ({:.2}%) keeps {:.4}", p.label, p.bytes, 100.0 * p.share, p.mean_cosine))
            .collect();
        let _ = writeln!(s, "reference   {}", reference.join("; "));
    }
    for p in &r.probes {
        let verdict = if p.met { "meets" } else { "misses" };
        let _ = writeln!(
            s,
            "probe       --ratio {:.3}: {:.1}% saved, mean cosine {:.4} ({verdict} the target)",
            p.ratio, p.saved_percent, p.mean_cosine
        );
    }
    let phases: Vec<String> = r.seconds.iter().map(|p| format!("{} {:.2}s", p.phase, p.seconds)).collect();
    let _ = writeln!(s, "time        {}", phases.join(", "));
    s
}

/// What a prior's probabilities came from, in a few words.
fn prior_name(p: crate::prior::PriorSource) -> &'static str {
    match p {
        crate::prior::PriorSource::UnigramScores => "Unigram scores",
        crate::prior::PriorSource::BpeMerges => "BPE merge ranks",
        crate::prior::PriorSource::VocabularyOrder => "vocabulary order",
        crate::prior::PriorSource::Uniform => "uniform",
    }
}

/// An inspect summary as text; `verbose` adds every rejected Gather and why.
pub fn summary(summary: &Summary, verbose: bool) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "producer    {}", if summary.producer.is_empty() { "(none)" } else { &summary.producer });
    let _ = writeln!(s, "ir version  {}", summary.ir_version);
    let opsets: Vec<String> = summary.opsets.iter().map(|(d, v)| format!("{d} {v}")).collect();
    let _ = writeln!(s, "opsets      {}", opsets.join(", "));
    let _ = writeln!(s, "nodes       {}", summary.nodes);
    let _ = writeln!(s, "parameters  {}", summary.parameters);
    for (title, list) in [("inputs", &summary.inputs), ("outputs", &summary.outputs)] {
        let _ = writeln!(s, "{title}:");
        for i in list {
            let _ = writeln!(s, "  {} {} [{}]", i.name, i.dtype, i.shape.join(", "));
        }
    }
    let e = &summary.embedding;
    let _ = writeln!(s, "embedding candidates:");
    if e.candidates.is_empty() {
        let _ = writeln!(s, "  (none)");
    }
    for (i, c) in e.candidates.iter().enumerate() {
        let mark = if e.chosen == Some(i) { "*" } else { " " };
        let lookups: Vec<&str> = c.lookups.iter().map(|l| l.name.as_str()).collect();
        let readers = if c.other_readers.is_empty() {
            "none".to_string()
        } else {
            let mut r = c.other_readers.iter().map(|r| format!("{} '{}'", r.op_type, r.node)).collect::<Vec<_>>().join(", ");
            if c.only_heads_share() {
                let heads: Vec<&str> = c.heads.iter().map(|h| h.name.as_str()).collect();
                r += &format!(" (tied LM head {}: served by plain rows: --plain --bits 8 (an integer head) or --bits 4)", heads.join(", "));
            }
            r
        };
        let stored = c.stored.describe().map_or_else(String::new, |d| format!(" stored as {d};"));
        let _ = writeln!(
            s,
            "{mark} {} [{} x {}] {:?}, {} bytes;{stored} node {}; ids from {}; other readers: {readers}",
            c.table,
            c.rows,
            c.cols,
            c.dtype,
            c.bytes,
            lookups.join(", "),
            c.ids_input().unwrap_or("(computed)"),
        );
    }
    match e.chosen {
        Some(i) => {
            let how = if e.overridden { " (by --embedding)" } else { "" };
            let _ = writeln!(s, "chosen: {}{how}", e.candidates[i].table);
        }
        None => {
            let _ = writeln!(s, "chosen: none");
        }
    }
    if verbose {
        let _ = writeln!(s, "rejected:");
        for r in &e.rejections {
            let _ = writeln!(s, "  {}: {}", r.node, r.reason);
        }
    }
    s
}

/// The sweep as a table (stdout), and the command of each front point (with the corpus's token
/// counts written to `counts` standing for it, when given).
pub fn sweep(s: &Sweep, args: &SweepArgs, counts: Option<&Path>) -> String {
    let common = args.common_args(counts);
    let mut out = String::new();
    let on = s.points.first().map_or("", |p| p.on.as_str());
    let _ = writeln!(out, "sweep of {} points on {on}; shares of the fp32 table ({} bytes); * on the front", s.points.len(), s.fp32_bytes);
    if s.unserved > 0 {
        let _ = writeln!(
            out,
            "note: {} point(s) of the grid cannot serve the tied LM head (only plain rows do): not evaluated; --allow-shared evaluates them with the table kept",
            s.unserved
        );
    }
    if s.table_kept {
        let _ = writeln!(out, "note: the table is kept for its other readers (--allow-shared) by every point that cannot serve its tied head (all but plain rows): those points make the file larger");
    }
    let decoder = s.kind == Some(crate::check::ModelKind::Decoder);
    let extra = if decoder { "top-1   mean KL" } else { "nn agr." };
    // (the label column as wide as the longest label)
    let w = s.points.iter().map(|p| p.label.len()).max().unwrap_or(0).max(20);
    let _ = writeln!(out, "  {:<w$} {:>11} {:>7} {:>9} {:>9} {:>8} {:>7}", "point", "bytes", "share", "mean cos", "min cos", extra, "s");
    let mut order: Vec<&crate::Point> = s.points.iter().collect();
    order.sort_by_key(|p| p.bytes);
    for p in order {
        let extra = match (p.nn_agreement, p.top1_agreement, p.mean_kl) {
            (Some(nn), _, _) => format!("{nn:>8.3}"),
            (_, Some(t), Some(kl)) => format!("{t:>6.3} {kl:>8.4}"),
            _ => format!("{:>8}", "-"),
        };
        let mark = if p.on_front { "*" } else { " " };
        let _ = writeln!(
            out,
            "{mark} {:<w$} {:>11} {:>6.2}% {:>9.4} {:>9.4} {extra} {:>7.1}",
            p.label,
            p.bytes,
            100.0 * p.share,
            p.mean_cosine,
            p.min_cosine,
            p.seconds
        );
    }
    let _ = writeln!(out, "front, smallest first (each command writes that point's model):");
    if counts.is_some() {
        let _ = writeln!(out, "  (the corpus's token counts are in token-counts.txt beside sweep.json: the same weights, so the same bytes; give --corpus/--tokenizer instead to validate on held-out text)");
    }
    let input = args.input.display().to_string();
    for p in s.front() {
        let name = p.label.replace([' ', '+', '.'], "_");
        let mut cmd = vec!["onnx-embcomp".to_string(), input.clone(), format!("{name}.onnx")];
        cmd.extend(common.iter().cloned());
        cmd.extend(super::args::setting_args(&p.setting));
        let _ = writeln!(out, "  {:<w$} {}", p.label, cmd.join(" "));
    }
    out
}

