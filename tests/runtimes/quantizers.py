"""onnxruntime's standard quantizers around onnx-embcomp, for tests/it/runtimes.rs.

    python quantizers.py dynamic IN OUT
        quantize_dynamic(IN) with int8 weights and Gather among the op types -> OUT
    python quantizers.py requantize IN DIR
        IN through each quantizer of QUANTIZERS -> DIR/NAME.onnx (a quantizer that fails
        writes nothing, and says why on stdout's JSON)
    python quantizers.py compare ROWS REFERENCE MODEL [MODEL ...]
        runs every model in onnxruntime (CPU) on the same seeded inputs (token ids below ROWS,
        masks of ones, token types of zeros; batch 2 x 12) and prints, per model, whether it
        loads and the smallest mean cosine (along the last axis, over all float outputs) and
        the largest relative difference to REFERENCE.

Prints one JSON object on stdout; exits 1 on a usage error only: failures are data.
"""

import contextlib
import io
import json
import logging
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import QuantType, quantize_dynamic


def quietly(f, *args, **kwargs):
    """Runs f with the quantizers' logging and prints swallowed."""
    logging.disable(logging.CRITICAL)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            return f(*args, **kwargs)
    finally:
        logging.disable(logging.NOTSET)


def dynamic(src, dst, **kwargs):
    quietly(quantize_dynamic, src, dst, **kwargs)


def nbits(src, dst, op_types):
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    def run():
        q = MatMulNBitsQuantizer(onnx.load(src), block_size=32, is_symmetric=True, op_types_to_quantize=op_types)
        q.process()
        q.model.save_model_to_file(dst, False)

    quietly(run)


# name -> function(src, dst)
QUANTIZERS = {
    "dynamic_default": lambda s, d: dynamic(s, d),
    "dynamic_int8_gather": lambda s, d: dynamic(s, d, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gather"]),
    "matmul_nbits": lambda s, d: nbits(s, d, ("MatMul",)),
    "matmul_nbits_gather": lambda s, d: nbits(s, d, ("MatMul", "Gather")),
}


def feeds(session, rows):
    rng = np.random.default_rng(7)
    shape = (2, 12)
    out = {}
    for i in session.get_inputs():
        dtype = np.int32 if i.type == "tensor(int32)" else np.int64
        name = i.name.lower()
        if "mask" in name:
            v = np.ones(shape, dtype)
            v[1, -3:] = 0
        elif "token_type" in name:
            v = np.zeros(shape, dtype)
        else:
            v = rng.integers(0, rows, shape).astype(dtype)
        out[i.name] = v
    return out


def session(path):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def mean_cosine(a, b):
    a = a.reshape(-1, a.shape[-1]).astype(np.float64)
    b = b.reshape(-1, b.shape[-1]).astype(np.float64)
    num = (a * b).sum(1)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    cos = np.where(den > 0, num / np.where(den > 0, den, 1), 1.0)
    return float(cos.mean())


def compare(rows, reference, models):
    ref = session(reference)
    inputs = feeds(ref, rows)
    want = ref.run(None, inputs)
    result = {}
    for m in models:
        if not os.path.exists(m):
            result[m] = {"error": "no such file"}
            continue
        entry = {"bytes": os.path.getsize(m)}
        try:
            got = session(m).run(None, inputs)
        except Exception as e:  # noqa: BLE001: any failure is the finding
            entry["error"] = str(e).splitlines()[0][:400]
            result[m] = entry
            continue
        cosines, diffs = [], []
        for g, w in zip(got, want):
            if not np.issubdtype(w.dtype, np.floating) or g.shape != w.shape:
                continue
            cosines.append(mean_cosine(g, w))
            diffs.append(float(np.abs(g.astype(np.float64) - w).max() / max(np.abs(w).max(), 1e-30)))
        entry["cosine"] = min(cosines) if cosines else None
        entry["relative_diff"] = max(diffs) if diffs else None
        result[m] = entry
    return result


def main(argv):
    if len(argv) >= 3 and argv[0] == "dynamic":
        kwargs = {"weight_type": QuantType.QInt8, "op_types_to_quantize": ["MatMul", "Gather"]}
        dynamic(argv[1], argv[2], **kwargs)
        print(json.dumps({"wrote": argv[2]}))
    elif len(argv) == 3 and argv[0] == "requantize":
        result = {}
        for name, quantize in QUANTIZERS.items():
            dst = os.path.join(argv[2], name + ".onnx")
            try:
                quantize(argv[1], dst)
                result[name] = {"wrote": dst}
            except Exception as e:  # noqa: BLE001: a quantizer that fails is the finding
                result[name] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:400] if str(e) else ''}"}
        print(json.dumps(result))
    elif len(argv) >= 4 and argv[0] == "compare":
        print(json.dumps(compare(int(argv[1]), argv[2], argv[3:])))
    else:
        print(__doc__, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
