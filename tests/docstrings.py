"""The different-source sentence set of tests/heldout_onnxruntime.py and
tests/decoder_onnxruntime.py: Python standard-library docstring sentences, text no corpus here
contains. One definition, so both scripts (and BENCHMARKS.md's figures) use the same sentences."""
import importlib
import random
import re

MODULES = ["json", "argparse", "logging", "collections", "itertools", "functools", "pathlib", "subprocess",
           "threading", "unittest", "email", "http.client", "csv", "sqlite3", "tarfile", "zipfile", "datetime",
           "decimal", "fractions", "statistics"]


def sentences(n):
    """The first `n` of the sentences, in a seeded shuffled order (the same for every `n`)."""
    sents = []
    for m in MODULES:
        mod = importlib.import_module(m)
        txt = " ".join(filter(None, [mod.__doc__] + [getattr(getattr(mod, a), "__doc__", None) or "" for a in dir(mod) if not a.startswith("_")]))
        for s in re.split(r"(?<=[.!?])\s+", re.sub(r"\s+", " ", txt)):
            if 40 <= len(s) <= 200 and re.match(r"^[A-Z][a-z]", s) and not re.search(r"[>{}\[\]=]", s):
                sents.append(s)
    random.seed(0)
    sents = sorted(set(sents))
    random.shuffle(sents)
    return sents[:n]
