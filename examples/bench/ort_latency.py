"""Times ONNX models against an original in onnxruntime (CPU), for `cargo run --example bench -- --latency`.

    python ort_latency.py --inputs FILE [--runs 30] [--warmup 5] [--threads 1] ORIGINAL VARIANT [VARIANT ...]

INPUTS is the exchange format of tests/runtimes/ort_run.py (its first run is fed). Per variant:
WARMUP runs of each model, then RUNS rounds of (original, variant), each `session.run` timed
alone with perf_counter (and, with --threads 1, where onnxruntime runs the model on the calling
thread, thread_time). --threads sets intra_op_num_threads (0: onnxruntime's default) and
inter_op_num_threads 1; graph optimisations are onnxruntime's default (all). Prints JSON:
  {"runtime": "onnxruntime 1.32.0", "threads": T,
   "pairs": [{"model": PATH, "original_ms": [...], "variant_ms": [...],
              "original_cpu_ms": [...], "variant_cpu_ms": [...]} | {"model": PATH, "error": MSG}]}
"""

import argparse
import json
import sys
import time

import numpy as np
import onnxruntime as ort

DTYPES = {"int64": np.int64, "int32": np.int32, "bool": np.bool_, "float32": np.float32}


def session(path, threads):
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def timed(s, feeds):
    """Wall-clock and calling-thread CPU ms of one run."""
    t, c = time.perf_counter(), time.thread_time()
    s.run(None, feeds)
    return (time.perf_counter() - t) * 1e3, (time.thread_time() - c) * 1e3


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--inputs", required=True)
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("original")
    p.add_argument("variants", nargs="+")
    a = p.parse_args()
    with open(a.inputs) as f:
        run = json.load(f)["runs"][0]
    feeds = {i["name"]: np.array(i["values"], dtype=DTYPES[i["dtype"]]).reshape(i["shape"]) for i in run["inputs"]}
    base = session(a.original, a.threads)
    pairs = []
    for path in a.variants:
        try:
            v = session(path, a.threads)
            names = {i.name for i in v.get_inputs()}
            vfeeds = {k: x for k, x in feeds.items() if k in names}
            for _ in range(a.warmup):
                timed(base, feeds)
                timed(v, vfeeds)
            original, variant = [], []
            for _ in range(a.runs):
                original.append(timed(base, feeds))
                variant.append(timed(v, vfeeds))
            pair = {"model": path, "original_ms": [w for w, _ in original], "variant_ms": [w for w, _ in variant]}
            if a.threads == 1:  # the model ran on this thread alone
                pair |= {"original_cpu_ms": [c for _, c in original], "variant_cpu_ms": [c for _, c in variant]}
            pairs.append(pair)
            del v
        except Exception as e:  # one failing model is one entry
            pairs.append({"model": path, "error": f"{type(e).__name__}: {' '.join(str(e).split())}"})
            print(f"ort_latency.py: {path}: {e}", file=sys.stderr)
    json.dump({"runtime": f"onnxruntime {ort.__version__}", "threads": a.threads, "pairs": pairs}, sys.stdout)


if __name__ == "__main__":
    main()
