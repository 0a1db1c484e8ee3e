"""One-off check, not part of `cargo test`: the coverage cases load and run in onnxruntime.

    ONNX_EMBCOMP_COVERAGE_DIR=/tmp/coverage cargo test coverage
    PYTHON tests/ort_check.py /tmp/coverage

For each NAME.onnx / NAME.compressed.onnx pair: onnx.checker (full check) on both, both run
in onnxruntime on the same seeded ids, and per output the mean cosine along the last axis and
the largest absolute difference are printed.
"""

import glob
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort

ROWS = 1000  # every coverage case has the encoder's 1000-row table


def feeds(session, rng):
    out = {}
    for i in session.get_inputs():
        shape = [1 if k == 0 else 16 for k in range(len(i.shape))]
        dtype = np.int32 if i.type == "tensor(int32)" else np.int64
        if "mask" in i.name:
            out[i.name] = np.ones(shape, dtype)
        elif i.name in ("input_ids", "decoder_input_ids"):
            out[i.name] = rng.integers(0, ROWS, shape).astype(dtype)
        else:
            out[i.name] = np.zeros(shape, dtype)
    return out


def main(folder):
    failures = 0
    for compressed in sorted(glob.glob(os.path.join(folder, "*.compressed.onnx"))):
        original = compressed.replace(".compressed.onnx", ".onnx")
        name = os.path.basename(original)[: -len(".onnx")]
        try:
            for path in (original, compressed):
                onnx.checker.check_model(path, full_check=True)
            sessions = [ort.InferenceSession(p, providers=["CPUExecutionProvider"]) for p in (original, compressed)]
            f = feeds(sessions[0], np.random.default_rng(0))
            before, after = (s.run(None, f) for s in sessions)
            parts = []
            for o, a, b in zip(sessions[0].get_outputs(), before, after):
                a, b = a.astype(np.float64), b.astype(np.float64)
                a2, b2 = a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1])
                cos = (a2 * b2).sum(1) / np.maximum(np.linalg.norm(a2, axis=1) * np.linalg.norm(b2, axis=1), 1e-30)
                parts.append(f"{o.name}: cosine {cos.mean():.5f}, max|diff| {np.abs(a - b).max():.3e}")
            print(f"ok   {name}: " + "; ".join(parts))
        except Exception as e:  # report every case, then fail
            failures += 1
            print(f"FAIL {name}: {type(e).__name__}: {str(e).splitlines()[0]}")
    print(f"onnxruntime {ort.__version__}, onnx {onnx.__version__}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main(sys.argv[1])
