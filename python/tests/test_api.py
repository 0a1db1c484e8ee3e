"""The Python API: model arguments, the report, errors, progress, interrupts, sweep, inspect."""

from __future__ import annotations

import inspect as pyinspect
import os
import signal
import time
from pathlib import Path

import onnx_embcomp
import pytest
from onnx_embcomp import FileError, ModelError, ParameterError, TargetNotReached

from conftest import DECODER, ENCODER, run_cli

FAST = dict(ratio=0.5, progress=False)


def reference() -> bytes:
    return onnx_embcomp.compress(str(ENCODER), **FAST).model


@pytest.mark.parametrize("kind", ["str", "path", "bytes", "bytearray", "memoryview"])
def test_every_kind_of_model_gives_the_same_model(kind: str) -> None:
    model = {
        "str": str(ENCODER),
        "path": ENCODER,
        "bytes": ENCODER.read_bytes(),
        "bytearray": bytearray(ENCODER.read_bytes()),
        "memoryview": memoryview(ENCODER.read_bytes()),
    }[kind]
    report = onnx_embcomp.compress(model, **FAST)
    assert isinstance(report.model, bytes)
    assert report.model == reference()
    assert report.output is None
    assert report.bytes_before == ENCODER.stat().st_size
    assert report.bytes_after == len(report.model)


def test_model_proto_in_model_proto_out(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    proto = onnx.load(str(ENCODER))
    report = onnx_embcomp.compress(proto, **FAST)
    assert isinstance(report.model, onnx.ModelProto)
    assert report.model.SerializeToString() == reference()
    onnx.checker.check_model(report.model, full_check=True)
    # With an output path, the file is written and nothing returned.
    out = tmp_path / "out.onnx"
    report = onnx_embcomp.compress(proto, out, **FAST)
    assert report.model is None and report.output == str(out)
    assert out.read_bytes() == reference()


def test_other_types_are_refused() -> None:
    with pytest.raises(TypeError, match="model must be"):
        onnx_embcomp.compress(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="ratio"):
        onnx_embcomp.compress(ENCODER, ratio="half")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="seed"):
        onnx_embcomp.compress(ENCODER, seed=True)


def test_report_figures(tmp_path: Path) -> None:
    out = tmp_path / "out.onnx"
    r = onnx_embcomp.compress(ENCODER, out, ratio=0.5, k=2, progress=False)
    assert r.table == "embeddings.word_embeddings.weight"
    assert r.shape == (1000, 64)
    assert r.k == 2 and r.j > 0 and r.dims == [r.j, r.j]
    assert r.storage["bits"] == r.to_dict()["storage"]["bits"]
    assert 0 < r.embedding_bytes_after < r.embedding_bytes_before == 1000 * 64 * 4
    assert r.saved_percent == pytest.approx(100 * (1 - r.numbers_after / r.numbers_before))
    assert r.numbers_before == 1000 * 64
    assert r.validation is not None and r.text_validation is None and r.corpus is None
    assert 0.0 < r.mean_cosine <= 1.0
    assert r.bytes_after == out.stat().st_size
    assert {"load", "fit", "validate", "write"} <= set(r.seconds)
    assert "embedding   embeddings.word_embeddings.weight [1000 x 64]" in str(r)
    assert f"wrote {out}" in str(r)
    assert repr(r).startswith("<onnx_embcomp.Report table='embeddings.word_embeddings.weight' [1000 x 64] k=2")
    d = r.to_dict()
    d["k"] = 99
    assert r.k == 2, "to_dict() is a copy"


def test_validate_false_skips_the_validation() -> None:
    r = onnx_embcomp.compress(ENCODER, validate=False, **FAST)
    assert r.validation is None and r.mean_cosine is None


def test_validate_onnxruntime_uses_the_installed_package(monkeypatch: pytest.MonkeyPatch) -> None:
    # no ORT_DYLIB_PATH: the library of the onnxruntime package this interpreter imports
    monkeypatch.delenv("ORT_DYLIB_PATH", raising=False)
    r = onnx_embcomp.compress(ENCODER, validate="onnxruntime", **FAST)
    assert r.validation is not None and r.validation["runtime"] == "onnxruntime"
    assert "validation  onnxruntime," in str(r)
    assert os.path.basename(os.environ["ORT_DYLIB_PATH"]).startswith("libonnxruntime")
    tract = onnx_embcomp.compress(ENCODER, validate="tract", **FAST)
    assert tract.validation["runtime"] == "tract"
    assert r.model == tract.model
    assert r.mean_cosine == pytest.approx(tract.mean_cosine, abs=1e-4)
    with pytest.raises(ParameterError, match="validate"):
        onnx_embcomp.compress(ENCODER, validate="onnx", **FAST)
    assert onnx_embcomp.compress(ENCODER, validate=0, **FAST).validation is None
    monkeypatch.setenv("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so")
    # the first load in this process is kept: a wrong path later is not read again
    assert onnx_embcomp.compress(ENCODER, validate="onnxruntime", **FAST).model == tract.model


def test_errors_are_the_right_classes_with_the_cli_message(tmp_path: Path) -> None:
    out = tmp_path / "out.onnx"
    cases = [
        (dict(model=tmp_path / "missing.onnx"), FileError, ["--ratio", "0.5"]),
        (dict(model=b"not a model"), ModelError, None),
        (dict(model=ENCODER, ratio=1.5), ParameterError, ["--ratio", "1.5"]),
        (dict(model=ENCODER, ratio=0.5, target_cos=0.9), ParameterError, ["--target-cos", "0.9", "--ratio", "0.5"]),
        (dict(model=ENCODER, corpus="docs"), ParameterError, ["--corpus", "docs"]),
        (dict(model=ENCODER, bits=3), ParameterError, ["--bits", "3"]),
        (dict(model=ENCODER, k="many"), ParameterError, ["-k", "many"]),
        (dict(model=ENCODER, max_bytes="200%"), ParameterError, ["--max-bytes", "200%"]),
        (dict(model=ENCODER, embedding="nope"), ParameterError, ["--embedding", "nope"]),
        # a tied table: clustering and product codes cannot serve its LM head (plain rows can)
        (dict(model=DECODER), ParameterError, ["--ratio", "0.5"]),
        (dict(model=DECODER, codes=4), ParameterError, ["--codes", "4"]),
        (dict(model=ENCODER, target_cos=1.0), TargetNotReached, ["--target-cos", "1.0"]),
        (dict(model=ENCODER, k=1, j=1, min_cos=0.999), TargetNotReached, ["-k", "1", "-j", "1", "--min-cos", "0.999"]),
    ]
    for kwargs, cls, flags in cases:
        model = kwargs.pop("model")
        with pytest.raises(cls) as caught:
            onnx_embcomp.compress(model, out if flags is not None else None, progress=False, **kwargs)
        assert isinstance(caught.value, onnx_embcomp.Error)
        assert not out.exists()
        if flags is not None:
            r = run_cli(model, out, *flags, "-q")
            assert r.returncode == (1 if cls is TargetNotReached else 2), r
            # The CLI's one-line message; clap's usage errors: their first paragraph, on one line
            # (a usage line and a tip follow it).
            paragraph = " ".join(line.strip() for line in r.stderr.strip().split("\n\n")[0].splitlines())
            for prefix in ("onnx-embcomp: error: ", "error: "):
                if paragraph.startswith(prefix):
                    assert str(caught.value) == paragraph[len(prefix):], (kwargs, r.stderr)
                    break
            else:
                raise AssertionError(f"no error message from the CLI: {r.stderr}")
    assert list(tmp_path.iterdir()) == []
    assert issubclass(FileError, OSError) and issubclass(ParameterError, ValueError)


def test_a_tied_table_is_served_by_plain_8_bit_rows() -> None:
    r = onnx_embcomp.compress(DECODER, plain=True, bits=8, progress=False)
    n, d = 800, 48
    assert r.embedding_bytes_after == n * d + 2 * n
    assert r.to_dict()["heads_served"] == ["/lm_head/MatMul"] and not r.to_dict()["table_kept"]


def test_output_is_input_is_refused(tmp_path: Path) -> None:
    model = tmp_path / "m.onnx"
    model.write_bytes(ENCODER.read_bytes())
    with pytest.raises(ParameterError, match="input model itself"):
        onnx_embcomp.compress(model, model, **FAST)
    assert model.read_bytes() == ENCODER.read_bytes()


def test_progress_callback_sees_the_stages() -> None:
    events = []
    onnx_embcomp.compress(ENCODER, ratio=0.5, progress=lambda stage, done, total: events.append((stage, done, total)))
    stages = [e[0] for e in events]
    assert "fit" in stages and "validate" in stages and "rewrite" in stages
    steps = [e for e in events if e[0] == "fit" and e[1] is not None]
    assert steps and all(0 <= done <= total for _, done, total in steps)
    with pytest.raises(TypeError, match="progress"):
        onnx_embcomp.compress(ENCODER, ratio=0.5, progress=3)  # type: ignore[arg-type]


def test_an_exception_in_the_callback_stops_the_run_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out.onnx"

    def boom(stage: str, done: object, total: object) -> None:
        if stage == "fit":
            raise RuntimeError("stop here")

    with pytest.raises(RuntimeError, match="stop here"):
        onnx_embcomp.compress(ENCODER, out, progress=boom, ratio=0.5)
    time.sleep(1.0)
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_raises_keyboard_interrupt_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out.onnx"

    # (in the middle of the search: after its first point)
    def interrupt(stage: str, done: object, total: object) -> None:
        if stage == "sweep" and done:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        onnx_embcomp.compress(ENCODER, out, progress=interrupt, target_cos=0.95)
    time.sleep(1.0)
    assert list(tmp_path.iterdir()) == []
    # The package still works afterwards.
    assert onnx_embcomp.compress(ENCODER, **FAST).model == reference()


def test_data_aware_with_a_corpus_and_a_tokenizer(corpus_dir: Path) -> None:
    out = corpus_dir / "out.onnx"
    docs, tokenizer = corpus_dir / "docs", corpus_dir / "tokenizer.json"
    r = onnx_embcomp.compress(ENCODER, out, corpus=docs, tokenizer=tokenizer, ratio=0.5, progress=False)
    assert r.corpus is not None and r.corpus["files"] == 1 and r.corpus["tokens"] > 0
    assert r.text_validation is not None and r.text_validation["sentences"] > 0
    assert r.mean_cosine == r.text_validation["mean_cosine"]
    # By default a tenth of the held-out tokens come from the prior; the share changes the
    # check only, never the bytes.
    assert r.text_validation["prior_share"] == 0.1 and r.corpus["held_out_prior_tokens"] > 0
    as_written = onnx_embcomp.compress(ENCODER, corpus=docs, tokenizer=tokenizer, ratio=0.5, prior_share=0, progress=False)
    assert as_written.text_validation["prior_share"] == 0 and as_written.corpus["held_out_prior_tokens"] == 0
    assert as_written.model == out.read_bytes()
    with pytest.raises(ParameterError, match="prior-share"):
        onnx_embcomp.compress(ENCODER, corpus=docs, tokenizer=tokenizer, prior_share=1.5, progress=False)
    # The same bytes as the CLI with the same corpus.
    by_cli = corpus_dir / "cli.onnx"
    c = run_cli(ENCODER, by_cli, "--corpus", docs, "--tokenizer", tokenizer, "--ratio", "0.5", "-q")
    assert c.returncode == 0, c.stderr
    assert out.read_bytes() == by_cli.read_bytes()
    # The tokenizer alone: its prior gives the weights; the same bytes as the CLI again.
    alone = onnx_embcomp.compress(ENCODER, tokenizer=tokenizer, ratio=0.5, prior_strength=0.5, progress=False)
    c = run_cli(ENCODER, by_cli, "--tokenizer", tokenizer, "--ratio", "0.5", "--prior-strength", "0.5", "-q")
    assert c.returncode == 0, c.stderr
    assert alone.model == by_cli.read_bytes()
    # A corpus as a list of paths, with a hot tier.
    r = onnx_embcomp.compress(ENCODER, corpus=[docs], tokenizer=str(tokenizer), hot_bits="float", progress=False)
    assert r.to_dict()["tiers"]["hot_rows"] > 0
    # A corpus without a tokenizer is a usage error.
    with pytest.raises(ParameterError, match="required arguments were not provided: --tokenizer <PATH>"):
        onnx_embcomp.compress(ENCODER, corpus=docs, progress=False)


def test_sweep_returns_points_and_front_and_writes_files_only_with_out(tmp_path: Path) -> None:
    grid = dict(ks=[1, 2], ratios=[0.5], bits=[8], progress=False)
    s = onnx_embcomp.sweep(ENCODER, **grid)
    assert {p["k"] for p in s.points if p["family"] in ("svd", "clustering")} == {1, 2}
    assert s.front and all(p["on_front"] for p in s.front)
    assert [p["bytes"] for p in s.front] == sorted(p["bytes"] for p in s.front)
    assert all("args" in p for p in s.points)
    assert s.front[0]["label"] in str(s)
    assert list(tmp_path.iterdir()) == []
    out = tmp_path / "sweep"
    s2 = onnx_embcomp.sweep(ENCODER.read_bytes(), out=out, **grid)
    assert {p.name for p in out.iterdir()} == {"sweep.json", "sweep.svg", "sweep.png"}
    assert [p["label"] for p in s2.points] == [p["label"] for p in s.points]
    # Each front point's flags give that point with compress.
    point = s.front[0]
    args = point["args"]
    r = run_cli(ENCODER, tmp_path / "p.onnx", *args, "-q", "--json", "-")
    assert r.returncode == 0, r.stderr


def test_inspect_gives_the_cli_json() -> None:
    import json

    summary = onnx_embcomp.inspect(ENCODER)
    r = run_cli("inspect", ENCODER, "--json")
    assert r.returncode == 0, r.stderr
    assert summary == json.loads(r.stdout)
    assert onnx_embcomp.inspect(ENCODER.read_bytes()) == summary
    assert onnx_embcomp.inspect(DECODER) != summary
    with pytest.raises(ModelError):
        onnx_embcomp.inspect(b"\x00\x01garbage")


def argument_entries(doc: str) -> dict:
    """The entries of a docstring's Args section: name -> text (continuation lines joined)."""
    entries: dict = {}
    lines = doc.split("Args:\n", 1)[1].splitlines()
    name = None
    for line in lines:
        if line and not line.startswith(" "):
            break  # the next section
        if line.startswith("    ") and not line.startswith("     "):
            name, _, text = line.strip().partition(": ")
            entries[name] = text
        elif name is not None:
            entries[name] += " " + line.strip()
    return entries


def test_help_documents_every_argument_with_its_default() -> None:
    for function in (onnx_embcomp.compress, onnx_embcomp.sweep, onnx_embcomp.inspect):
        entries = argument_entries(pyinspect.getdoc(function) or "")
        for name, parameter in pyinspect.signature(function).parameters.items():
            assert name in entries, f"{function.__name__}: {name} is not documented"
            if parameter.default is not pyinspect.Parameter.empty:
                assert "Default" in entries[name], f"{function.__name__}: {name} has no default documented"
                assert repr(parameter.default) in entries[name], f"{function.__name__}: {name}: {entries[name]}"


def test_ctrl_c_during_a_long_run(tmp_path: Path) -> None:
    """A real SIGINT while the work runs (no callback): KeyboardInterrupt at once, no output."""
    import subprocess
    import sys

    out = tmp_path / "out.onnx"
    script = (
        "import onnx_embcomp, sys\n"
        "try:\n"
        f"    onnx_embcomp.compress({str(ENCODER)!r}, {str(out)!r}, k=8, restarts=2000, progress=False)\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted'); sys.exit(42)\n"
    )
    p = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(3.0)
    if p.poll() is not None:
        pytest.skip(f"the run ended before it could be interrupted: {p.communicate()}")
    start = time.monotonic()
    p.send_signal(signal.SIGINT)
    stdout, stderr = p.communicate(timeout=60)
    assert p.returncode == 42, (stdout, stderr)
    assert stdout.strip() == "interrupted"
    assert time.monotonic() - start < 5.0
    assert list(tmp_path.iterdir()) == []


def test_the_documented_defaults_are_the_cli_defaults() -> None:
    """Where an argument's None stands for a CLI default, the docstring says the CLI's value."""
    import re

    from conftest import run_cli

    for function, command in ((onnx_embcomp.compress, []), (onnx_embcomp.sweep, ["sweep"])):
        help_text = run_cli(*command, "--help").stdout
        defaults = {}
        for flag, value in re.findall(r"\n\s+(?:-\w, )?(--?[\w-]+)[^\n]*(?:\n(?!\s+-)[^\n]*)*?\[default: ([^\]]+)\]", help_text):
            defaults[flag.lstrip("-").replace("-", "_")] = value
        checked = 0
        for name, text in argument_entries(pyinspect.getdoc(function) or "").items():
            said = re.search(r"Default None: (.+?)(?:\.(?: |$)|$| \()", text)
            if said is None or not re.fullmatch(r"[\w.]+(?:[ ,][\w.]+)*", defaults.get(name, "(none)")):
                continue  # no default said, or the CLI's is prose
            if function is onnx_embcomp.sweep and name == "out":
                continue  # deliberately not the CLI's '.': without out, nothing is written
            documented = said.group(1).replace('"', "").replace("`", "").replace(",", " ").split()
            cli = defaults[name].replace(",", " ").split()
            assert documented == cli, f"{function.__name__}: {name}: documented {documented}, the CLI says {cli}"
            checked += 1
        assert checked >= (10 if function is onnx_embcomp.compress else 5), (function.__name__, checked, defaults)
