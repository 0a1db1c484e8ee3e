"""Runs ONNX models in onnxruntime (CPU) for tests/it/runtimes.rs.

    python ort_run.py MODEL INPUTS OUTPUTS [MODEL INPUTS OUTPUTS ...]

Each triple: load MODEL (external data is resolved beside it), run it once per entry of the
INPUTS file, write every output to OUTPUTS. Exit 1 with one line per failed model on stderr.

Exchange format (JSON, shared with ort_web_run.mjs):
  inputs:  {"runs": [{"inputs": [{"name", "dtype", "shape", "values"}, ...]}, ...]}
  outputs: {"runtime": "onnxruntime 1.32.0", "runs": [{"outputs": [{"name", "dtype", "shape", "values"}]}]}
dtype is an ONNX-style name ("int64", "int32", "bool", "float32", "float16", "float64");
values are flat, row-major. Floats are written exactly: the shortest decimal of the f64 that
holds the value (every f32/f16 is one), and "nan", "inf", "-inf" as strings.
"""

import json
import math
import sys

import numpy as np
import onnxruntime as ort

DTYPES = {
    "int64": np.int64,
    "int32": np.int32,
    "bool": np.bool_,
    "float32": np.float32,
    "float16": np.float16,
    "float64": np.float64,
}


def decode_value(v):
    if isinstance(v, str):
        return {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}[v]
    return v


def encode_float(v):
    v = float(v)  # exact for f16, f32, f64
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return v


def dtype_name(array):
    for name, t in DTYPES.items():
        if array.dtype == t:
            return name
    raise ValueError(f"output of type {array.dtype}, which the exchange format does not carry")


def run_model(model, inputs_path, outputs_path):
    with open(inputs_path) as f:
        runs = json.load(f)["runs"]
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    results = []
    for run in runs:
        feeds = {}
        for i in run["inputs"]:
            values = [decode_value(v) for v in i["values"]]
            feeds[i["name"]] = np.array(values, dtype=DTYPES[i["dtype"]]).reshape(i["shape"])
        outputs = []
        for name, value in zip(names, session.run(names, feeds)):
            value = np.asarray(value)
            kind = dtype_name(value)
            flat = value.reshape(-1).tolist()
            if kind.startswith("float"):
                flat = [encode_float(v) for v in value.reshape(-1)]
            outputs.append({"name": name, "dtype": kind, "shape": list(value.shape), "values": flat})
        results.append({"outputs": outputs})
    with open(outputs_path, "w") as f:
        json.dump({"runtime": f"onnxruntime {ort.__version__}", "runs": results}, f)


def main(args):
    if not args or len(args) % 3:
        sys.exit("usage: ort_run.py MODEL INPUTS OUTPUTS [MODEL INPUTS OUTPUTS ...]")
    failures = 0
    for model, inputs, outputs in zip(args[0::3], args[1::3], args[2::3]):
        try:
            run_model(model, inputs, outputs)
        except Exception as e:  # every model is tried; each failure is one line
            failures += 1
            message = " ".join(str(e).split())
            print(f"ort_run.py: {model}: {type(e).__name__}: {message}", file=sys.stderr)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main(sys.argv[1:])
