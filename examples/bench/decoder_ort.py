"""Latency and peak memory of decoders in onnxruntime (CPU), each model in a fresh process.

    python decoder_ort.py [--seq 128] [--runs 20] [--threads 2] MODEL [MODEL ...]

Per model (its own subprocess, so peak memory is its own): load the session (default graph
optimisations), then 3 warm-up runs and RUNS timed runs of input_ids [1, SEQ] (seeded random ids
below the vocabulary, mask ones). Prints one line per model: load seconds, median and quartiles of
the run in ms, the process's peak resident memory (VmHWM) after load and after the runs, and its
resident memory after the runs (VmRSS).
"""
import argparse, json, subprocess, sys, time


def vm(field="VmHWM"):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) / 1024
    return float("nan")


vmhwm = vm


def child(path, seq, runs, threads):
    import numpy as np, onnxruntime as ort
    o = ort.SessionOptions(); o.intra_op_num_threads = threads; o.inter_op_num_threads = 1
    t = time.perf_counter(); s = ort.InferenceSession(path, o, providers=["CPUExecutionProvider"]); load = time.perf_counter() - t
    after_load = vmhwm()
    vocab = s.get_outputs()[0].shape[-1]
    vocab = vocab if isinstance(vocab, int) else 1000
    ids = np.random.default_rng(0).integers(0, vocab, (1, seq)).astype(np.int64)
    feed = {"input_ids": ids}
    if any(i.name == "attention_mask" for i in s.get_inputs()):
        feed["attention_mask"] = np.ones_like(ids)
    for _ in range(3):
        s.run(None, feed)
    ms = []
    for _ in range(runs):
        t = time.perf_counter(); s.run(None, feed); ms.append(1000 * (time.perf_counter() - t))
    q = np.percentile(ms, [25, 50, 75])
    print(json.dumps({"model": path, "load_s": load, "median_ms": q[1], "q25_ms": q[0], "q75_ms": q[2],
                      "peak_mb_after_load": after_load, "peak_mb": vmhwm(), "rss_mb_after_runs": vm("VmRSS"), "runtime": "onnxruntime " + ort.__version__}))


if __name__ == "__main__":
    a = argparse.ArgumentParser()
    a.add_argument("--seq", type=int, default=128); a.add_argument("--runs", type=int, default=20)
    a.add_argument("--threads", type=int, default=2); a.add_argument("--child", action="store_true")
    a.add_argument("models", nargs="+")
    args = a.parse_args()
    if args.child:
        child(args.models[0], args.seq, args.runs, args.threads)
    else:
        for m in args.models:
            subprocess.run([sys.executable, __file__, "--child", "--seq", str(args.seq), "--runs", str(args.runs),
                            "--threads", str(args.threads), m], check=True)
