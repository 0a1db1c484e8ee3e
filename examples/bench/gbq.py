"""com.microsoft.GatherBlockQuantized against our 4-bit graph (BENCHMARKS.md, "GatherBlockQuantized").

    python gbq.py OURS.onnx OUT_DIR [--ids 4096] [--original MODEL.onnx]

OURS.onnx is `onnx-embcomp MODEL OURS.onnx --plain --bits 4` (one branch: `embcomp/packed` uint8
[n, cols/2], codes q + 8 two per byte low nibble first, `embcomp/scales` f16 [n, cols/32], read by
Gathers on the ids graph input). Needs numpy, onnx and onnxruntime. Writes to OUT_DIR:

  gbq-f32.onnx        the same model with the lookup replaced by one GatherBlockQuantized (bits 4,
                      block_size 32, gather_axis 0, quantize_axis 1, no zero points: 8) reading the
                      same packed bytes, the scales widened to f32 (exact), output f32
  gbq-f16.onnx        the same with the f16 scales as stored (GatherBlockQuantized's output then
                      is f16), then Cast to f32
  lookup-*.onnx       the lookup alone (ids [1, N] -> [1, N, cols]) of ours, gbq-f32 and gbq-f16,
                      and with --original the float Gather it replaced (lookup-float.onnx)
  lookup-inputs.json  N ids (every row's id in `--ids all`, else a seeded sample with 0 and n-1),
                      exchange format of tests/runtimes/ort_run.py
  reference.f32       numpy's dequantization of those rows, (q - 8) * f32(scale), little-endian
  f32-inter.onnx      our graph with the nibbles unpacked in f32 (Cast, Mul 1/16, Floor, Sub: exact
                      for bytes), low and high joined by Concat on a new last axis: same storage
  f32-halves.onnx     the same, stored with code i in the low and code i + cols/2 in the high
                      nibble of byte i, so low and high are joined by one Concat along the row
                      (plus lookup-f32-inter.onnx, lookup-f32-halves.onnx)

and prints, for onnxruntime run here on every row of the table, how each lookup compares bit for
bit with numpy. The other runtimes are compared by `gbq_compare.py`.
"""

import argparse
import json
import os

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

LOOKUP_OUT = "embeddings"


def load_parts(path):
    m = onnx.load(path)
    g = m.graph
    inits = {t.name: t for t in g.initializer}
    packed = numpy_helper.to_array(inits["embcomp/packed"])
    scales = numpy_helper.to_array(inits["embcomp/scales"])
    assert packed.dtype == np.uint8 and scales.dtype == np.float16, (packed.dtype, scales.dtype)
    ours = [n for n in g.node if n.name.startswith("embcomp/")]
    gathers = [n for n in ours if n.op_type == "Gather" and n.input[0] == "embcomp/packed"]
    assert len(gathers) == 1, "expected one branch (--plain --bits 4, no tiers)"
    ids = gathers[0].input[1]
    assert ids in {i.name for i in g.input}, "the packed rows must be gathered by a graph input"
    produced = {o for n in ours for o in n.output}
    consumed = {i for n in g.node if not n.name.startswith("embcomp/") for i in n.input}
    out = (produced & consumed) | (produced & {o.name for o in g.output})
    assert len(out) == 1, out
    return m, packed, scales, ids, out.pop()


def reference(packed, scales, rows):
    p = packed[rows]
    codes = np.empty((len(rows), p.shape[1] * 2), np.int32)
    codes[:, 0::2] = p & 15
    codes[:, 1::2] = p >> 4
    s = np.repeat(scales[rows].astype(np.float32), 32, axis=1)[:, : codes.shape[1]]
    return (codes - 8).astype(np.float32) * s


def gbq_nodes(ids, output, scales_name, f16):
    gbq_out = output + "_f16" if f16 else output
    nodes = [
        helper.make_node(
            "GatherBlockQuantized",
            ["embcomp/packed", ids, scales_name],
            [gbq_out],
            name="embcomp/gather_block_quantized",
            domain="com.microsoft",
            bits=4,
            block_size=32,
            gather_axis=0,
            quantize_axis=1,
        )
    ]
    if f16:
        nodes.append(helper.make_node("Cast", [gbq_out], [output], name="embcomp/cast_f32", to=TensorProto.FLOAT))
    return nodes


def with_gbq(m, scales, ids, output, f16):
    """A copy of m with the embcomp/ nodes and constants replaced by GatherBlockQuantized."""
    m = onnx.ModelProto.FromString(m.SerializeToString())
    g = m.graph
    keep = [n for n in g.node if not n.name.startswith("embcomp/")]
    # where the lookup stood: before its first reader
    first_reader = next(i for i, n in enumerate(keep) if output in n.input)
    scales_name = "embcomp/scales"
    new_inits = [t for t in g.initializer if not t.name.startswith("embcomp-const/") and t.name != "embcomp/scales"]
    scale_values = scales if f16 else scales.astype(np.float32)
    new_inits.append(numpy_helper.from_array(scale_values, scales_name))
    del g.initializer[:]
    g.initializer.extend(new_inits)
    nodes = keep[:first_reader] + gbq_nodes(ids, output, scales_name, f16) + keep[first_reader:]
    del g.node[:]
    g.node.extend(nodes)
    if not any(o.domain == "com.microsoft" for o in m.opset_import):
        m.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return m


def f32_unpack(m, packed, ids, output, halves):
    """m with the 4-bit code extraction of our graph redone in f32 (see the module doc)."""
    m = onnx.ModelProto.FromString(m.SerializeToString())
    g = m.graph
    rb = packed.shape[1]
    ours = [n for n in g.node if n.name.startswith("embcomp/")]
    rest = [n for n in g.node if not n.name.startswith("embcomp/")]
    # keep our Gathers and the scale path; replace packed_rows -> codes_f32
    keep = [n for n in ours if n.output[0] in ("embcomp/packed_rows", "embcomp/scale_rows") or n.name.startswith("embcomp/reshape_3")
            or n.name in ("embcomp/cast_3", "embcomp/expand", "embcomp/reshape_4", "embcomp/mul_2", "embcomp/shape",
                          "embcomp/slice", "embcomp/concat", "embcomp/reshape_out")]
    c = lambda name, v: numpy_helper.from_array(np.array(v), "embcomp-const/" + name)
    consts = [c("u_rows_shape", np.array([-1, rb], np.int64)), c("sixteenth", np.float32(1 / 16)),
              c("sixteen", np.float32(16)), c("eight", np.float32(8))]
    mk = lambda op, i, o, **kw: helper.make_node(op, i, [o], name="embcomp/u_" + o.split("/")[-1], **kw)
    new = [mk("Reshape", ["embcomp/packed_rows", "embcomp-const/u_rows_shape"], "embcomp/u_rows"),
           mk("Cast", ["embcomp/u_rows"], "embcomp/u_bytes", to=TensorProto.FLOAT),
           mk("Mul", ["embcomp/u_bytes", "embcomp-const/sixteenth"], "embcomp/u_scaled"),
           mk("Floor", ["embcomp/u_scaled"], "embcomp/u_high"),
           mk("Mul", ["embcomp/u_high", "embcomp-const/sixteen"], "embcomp/u_high16"),
           mk("Sub", ["embcomp/u_bytes", "embcomp/u_high16"], "embcomp/u_low")]
    if halves:
        new.append(mk("Concat", ["embcomp/u_low", "embcomp/u_high"], "embcomp/u_codes", axis=1))
    else:
        consts.append(c("u_col_shape", np.array([-1, rb, 1], np.int64)))
        consts.append(c("u_row_shape", np.array([-1, 2 * rb], np.int64)))
        new += [mk("Reshape", ["embcomp/u_low", "embcomp-const/u_col_shape"], "embcomp/u_low3"),
                mk("Reshape", ["embcomp/u_high", "embcomp-const/u_col_shape"], "embcomp/u_high3"),
                mk("Concat", ["embcomp/u_low3", "embcomp/u_high3"], "embcomp/u_pairs", axis=2),
                mk("Reshape", ["embcomp/u_pairs", "embcomp-const/u_row_shape"], "embcomp/u_codes")]
    new.append(mk("Sub", ["embcomp/u_codes", "embcomp-const/eight"], "codes_f32"))
    new[-1].output[0] = "embcomp/codes_f32"
    # topological: gathers, unpack, scales, rest of ours
    gathers = [n for n in keep if n.op_type == "Gather"]
    others = [n for n in keep if n.op_type != "Gather"]
    first_reader = next(i for i, n in enumerate(rest) if output in n.input)
    nodes = rest[:first_reader] + gathers + new + others + rest[first_reader:]
    del g.node[:]
    g.node.extend(nodes)
    used = {i for n in g.node for i in n.input}
    inits = [t for t in g.initializer if not t.name.startswith("embcomp-const/") or t.name in used]
    if halves:
        codes = np.empty((packed.shape[0], 2 * rb), np.uint8)
        codes[:, 0::2], codes[:, 1::2] = packed & 15, packed >> 4
        repacked = codes[:, :rb] | (codes[:, rb:] << 4)
        inits = [numpy_helper.from_array(repacked, "embcomp/packed") if t.name == "embcomp/packed" else t for t in inits]
    del g.initializer[:]
    g.initializer.extend(inits + [t for t in consts if t.name in used])
    return m


def lookup_model(nodes, inits, ids, output, cols, ir_version, ms):
    nodes = [onnx.NodeProto.FromString(n.SerializeToString()) for n in nodes]
    for n in nodes:
        n.input[:] = ["ids" if i == ids else i for i in n.input]
        n.output[:] = [LOOKUP_OUT if o == output else o for o in n.output]
    graph = helper.make_graph(
        nodes,
        "lookup",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, [1, "n"])],
        [helper.make_tensor_value_info(LOOKUP_OUT, TensorProto.FLOAT, [1, "n", cols])],
        initializer=inits,
    )
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid("com.microsoft", 1)] if ms else [])
    return helper.make_model(graph, opset_imports=opsets, ir_version=ir_version)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("ours")
    p.add_argument("out_dir")
    p.add_argument("--ids", default="4096")
    p.add_argument("--original", help="the model OURS.onnx was compressed from: also write lookup-float.onnx")
    a = p.parse_args()
    os.makedirs(a.out_dir, exist_ok=True)
    m, packed, scales, ids, output = load_parts(a.ours)
    n, cols = packed.shape[0], packed.shape[1] * 2
    assert scales.shape == (n, cols // 32), "block 32, whole blocks"
    print(f"ours: {a.ours}: packed {packed.shape} uint8, scales {scales.shape} f16, ids '{ids}', output '{output}'")

    models = {}
    for tag, f16 in [("gbq-f32", False), ("gbq-f16", True)]:
        g = with_gbq(m, scales, ids, output, f16)
        onnx.checker.check_model(g)
        onnx.save(g, os.path.join(a.out_dir, f"{tag}.onnx"))
        models[tag] = g
        print(f"wrote {tag}.onnx ({os.path.getsize(os.path.join(a.out_dir, tag + '.onnx'))} bytes)")

    for tag, halves in [("f32-inter", False), ("f32-halves", True)]:
        g = f32_unpack(m, packed, ids, output, halves)
        onnx.checker.check_model(g)
        onnx.save(g, os.path.join(a.out_dir, f"{tag}.onnx"))
        models[tag] = g

    # lookups alone
    ours_nodes = [x for x in m.graph.node if x.name.startswith("embcomp/")]
    ours_inits = [t for t in m.graph.initializer if t.name.startswith("embcomp")]
    lookups = {"ours": lookup_model(ours_nodes, ours_inits, ids, output, cols, m.ir_version, False)}
    for tag, g in models.items():
        nodes = [x for x in g.graph.node if x.name.startswith("embcomp/")]
        inits = [t for t in g.graph.initializer if t.name.startswith("embcomp")]
        lookups[tag] = lookup_model(nodes, inits, ids, output, cols, m.ir_version, tag.startswith("gbq"))
    if a.original:
        o = onnx.load(a.original)
        gather = next(x for x in o.graph.node if x.op_type == "Gather" and output in x.output)
        table = next(t for t in o.graph.initializer if t.name == gather.input[0])
        lookups["float"] = lookup_model([gather], [table], ids, output, cols, o.ir_version, False)
    for tag, g in lookups.items():
        onnx.checker.check_model(g)
        onnx.save(g, os.path.join(a.out_dir, f"lookup-{tag}.onnx"))

    if a.ids == "all":
        rows = np.arange(n)
    else:
        rng = np.random.default_rng(0)
        rows = np.concatenate([[0, n - 1], rng.choice(np.arange(1, n - 1), int(a.ids) - 2, replace=False)])
    with open(os.path.join(a.out_dir, "lookup-inputs.json"), "w") as f:
        json.dump({"runs": [{"inputs": [{"name": "ids", "dtype": "int64", "shape": [1, len(rows)], "values": rows.tolist()}]}]}, f)
    reference(packed, scales, rows).astype("<f4").tofile(os.path.join(a.out_dir, "reference.f32"))

    # onnxruntime, every row
    want = reference(packed, scales, np.arange(n))
    all_ids = np.arange(n, dtype=np.int64).reshape(1, n)
    for tag in [t for t in lookups if t != "float"]:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        s = ort.InferenceSession(os.path.join(a.out_dir, f"lookup-{tag}.onnx"), options, providers=["CPUExecutionProvider"])
        got = s.run(None, {"ids": all_ids})[0].reshape(n, cols)
        same = got.view(np.uint32) == want.view(np.uint32)
        rel = np.abs(got - want).max() / np.abs(want).max()
        print(
            f"onnxruntime {ort.__version__}, lookup-{tag}, all {n} rows: {same.mean() * 100:.3f}% of values bit-equal to numpy, "
            f"max |diff| relative to max |value| {rel:.3g}"
        )


if __name__ == "__main__":
    main()
