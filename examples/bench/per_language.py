#!/usr/bin/env python3
# usage: per_language.py ORIGINAL.onnx COMPRESSED.onnx tokenizer.json  (BENCHMARKS.md, e5 per language)
"""Per-language mean cosine of mean-pooled outputs (e5: 'query: ' prefix), original vs compressed,
on vim tutor translations and GnuPG help texts (not in the corpus)."""
import sys, glob, re, random, os
import numpy as np, onnxruntime as ort
from tokenizers import Tokenizer
orig, comp, tokp = sys.argv[1:4]
tok = Tokenizer.from_file(tokp); tok.no_padding(); tok.no_truncation()
langs = {}
for f in sorted(glob.glob("/usr/share/vim/vim*/tutor/tutor.*.utf-8")) + sorted(glob.glob("/usr/share/gnupg/help.*.txt")):
    m = re.search(r"tutor\.([a-z_]+)\.utf-8$|help\.([a-zA-Z_]+)\.txt$", f)
    lang = (m.group(1) or m.group(2)).split("_")[0]
    text = open(f, encoding="utf-8", errors="ignore").read()
    for line in text.splitlines():
        line = line.strip()
        words = line.split()
        letters = sum(c.isalpha() for c in line)
        if 6 <= len(words) <= 60 and letters * 10 >= len(line) * 6:
            langs.setdefault(lang, []).append(line)
sess = {p: ort.InferenceSession(p, providers=["CPUExecutionProvider"]) for p in (orig, comp)}
def embed(p, sents):
    s = sess[p]; names = [i.name for i in s.get_inputs()]; out = []
    for t in sents:
        e = tok.encode("query: " + t); ids = np.array([e.ids[:128]], np.int64); am = np.ones_like(ids)
        feed = {"input_ids": ids, "attention_mask": am}
        if "token_type_ids" in names: feed["token_type_ids"] = np.zeros_like(ids)
        h = [r for r in s.run(None, feed) if r.dtype == np.float32 and r.ndim == 3][0][0]
        out.append(h.mean(0))
    return np.array(out)
for lang, sents in sorted(langs.items()):
    if len(sents) < 20: continue
    random.seed(0); sents = sorted(set(sents)); random.shuffle(sents); sents = sents[:40]
    a, b = embed(orig, sents), embed(comp, sents)
    cos = (a*b).sum(1) / np.linalg.norm(a,axis=1) / np.linalg.norm(b,axis=1)
    print(f"{lang:6} {len(sents):3} mean {cos.mean():.4f} min {cos.min():.4f}", flush=True)
