"""Runs the models of gbq.py in tract, onnxruntime and onnxruntime-web and compares them.

    python gbq_compare.py GBQ_DIR ORIGINAL.onnx OURS.onnx INPUTS.json \
        --tract-run target/debug/examples/tract_run --ort-web-dir tests/runtimes [--node node]

GBQ_DIR is gbq.py's output; INPUTS.json the full models' inputs (exchange format, e.g. the
latency harness's target/bench-data/latency/inputs-all-MiniLM-L6-v2.json). Runners: tract_run (cargo example),
tests/runtimes/ort_run.py (this python) and tests/runtimes/ort_web_run.mjs (node). Prints, per
runtime: each lookup against numpy's dequantization (reference.f32) bit for bit; each full
model's output against ours (same runtime) and against the original (mean cosine over tokens
and of the mean-pooled vector); and ours / gbq-f32 across runtimes.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
RUNNERS = os.path.join(HERE, "..", "..", "tests", "runtimes")


def decode(v):
    return {"nan": np.nan, "inf": np.inf, "-inf": -np.inf}[v] if isinstance(v, str) else v


def read_outputs(path):
    with open(path) as f:
        runs = json.load(f)["runs"]
    out = runs[0]["outputs"][0]
    return np.array([decode(v) for v in out["values"]], np.float32).reshape(out["shape"])


def run(runtime, cmd, triples, env=None):
    args = [x for t in triples for x in t]
    r = subprocess.run(cmd + args, capture_output=True, text=True, env=env)
    errors = {}
    for line in r.stderr.splitlines():
        for m, _, _ in triples:
            if m in line:
                errors[m] = line.strip()
    results = {}
    for m, _, o in triples:
        if m in errors or not os.path.exists(o):
            results[m] = errors.get(m, f"{runtime}: no output ({r.returncode}) {r.stderr.strip()[:300]}")
        else:
            results[m] = read_outputs(o)
    return results


def cosines(a, b):
    a, b = a.reshape(-1, a.shape[-1]).astype(np.float64), b.reshape(-1, b.shape[-1]).astype(np.float64)
    tok = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    pa, pb = a.mean(0), b.mean(0)
    return tok.mean(), pa @ pb / (np.linalg.norm(pa) * np.linalg.norm(pb))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("gbq_dir")
    p.add_argument("original")
    p.add_argument("ours")
    p.add_argument("inputs")
    p.add_argument("--tract-run", required=True)
    p.add_argument("--ort-web-dir", required=True)
    p.add_argument("--node", default="node")
    a = p.parse_args()
    d = a.gbq_dir
    variants = ["gbq-f32", "gbq-f16", "f32-inter", "f32-halves"]
    lookups = {t: os.path.join(d, f"lookup-{t}.onnx") for t in ["ours"] + variants}
    fulls = {"original": a.original, "ours": a.ours} | {t: os.path.join(d, f"{t}.onnx") for t in variants}
    lookup_inputs = os.path.join(d, "lookup-inputs.json")
    ref = np.fromfile(os.path.join(d, "reference.f32"), "<f4")

    env = dict(os.environ, ORT_WEB_DIR=os.path.abspath(a.ort_web_dir))
    runtimes = {
        "tract": [a.tract_run],
        "onnxruntime": [sys.executable, os.path.join(RUNNERS, "ort_run.py")],
        "onnxruntime-web": [a.node, os.path.join(RUNNERS, "ort_web_run.mjs")],
    }
    tmp = tempfile.mkdtemp(prefix="gbq-")
    got = {}
    for rt, cmd in runtimes.items():
        triples = [(m, lookup_inputs, os.path.join(tmp, f"{rt}-lookup-{t}.json")) for t, m in lookups.items()]
        triples += [(m, a.inputs, os.path.join(tmp, f"{rt}-full-{t}.json")) for t, m in fulls.items()]
        res = run(rt, cmd, triples, env)
        got[rt] = {("lookup", t): res[m] for t, m in lookups.items()} | {("full", t): res[m] for t, m in fulls.items()}

    for rt, res in got.items():
        print(f"== {rt}")
        for t in lookups:
            x = res[("lookup", t)]
            if isinstance(x, str):
                print(f"  lookup {t}: FAILS: {x}")
                continue
            x = x.reshape(-1)
            same = (x.view(np.uint32) == ref.view(np.uint32)).mean()
            rel = np.abs(x - ref).max() / np.abs(ref).max()
            print(f"  lookup {t}: {same * 100:.3f}% bit-equal to numpy over {ref.size // 384} rows, max rel diff {rel:.3g}")
        ours = res[("full", "ours")]
        orig = res[("full", "original")]
        for t in fulls:
            x = res[("full", t)]
            if isinstance(x, str):
                print(f"  model {t}: FAILS: {x}")
                continue
            line = f"  model {t}: output {list(x.shape)}"
            if not isinstance(ours, str) and t != "ours":
                same = (x.view(np.uint32) == ours.view(np.uint32)).mean()
                rel = np.abs(x - ours).max() / np.abs(ours).max()
                line += f"; vs ours {same * 100:.2f}% bit-equal, max rel diff {rel:.3g}"
            if not isinstance(orig, str) and t != "original":
                tok, pooled = cosines(x, orig)
                line += f"; vs original: token cos {tok:.5f}, pooled cos {pooled:.5f}"
            print(line)
    print("== across runtimes (full models, max |diff| relative to max |value|)")
    for t in fulls:
        pairs = []
        for r1, r2 in [("onnxruntime", "tract"), ("onnxruntime-web", "tract"), ("onnxruntime-web", "onnxruntime")]:
            x, y = got[r1][("full", t)], got[r2][("full", t)]
            if isinstance(x, str) or isinstance(y, str):
                pairs.append(f"{r1}/{r2} -")
            else:
                pairs.append(f"{r1}/{r2} {np.abs(x - y).max() / np.abs(y).max():.2g}")
        print(f"  {t}: " + ", ".join(pairs))


if __name__ == "__main__":
    main()
