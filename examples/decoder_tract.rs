//! Latency and peak memory of a decoder in tract, loaded as `src/check/tract.rs` loads a model
//! (value info ignored, inputs pinned to `[1, SEQ]` int64, `into_optimized()`).
//!
//! ```text
//! cargo run --example decoder_tract -- MODEL [SEQ [RUNS]]
//! ```
//! Prints one JSON line: load seconds (parse, optimise, make runnable), median and quartiles of
//! RUNS timed runs after 3 warm-up runs (ids seeded below the vocabulary, mask ones), and the
//! process's peak resident memory (VmHWM) after load and after the runs. One model per process.

use std::time::Instant;

use tract_onnx::prelude::*;

fn vmhwm_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status.lines().find(|l| l.starts_with("VmHWM")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok()).map_or(f64::NAN, |kb| kb / 1024.0)
}

fn main() -> TractResult<()> {
    let args: Vec<String> = std::env::args().collect();
    let path = args.get(1).ok_or_else(|| anyhow::anyhow!("usage: decoder_tract MODEL [SEQ [RUNS]]"))?;
    let seq: usize = args.get(2).map_or(Ok(128), |s| s.parse())?;
    let runs: usize = args.get(3).map_or(Ok(10), |s| s.parse())?;
    let start = Instant::now();
    let mut model = tract_onnx::onnx().with_ignore_value_info(true).model_for_path(path)?;
    let inputs = model.input_outlets()?.len();
    for i in 0..inputs {
        model.set_input_fact(i, InferenceFact::dt_shape(i64::datum_type(), tvec![1, seq]))?;
    }
    let plan = model.into_optimized()?.into_runnable()?;
    let load = start.elapsed().as_secs_f64();
    let after_load = vmhwm_mb();
    // ids below the smallest plausible vocabulary of a real decoder
    let ids: Vec<i64> = (0..seq as i64).map(|i| (i * 7919 + 13) % 30000).collect();
    let feed = || -> TractResult<TVec<TValue>> {
        let mut v = tvec![Tensor::from_shape(&[1, seq], &ids)?.into_tvalue()];
        for _ in 1..inputs {
            v.push(Tensor::from_shape(&[1, seq], &vec![1i64; seq])?.into_tvalue());
        }
        Ok(v)
    };
    for _ in 0..3 {
        plan.run(feed()?)?;
    }
    let mut ms: Vec<f64> = Vec::new();
    for _ in 0..runs {
        let f = feed()?;
        let t = Instant::now();
        plan.run(f)?;
        ms.push(1000.0 * t.elapsed().as_secs_f64());
    }
    ms.sort_by(f64::total_cmp);
    let q = |p: f64| ms[((ms.len() - 1) as f64 * p).round() as usize];
    println!(
        "{{\"model\": {path:?}, \"runtime\": \"tract\", \"load_s\": {load:.2}, \"median_ms\": {:.1}, \"q25_ms\": {:.1}, \"q75_ms\": {:.1}, \"peak_mb_after_load\": {after_load:.0}, \"peak_mb\": {:.0}}}",
        q(0.5),
        q(0.25),
        q(0.75),
        vmhwm_mb()
    );
    Ok(())
}
