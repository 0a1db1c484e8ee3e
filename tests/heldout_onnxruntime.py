"""Cross-check in onnxruntime: mean cosine of mean-pooled outputs, original vs compressed, on
Python standard-library docstring sentences (text no corpus here contains), plus the ONNX checker.

Usage (with the venv built by ../shared/models/fetch.sh):
  ~/.cache/onnx-embcomp-models/venv/bin/python tests/heldout_onnxruntime.py ORIGINAL.onnx COMPRESSED.onnx tokenizer.json [N]
"""
import sys
import numpy as np, onnx, onnxruntime as ort
from tokenizers import Tokenizer
from docstrings import sentences
orig, comp, tokp = sys.argv[1], sys.argv[2], sys.argv[3]
onnx.checker.check_model(comp, full_check=True)
print("checker ok")
# held-out English sentences: docstrings of the Python stdlib
sents = sentences(int(sys.argv[4]) if len(sys.argv) > 4 else 300)
tok = Tokenizer.from_file(tokp); tok.no_padding(); tok.no_truncation()
def embed(path):
    s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    names = [i.name for i in s.get_inputs()]
    out = []
    for t in sents:
        e = tok.encode(t); ids = np.array([e.ids[:128]], np.int64); am = np.ones_like(ids)
        feed = {"input_ids": ids, "attention_mask": am}
        if "token_type_ids" in names: feed["token_type_ids"] = np.zeros_like(ids)
        res = s.run(None, feed)
        h = [r for r in res if r.dtype == np.float32 and r.ndim == 3][0][0]
        out.append(h.mean(0))
    return np.array(out)
a, b = embed(orig), embed(comp)
cos = (a*b).sum(1) / np.linalg.norm(a,axis=1) / np.linalg.norm(b,axis=1)
na = (a/np.linalg.norm(a,axis=1,keepdims=True)); nb = (b/np.linalg.norm(b,axis=1,keepdims=True))
sa, sb = na@na.T, nb@nb.T; np.fill_diagonal(sa,-9); np.fill_diagonal(sb,-9)
nn = (sa.argmax(1) == sb.argmax(1)).mean()
print(f"sentences {len(sents)} mean cos {cos.mean():.4f} min {cos.min():.4f} nn-agree {nn:.3f}")
