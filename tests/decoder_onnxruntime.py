"""Cross-check of a decoder in onnxruntime: top-1 next-token agreement, mean KL (nats/token,
original || compressed) and perplexity of both models, on Python standard-library docstring
sentences (text no corpus here contains), plus the ONNX checker on the compressed model.

Usage (with the venv built by ../shared/models/fetch.sh):
  ~/.cache/onnx-embcomp-models/venv/bin/python tests/decoder_onnxruntime.py ORIGINAL.onnx COMPRESSED.onnx tokenizer.json [N]

The model takes input_ids and attention_mask [1, s] and gives logits [1, s, vocab]. Every
position of every sentence counts (its next token for perplexity, its whole distribution for
KL and top-1); perplexity is exp of the mean negative log-likelihood over all predicted tokens.
"""
import sys
import numpy as np, onnx, onnxruntime as ort
from tokenizers import Tokenizer
from docstrings import sentences

orig, comp, tokp = sys.argv[1], sys.argv[2], sys.argv[3]
n_sents = int(sys.argv[4]) if len(sys.argv) > 4 else 64
onnx.checker.check_model(comp, full_check=True)
print("checker ok")
sents = sentences(n_sents)
tok = Tokenizer.from_file(tokp); tok.no_padding(); tok.no_truncation()
seqs = [np.array([tok.encode(t).ids[:128]], np.int64) for t in sents]


def logits(path):
    s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    names = [i.name for i in s.get_inputs()]
    out = []
    for ids in seqs:
        feed = {"input_ids": ids}
        if "attention_mask" in names:
            feed["attention_mask"] = np.ones_like(ids)
        out.append(s.run(None, feed)[0][0].astype(np.float64))
    return out


def log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


a, b = logits(orig), logits(comp)
top1, kl, nll_a, nll_b = [], [], [], []
for ids, la, lb in zip(seqs, a, b):
    pa, pb = log_softmax(la), log_softmax(lb)
    top1.extend(pa.argmax(-1) == pb.argmax(-1))
    kl.extend((np.exp(pa) * (pa - pb)).sum(-1))
    nxt = ids[0, 1:]
    nll_a.extend(-pa[np.arange(len(nxt)), nxt])
    nll_b.extend(-pb[np.arange(len(nxt)), nxt])
print(f"sentences {len(seqs)} positions {len(top1)} top-1 agreement {np.mean(top1):.4f} "
      f"mean KL {np.mean(kl):.5f} nats/token; perplexity original {np.exp(np.mean(nll_a)):.3f} "
      f"compressed {np.exp(np.mean(nll_b)):.3f} ({(np.exp(np.mean(nll_b) - np.mean(nll_a)) - 1) * 100:+.2f}%)")
