"""Shared fixtures: the repository's test models, the console script, a tiny corpus."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path
from typing import List, Union

import pytest

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
ENCODER = FIXTURES / "encoder.onnx"
DECODER = FIXTURES / "decoder.onnx"

# The words of the corpus and of the tokenizer's vocabulary (tests/it/cli.rs's WORDS).
WORDS = (
    "the a model token table runs fast slow small large text data file reads writes keeps drops "
    "every some row column value number graph node input output"
).split()


def console_script() -> Path:
    """The `onnx-embcomp` script of the environment running the tests (not one on PATH)."""
    bindir = Path(sys.executable).parent
    for name in ("onnx-embcomp", "onnx-embcomp.exe"):
        if (bindir / name).exists():
            return bindir / name
    raise RuntimeError(f"no onnx-embcomp console script in {bindir}: is the package installed?")


def run_cli(*args: Union[str, Path]) -> subprocess.CompletedProcess:
    """Runs the console script with `args`; its exit code, stdout and stderr."""
    return subprocess.run(
        [str(console_script()), *map(str, args)], capture_output=True, text=True, timeout=600
    )


def word_level_tokenizer(words: List[str]) -> str:
    """A Hugging Face tokenizer.json over `words` (tests/it/fixtures.rs's word_level_tokenizer)."""
    vocab = {"[PAD]": 0, "[CLS]": 1, "[SEP]": 2, "[UNK]": 3}
    vocab.update({w: i + 4 for i, w in enumerate(words)})

    def special(t: str) -> dict:
        return {"SpecialToken": {"id": t, "type_id": 0}}

    return json.dumps(
        {
            "version": "1.0",
            "truncation": None,
            "padding": None,
            "added_tokens": [],
            "normalizer": {"type": "Lowercase"},
            "pre_tokenizer": {"type": "Whitespace"},
            "post_processor": {
                "type": "TemplateProcessing",
                "single": [special("[CLS]"), {"Sequence": {"id": "A", "type_id": 0}}, special("[SEP]")],
                "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
                "special_tokens": {
                    "[CLS]": {"id": "[CLS]", "ids": [1], "tokens": ["[CLS]"]},
                    "[SEP]": {"id": "[SEP]", "ids": [2], "tokens": ["[SEP]"]},
                },
            },
            "decoder": None,
            "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "[UNK]"},
        }
    )


def word_corpus(words: List[str], lines: int, seed: int) -> str:
    """`lines` seeded lines of 8 words drawn from `words`."""
    rng = random.Random(seed)
    return "\n".join(" ".join(rng.choice(words) for _ in range(8)) for _ in range(lines))


@pytest.fixture
def corpus_dir(tmp_path: Path) -> Path:
    """A folder with tokenizer.json over WORDS and a corpus of 400 lines in docs/."""
    (tmp_path / "tokenizer.json").write_text(word_level_tokenizer(WORDS))
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text(word_corpus(WORDS, 400, 5))
    return tmp_path
