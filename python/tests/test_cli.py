"""The console script: the Rust command line, with its exit codes, and parity with the API."""

from __future__ import annotations

import json
from pathlib import Path

import onnx_embcomp
import pytest

from conftest import ENCODER, run_cli


def without_seconds(figures: object) -> object:
    """`figures` without the timings (at every depth), which differ from run to run."""
    if isinstance(figures, dict):
        return {k: without_seconds(v) for k, v in figures.items() if k != "seconds"}
    if isinstance(figures, list):
        return [without_seconds(v) for v in figures]
    return figures


def test_help_and_version_exit_0() -> None:
    r = run_cli("--help")
    assert r.returncode == 0, r.stderr
    assert "Usage: onnx-embcomp" in r.stdout and "--target-cos" in r.stdout
    r = run_cli("--version")
    assert r.returncode == 0 and r.stdout.startswith("onnx-embcomp "), r


def test_bad_flag_exits_2(tmp_path: Path) -> None:
    r = run_cli(ENCODER, tmp_path / "out.onnx", "--no-such-flag")
    assert r.returncode == 2, r
    assert "--no-such-flag" in r.stderr
    assert not (tmp_path / "out.onnx").exists()


def test_unreachable_target_exits_1_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out.onnx"
    # (The fixture reaches 0.99999; no model of the family reaches 1.0.)
    r = run_cli(ENCODER, out, "--target-cos", "1.0", "-q")
    assert r.returncode == 1, r
    assert r.stderr.startswith("onnx-embcomp: error: "), r.stderr
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "flags, kwargs",
    [
        (["--ratio", "0.8"], dict(ratio=0.8)),
        (["-k", "2", "--ratio", "0.5", "--bits", "4", "--seed", "7"], dict(k=2, ratio=0.5, bits=4, seed=7)),
        (["--plain", "--bits", "4"], dict(plain=True, bits=4)),
        (["--codes"], dict(codes=4)),
        (["--codes", "8", "--rotate"], dict(codes=8, rotate=True)),
        (["--max-bytes", "20%"], dict(max_bytes="20%")),
        (["--target-cos", "0.9"], dict(target_cos=0.9)),
    ],
    ids=["ratio", "k-bits-seed", "plain", "codes", "codes-rotated", "max-bytes", "target-cos"],
)
def test_same_settings_give_the_same_bytes_as_the_cli(tmp_path: Path, flags: list, kwargs: dict) -> None:
    by_cli, by_api, report_json = tmp_path / "cli.onnx", tmp_path / "api.onnx", tmp_path / "cli.json"
    r = run_cli(ENCODER, by_cli, *flags, "--json", report_json)
    assert r.returncode == 0, r.stderr
    report = onnx_embcomp.compress(str(ENCODER), by_api, progress=False, **kwargs)
    assert by_api.read_bytes() == by_cli.read_bytes()
    # In memory: the same bytes again.
    in_memory = onnx_embcomp.compress(ENCODER, progress=False, **kwargs)
    assert in_memory.model == by_cli.read_bytes()
    # The same figures as the CLI's --json, and its text report on stderr.
    cli, api = json.loads(report_json.read_text()), report.to_dict()
    # A search across the family checks points in parallel and stops early: which points it had
    # checked (and skipped) by then varies from run to run (of the CLI too), the point chosen
    # does not.
    for figures in (cli, api):
        figures.pop("skipped", None)
        chosen = figures.pop("chosen", None)
        points = figures.pop("points", [])
        figures["chosen point"] = points[chosen] if chosen is not None else None
    assert without_seconds(api) == without_seconds(cli)
    assert report.embedding_bytes_after == cli["embedding_bytes_after"]
    assert str(report).splitlines()[0] == r.stderr.splitlines()[0]
    assert str(report).splitlines()[-1] == r.stderr.splitlines()[-1].replace(str(by_cli), str(by_api))


def test_ctrl_c_in_the_console_script_exits_130(tmp_path: Path) -> None:
    import signal
    import subprocess
    import time

    from conftest import console_script

    out = tmp_path / "out.onnx"
    # A fit of many restarts, long enough to be interrupted.
    p = subprocess.Popen(
        [str(console_script()), str(ENCODER), str(out), "-k", "8", "--restarts", "2000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(3.0)
    if p.poll() is not None:
        pytest.skip("the run ended before it could be interrupted")
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert "interrupted" in err
    assert not out.exists()


def test_external_data_as_the_cli_writes_it(tmp_path: Path) -> None:
    (tmp_path / "cli").mkdir()
    (tmp_path / "api").mkdir()
    by_cli, by_api = tmp_path / "cli" / "out.onnx", tmp_path / "api" / "out.onnx"
    r = run_cli(ENCODER, by_cli, "--ratio", "0.5", "--external-data", "always", "-q")
    assert r.returncode == 0, r.stderr
    report = onnx_embcomp.compress(ENCODER, by_api, ratio=0.5, external_data="always", progress=False)
    assert report.external_data == str(by_api) + ".data"
    for name in ("out.onnx", "out.onnx.data"):
        assert (tmp_path / "api" / name).read_bytes() == (tmp_path / "cli" / name).read_bytes(), name
    assert report.bytes_after == by_api.stat().st_size + (tmp_path / "api" / "out.onnx.data").stat().st_size
    # A model with external data is read with it from a path.
    assert onnx_embcomp.inspect(by_api) == onnx_embcomp.inspect(by_cli)


def test_an_input_with_external_data_gives_an_output_with_external_data(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    model = tmp_path / "in.onnx"
    onnx.save_model(
        onnx.load(str(ENCODER)), str(model), save_as_external_data=True, location="in.onnx.data", size_threshold=1024
    )
    (tmp_path / "cli").mkdir()
    (tmp_path / "api").mkdir()
    r = run_cli(model, tmp_path / "cli" / "out.onnx", "--ratio", "0.5", "-q")
    assert r.returncode == 0, r.stderr
    report = onnx_embcomp.compress(model, tmp_path / "api" / "out.onnx", ratio=0.5, progress=False)
    assert report.external_data == str(tmp_path / "api" / "out.onnx.data")
    for name in ("out.onnx", "out.onnx.data"):
        assert (tmp_path / "api" / name).read_bytes() == (tmp_path / "cli" / name).read_bytes(), name
    # Its bytes alone cannot be resolved: the data is in another file.
    with pytest.raises(onnx_embcomp.ModelError, match="not read from a file"):
        onnx_embcomp.compress(model.read_bytes(), ratio=0.5, progress=False)
