"""Shrink the word-embedding table of an ONNX transformer by projective clustering (MESSI).

The Python face of the Rust crate ``onnx-embcomp``::

    import onnx_embcomp

    report = onnx_embcomp.compress("model.onnx", "small.onnx", target_cos=0.99)
    print(report)                      # the command line's report
    print(report.embedding_bytes_after, report.saved_percent)

:func:`compress` writes (or returns) a compressed model and its :class:`Report`, :func:`sweep`
evaluates the whole family of settings and marks the Pareto front of bytes against fidelity,
:func:`inspect` shows what would be compressed. The keyword arguments are the command line's
flags (``target_cos`` is ``--target-cos``): the same settings give the same bytes as the
``onnx-embcomp`` command, which this package also installs. Errors raise :class:`Error`
subclasses with the command line's message.
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from . import _native
from ._errors import Error, FileError, ModelError, ParameterError, TargetNotReached

__all__ = [
    "compress",
    "sweep",
    "inspect",
    "Report",
    "SweepResult",
    "Error",
    "ParameterError",
    "ModelError",
    "TargetNotReached",
    "FileError",
]

try:
    from importlib.metadata import version as _version

    __version__ = _version("onnx-embcomp")
except Exception:  # pragma: no cover - not installed as a distribution
    __version__ = "0.0.0"

#: A model: a path, the bytes of an ONNX file, or an ``onnx.ModelProto``.
ModelLike = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, Any]
#: ``progress(stage, done, total)``; ``done`` and ``total`` are None for a stage without steps.
ProgressCallback = Callable[[str, Optional[int], Optional[int]], Any]
_Path = Union[str, "os.PathLike[str]"]


def _is_model_proto(model: Any) -> bool:
    # Recognised without importing onnx: a protobuf message of the onnx package named ModelProto.
    t = type(model)
    return t.__name__ == "ModelProto" and t.__module__.split(".")[0] == "onnx" and hasattr(model, "SerializeToString")


def _model_arg(model: ModelLike) -> Tuple[Union[str, bytes], bool]:
    """The model as the native module takes it (a path string or bytes), and whether it was a
    ModelProto."""
    if isinstance(model, (bytes, bytearray, memoryview)):
        return bytes(model), False
    if _is_model_proto(model):
        return model.SerializeToString(), True
    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        return (os.fsdecode(path) if isinstance(path, bytes) else path), False
    raise TypeError(
        f"model must be a path (str or os.PathLike), bytes or an onnx.ModelProto, not {type(model).__name__}"
    )


def _path(value: Any, name: str) -> str:
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{name} must be a path (str or os.PathLike), not {type(value).__name__}")
    return os.fsdecode(os.fspath(value))


def _paths(value: Any, name: str) -> List[str]:
    if isinstance(value, (str, os.PathLike)):
        return [_path(value, name)]
    try:
        return [_path(v, name) for v in value]
    except TypeError:
        raise TypeError(f"{name} must be a path or a list of paths, not {type(value).__name__}") from None


def _number(value: Any, name: str, kinds: Tuple[type, ...]) -> str:
    if isinstance(value, bool) or not isinstance(value, kinds):
        expected = " or ".join(k.__name__ for k in kinds)
        raise TypeError(f"{name} must be {expected}, not {type(value).__name__}")
    return repr(value) if isinstance(value, float) else str(value)


def _precision(value: Any, name: str) -> str:
    if value == "float" or (isinstance(value, int) and not isinstance(value, bool)):
        return str(value)
    raise TypeError(f"{name} must be 8, 4, 2 or 'float', not {value!r}")


def _runtime(validate: Any) -> Optional[str]:
    """``validate`` as the command line's ``--validate`` value (None: no validation). For
    onnxruntime without ``ORT_DYLIB_PATH``, that variable is set (for this process and its
    children) to the library of the onnxruntime package this interpreter has, which is found
    without importing it."""
    if isinstance(validate, str):
        if validate not in ("tract", "onnxruntime"):
            raise ParameterError(f"invalid validate: {validate!r}: True, False, \"tract\" or \"onnxruntime\"")
    else:
        return "tract" if bool(validate) else None
    if validate == "onnxruntime" and not os.environ.get("ORT_DYLIB_PATH"):
        import glob
        import importlib.util

        spec = importlib.util.find_spec("onnxruntime")
        found = []
        if spec is not None and spec.origin:
            found = sorted(glob.glob(os.path.join(os.path.dirname(spec.origin), "capi", "*onnxruntime.*")))
        libraries = [f for f in found if "providers" not in os.path.basename(f)]
        if not libraries:
            raise ParameterError(
                "invalid validate: 'onnxruntime': this interpreter has no onnxruntime package "
                "(pip install onnxruntime) and ORT_DYLIB_PATH is not set"
            )
        os.environ["ORT_DYLIB_PATH"] = libraries[-1]
    return validate


class _Flags:
    """Builds the command line's flags from keyword arguments; None leaves a flag out."""

    def __init__(self, argv: List[str]) -> None:
        self.argv = argv

    def value(self, flag: str, value: Any) -> None:
        if value is not None:
            # `--flag=value`, so a value starting with '-' is never taken for a flag.
            self.argv.append(f"{flag}={value}")

    def int(self, flag: str, value: Any, name: str) -> None:
        if value is not None:
            self.value(flag, _number(value, name, (int,)))

    def float(self, flag: str, value: Any, name: str) -> None:
        if value is not None:
            self.value(flag, _number(value, name, (int, float)))

    def switch(self, flag: str, on: bool) -> None:
        if on:
            self.argv.append(flag)

    def data(
        self,
        corpus: Any,
        tokenizer: Any,
        token_counts: Any,
        prior_strength: Any,
        prior_share: Any,
        weighting: Any,
        weight_floor: Any,
        holdout: Any,
    ) -> None:
        if corpus is not None:
            for path in _paths(corpus, "corpus"):
                self.value("--corpus", path)
        if tokenizer is not None:
            self.value("--tokenizer", _path(tokenizer, "tokenizer"))
        if token_counts is not None:
            self.value("--token-counts", _path(token_counts, "token_counts"))
        self.float("--prior-strength", prior_strength, "prior_strength")
        self.float("--prior-share", prior_share, "prior_share")
        self.value("--weighting", weighting)
        self.float("--weight-floor", weight_floor, "weight_floor")
        self.int("--holdout", holdout, "holdout")


def _ids(value: Any, name: str, kinds: Tuple[type, ...]) -> Optional[str]:
    if value is None:
        return None
    values = [value] if isinstance(value, (int, float, str)) else list(value)
    return ",".join(_precision(v, name) if name == "bits" else _number(v, name, kinds) for v in values)


class Report:
    """What :func:`compress` did: the figures of the command line's report.

    ``str(report)`` is the command line's text report; :meth:`to_dict` the same figures as the
    command line's ``--json``. The compressed model is :attr:`model` when no output path was
    given.
    """

    def __init__(self, figures: Dict[str, Any], text: str, model: Any = None, output: Optional[str] = None) -> None:
        self._figures = figures
        self._text = text
        #: The compressed model (bytes, or an ``onnx.ModelProto`` when one was given), when
        #: :func:`compress` had no output path; else None.
        self.model: Any = model
        #: The path written, when :func:`compress` had one; else None.
        self.output: Optional[str] = output

    # -- the table --------------------------------------------------------------------------
    @property
    def table(self) -> str:
        """The embedding table's initializer name."""
        return self._figures["table"]

    @property
    def lookups(self) -> List[str]:
        """The Gather nodes that read the table."""
        return list(self._figures["lookups"])

    @property
    def shape(self) -> Tuple[int, int]:
        """The table's shape: (rows, columns), i.e. (vocabulary, hidden size)."""
        n, d = self._figures["shape"]
        return (n, d)

    # -- the method -------------------------------------------------------------------------
    @property
    def k(self) -> int:
        """Subspaces fitted (0: plain storage of the rows, 1: the SVD)."""
        return self._figures["k"]

    @property
    def j(self) -> int:
        """Dimension of each subspace (the largest, with adaptive dimensions)."""
        return self._figures["j"]

    @property
    def dims(self) -> List[int]:
        """Dimension of each cluster's subspace."""
        return list(self._figures["dims"])

    @property
    def storage(self) -> Dict[str, Any]:
        """How the rows are stored: precision (``bits``), block, hot tier."""
        return self._figures["storage"]

    # -- the sizes --------------------------------------------------------------------------
    @property
    def embedding_bytes_before(self) -> int:
        """Bytes of the original table."""
        return self._figures["embedding_bytes_before"]

    @property
    def embedding_bytes_after(self) -> int:
        """Bytes stored for the embedding after compression (index maps, bases, coefficients)."""
        return self._figures["embedding_bytes_after"]

    @property
    def numbers_before(self) -> int:
        """Numbers (values) of the original table."""
        return self._figures["numbers_before"]

    @property
    def numbers_after(self) -> int:
        """Numbers stored by the rewritten lookup (plus the table when it was kept)."""
        return self._figures["numbers_after"]

    @property
    def saved_percent(self) -> float:
        """Share of the table's numbers removed, in percent: ``100 * (1 - numbers_after /
        numbers_before)``; negative when the model grows. (The bytes saved are
        ``embedding_bytes_before - embedding_bytes_after``.)"""
        return self._figures["saved_percent"]

    @property
    def bytes_before(self) -> Optional[int]:
        """Bytes of the input model (its file and external data, or the bytes given)."""
        return self._figures.get("bytes_before")

    @property
    def bytes_after(self) -> Optional[int]:
        """Bytes of the output model (its file and external data, or the bytes returned)."""
        return self._figures.get("bytes_after")

    @property
    def external_data(self) -> Optional[str]:
        """The external-data file written beside the output, if any."""
        return self._figures.get("external_data")

    # -- the quality ------------------------------------------------------------------------
    @property
    def validation(self) -> Optional[Dict[str, Any]]:
        """The check on random token ids (``runtime``: tract or onnxruntime; per output:
        max_abs_diff, mean_cosine), or None when not validated."""
        return self._figures.get("validation")

    @property
    def text_validation(self) -> Optional[Dict[str, Any]]:
        """The check on held-out text of the corpus (mean_cosine, min_cosine, agreements), or None
        without a corpus."""
        return self._figures.get("text_validation")

    @property
    def mean_cosine(self) -> Optional[float]:
        """The cosine the quality targets are measured with: the mean on held-out text with a
        corpus, else the worst output's mean on random ids; None when not validated."""
        text = self.text_validation
        if text is not None:
            return text["mean_cosine"]
        cosines = [o["mean_cosine"] for o in (self.validation or {}).get("outputs", []) if o.get("mean_cosine") is not None]
        return min(cosines) if cosines else None

    @property
    def fit(self) -> Dict[str, Any]:
        """The fit's figures: relative_error, cost, iterations, cluster sizes, ..."""
        return self._figures["fit"]

    @property
    def probes(self) -> List[Dict[str, Any]]:
        """The probes of a ``target_cos`` search (ratio, saved_percent, mean_cosine, met)."""
        return list(self._figures.get("probes", []))

    @property
    def corpus(self) -> Optional[Dict[str, Any]]:
        """The corpus's figures (files, tokens, held-out sentences, ...), when data-aware."""
        return self._figures.get("corpus")

    @property
    def seconds(self) -> Dict[str, float]:
        """Wall-clock seconds of each stage, in order (load, fit, validate, write, ...)."""
        return {p["phase"]: p["seconds"] for p in self._figures.get("seconds", [])}

    def to_dict(self) -> Dict[str, Any]:
        """The report as the command line's ``--json`` writes it."""
        return json.loads(json.dumps(self._figures))

    def __str__(self) -> str:
        return self._text.rstrip("\n")

    def __repr__(self) -> str:
        n, d = self.shape
        cos = self.mean_cosine
        return (
            f"<onnx_embcomp.Report table={self.table!r} [{n} x {d}] k={self.k} j={self.j} "
            f"bytes {self.embedding_bytes_before} -> {self.embedding_bytes_after} "
            f"({self.saved_percent:.1f}% of the numbers saved)" + (f" mean_cosine={cos:.5f}" if cos is not None else "") + ">"
        )


class SweepResult:
    """What :func:`sweep` found: every point of the grid and the Pareto front.

    ``str(result)`` is the command line's table; :meth:`to_dict` is ``sweep.json``.
    """

    def __init__(self, figures: Dict[str, Any], text: str) -> None:
        self._figures = figures
        self._text = text

    @property
    def points(self) -> List[Dict[str, Any]]:
        """Every point, in grid order: label, family, k, ratio, bytes, share, mean_cosine, ...,
        ``on_front``, and ``args``, the compress flags that write it."""
        return list(self._figures["points"])

    @property
    def front(self) -> List[Dict[str, Any]]:
        """The points on the Pareto front of bytes against mean cosine, by increasing size."""
        return sorted((p for p in self._figures["points"] if p["on_front"]), key=lambda p: p["bytes"])

    @property
    def fp32_bytes(self) -> int:
        """The table's bytes as fp32 (what the points' shares are of)."""
        return self._figures["fp32_bytes"]

    def to_dict(self) -> Dict[str, Any]:
        """The sweep as ``sweep.json`` holds it."""
        return json.loads(json.dumps(self._figures))

    def __str__(self) -> str:
        return self._text.rstrip("\n")

    def __repr__(self) -> str:
        return f"<onnx_embcomp.SweepResult {len(self._figures['points'])} points, {len(self.front)} on the front>"


def compress(
    model: ModelLike,
    output: Optional[_Path] = None,
    *,
    target_cos: Optional[float] = None,
    max_bytes: Union[int, str, None] = None,
    k: Union[int, str, None] = None,
    ratio: Optional[float] = None,
    j: Optional[int] = None,
    adaptive_j: bool = False,
    bits: Union[int, str, None] = None,
    block: Optional[int] = None,
    plain: bool = False,
    codes: Optional[int] = None,
    rotate: bool = False,
    hot_bits: Union[int, str, None] = None,
    hot_mass: Optional[float] = None,
    min_cos: Optional[float] = None,
    probes: Optional[int] = None,
    corpus: Union[_Path, Sequence[_Path], None] = None,
    tokenizer: Optional[_Path] = None,
    token_counts: Optional[_Path] = None,
    prior_strength: Optional[float] = None,
    prior_share: Optional[float] = None,
    weighting: Optional[str] = None,
    weight_floor: Optional[float] = None,
    holdout: Optional[int] = None,
    seed: int = 0,
    validate: Union[bool, str] = True,
    seq: Optional[int] = None,
    batch: Optional[int] = None,
    restarts: Optional[int] = None,
    max_iter: Optional[int] = None,
    sample_rows: Optional[int] = None,
    polish_iter: Optional[int] = None,
    embedding: Optional[str] = None,
    allow_shared: bool = False,
    external_data: Optional[str] = None,
    threads: int = 0,
    progress: Union[ProgressCallback, None, bool] = None,
) -> Report:
    """Compresses the word-embedding table of ``model``; the command line's ``onnx-embcomp IN OUT``.

    Without a goal, compresses at one setting (4 subspaces, ``ratio=0.4``, 8-bit coefficients);
    with ``target_cos`` writes the smallest model of the family that keeps that cosine, with
    ``max_bytes`` the closest that fits. Each keyword is the flag of the same name (``target_cos``
    is ``--target-cos``), so the same settings give the same bytes as the command. None means the
    command line's default.

    Args:
        model: the ONNX model: a path (str or os.PathLike; external data beside it is read), the
            bytes of an ONNX file, or an ``onnx.ModelProto`` (``onnx`` is imported only then).
        output: where to write the compressed model (atomically: complete or absent; large
            tensors as external data when the input had some, see ``external_data``). Default
            None: nothing is written and the model is returned as ``report.model`` (bytes, or an
            ``onnx.ModelProto`` when one was given).
        target_cos: the smallest model of the family (plain storage, tiers, SVD, clustering, each
            precision) whose mean cosine to the original outputs reaches this (on held-out text
            with a corpus, else on random ids); with ``k``, the highest ``ratio`` of that k, by
            bisection. Default None: no target. Raises TargetNotReached when none reaches it.
        max_bytes: the closest model of the family storing at most this for the embedding: a
            byte count (int) or a share of the fp32 table (str, e.g. ``"10%"``). Default None.
        k: number of subspaces (1: the plain SVD), or ``"auto"`` to try 1, 2, 4 and 8 at the
            same budget. Default None: 4 (with ``target_cos``, None searches the whole family).
        ratio: fraction of the embedding's numbers to remove, index maps included; sets j.
            Default None: 0.4.
        j: dimension of each subspace, instead of ``ratio``. Default None.
        adaptive_j: give each cluster its own dimension within the same budget. Default False.
        bits: precision of the stored rows: ``"float"`` (the table's type), 8, 4 or 2 bits.
            Default None: 8.
        block: values per quantization block along a row. Default None: 32.
        plain: store the table's rows themselves at ``bits``, no clustering (the baseline).
            Default False.
        codes: store the rows as product codes, one byte per sub-vector of this many values
            (4 is the command line's ``--codes`` alone), no clustering; with ``hot_bits``, the
            rows outside the frequent tier. Default None: no codes.
        rotate: with ``codes``, code the rows' coordinates in their principal axes (an f16
            basis of d x d values more). Default False.
        hot_bits: store the rows of the most frequent tokens plain at this precision (needs
            ``corpus``, ``token_counts`` or ``tokenizer``). Default None: no hot tier.
        hot_mass: share of the counted tokens those rows cover. Default None: 0.999.
        min_cos: raise TargetNotReached (and write nothing) when the mean cosine is below this.
            Default None.
        probes: probes of the ``target_cos`` bisection with ``k``. Default None: 6.
        corpus: text files or folders of them (``.gz`` too), a path or a list: rows are weighted
            by token frequency and held-out sentences validate the result. Needs ``tokenizer``.
            Default None.
        tokenizer: the model's Hugging Face tokenizer.json: counts ``corpus``, and its prior
            (Unigram scores, BPE merge ranks or WordPiece order) is blended into the counts;
            alone, the prior gives the weights, and validation draws token sequences from it.
            Default None.
        token_counts: token counts computed elsewhere (one ``id count`` pair per line), instead of
            ``corpus``. Default None.
        prior_strength: how much the tokenizer's prior weighs against the counted text (0:
            counts alone). Default None: 0.25.
        prior_share: share of the held-out sentences' tokens replaced by draws from the
            tokenizer's prior before the check (0: the held-out text as written), so that
            ``target_cos`` holds on text of another source than the corpus. Default None: 0.1.
        weighting: how counts become row weights: ``"none"``, ``"sqrt"`` or ``"linear"``.
            Default None: ``"sqrt"``.
        weight_floor: weight added to every row, as a fraction of the mean weight. Default None:
            0.1.
        holdout: held-out sentences to validate on, at most. Default None: 200.
        seed: seed of all random choices; the same seed gives the same bytes. Default 0.
        validate: validate the rewritten model: True or ``"tract"`` (built in), ``"onnxruntime"``
            (for models tract cannot run: the library of the onnxruntime package installed
            here, or ``ORT_DYLIB_PATH``), False for no validation. Default True.
        seq: sequence length fed to symbolic dimensions during validation. Default None: 16.
        batch: batch size fed to symbolic batch dimensions during validation. Default None: 1.
        restarts: independent restarts of the fit (the cheapest is kept). Default None: 4.
        max_iter: Lloyd iterations per restart at most. Default None: 3.
        sample_rows: rows sampled for the restarts. Default None: 10 per subspace dimension,
            at least 8192.
        polish_iter: Lloyd iterations on all rows after the restarts. Default None: 30.
        embedding: force the table: a Gather node name or an initializer name. Default None:
            found automatically.
        allow_shared: rewrite the lookup even if other nodes read the table (then kept); a tied LM
            head needs it only for storage other than plain=True (clustering, codes, tiers).
            Default False.
        external_data: where the output's large tensors go: ``"auto"`` (as in the input),
            ``"always"`` (in OUTPUT.data beside it), ``"never"`` (one file). Default None:
            ``"auto"``. Only with ``output``.
        threads: threads for the fits (0: all cores). Default 0.
        progress: ``progress(stage, done, total)`` called as the work goes (``done`` and
            ``total`` None for a stage without steps; raising in it stops the work). Default
            None: the command line's progress bar when stderr is a terminal, nothing otherwise;
            False: nothing.

    Returns:
        The :class:`Report` (``str(report)`` is the command line's report).

    Raises:
        ParameterError: a bad parameter or parameters that cannot go together.
        ModelError: not an ONNX model, no embedding found, a failed validation, ...
        TargetNotReached: ``target_cos`` or ``min_cos`` not met (nothing written).
        FileError: a file that cannot be read or written.
        KeyboardInterrupt: Ctrl-C; nothing is written.
    """
    data, was_proto = _model_arg(model)
    out = None if output is None else _path(output, "output")
    f = _Flags(["onnx-embcomp", "IN.onnx", "OUT.onnx"])
    f.float("--target-cos", target_cos, "target_cos")
    if max_bytes is not None:
        if isinstance(max_bytes, str):
            f.value("--max-bytes", max_bytes)
        else:
            f.int("--max-bytes", max_bytes, "max_bytes (an int or a share like '10%')")
    if k is not None:
        f.value("-k", k if isinstance(k, str) else _number(k, "k (an int or 'auto')", (int,)))
    f.float("--ratio", ratio, "ratio")
    f.int("-j", j, "j")
    f.switch("--adaptive-j", adaptive_j)
    if bits is not None:
        f.value("--bits", _precision(bits, "bits"))
    f.int("--block", block, "block")
    f.switch("--plain", plain)
    f.int("--codes", codes, "codes")
    f.switch("--rotate", rotate)
    if hot_bits is not None:
        f.value("--hot-bits", _precision(hot_bits, "hot_bits"))
    f.float("--hot-mass", hot_mass, "hot_mass")
    f.float("--min-cos", min_cos, "min_cos")
    f.int("--probes", probes, "probes")
    f.data(corpus, tokenizer, token_counts, prior_strength, prior_share, weighting, weight_floor, holdout)
    f.int("--seed", seed, "seed")
    runtime = _runtime(validate)
    f.switch("--no-validate", runtime is None)
    if runtime == "onnxruntime":
        f.value("--validate", runtime)
    f.int("--seq", seq, "seq")
    f.int("--batch", batch, "batch")
    f.int("--restarts", restarts, "restarts")
    f.int("--max-iter", max_iter, "max_iter")
    f.int("--sample-rows", sample_rows, "sample_rows")
    f.int("--polish-iter", polish_iter, "polish_iter")
    f.value("--embedding", embedding)
    f.switch("--allow-shared", allow_shared)
    f.value("--external-data", external_data)
    f.int("--threads", threads, "threads")
    figures, text, returned = _native.compress(data, out, f.argv, progress)
    if returned is not None and was_proto:
        returned = type(model).FromString(returned)
    return Report(json.loads(figures), text, returned, out)


def sweep(
    model: ModelLike,
    *,
    out: Optional[_Path] = None,
    corpus: Union[_Path, Sequence[_Path], None] = None,
    tokenizer: Optional[_Path] = None,
    token_counts: Optional[_Path] = None,
    prior_strength: Optional[float] = None,
    prior_share: Optional[float] = None,
    ks: Union[int, Sequence[int], None] = None,
    ratios: Union[float, Sequence[float], None] = None,
    bits: Union[int, str, Sequence[Union[int, str]], None] = None,
    weighting: Optional[str] = None,
    weight_floor: Optional[float] = None,
    holdout: Optional[int] = None,
    seed: int = 0,
    embedding: Optional[str] = None,
    allow_shared: bool = False,
    threads: int = 0,
    validate: str = "tract",
    progress: Union[ProgressCallback, None, bool] = None,
) -> SweepResult:
    """Evaluates a grid over the whole family (plain storage, tiers, SVD, clustering, each
    precision) and marks the Pareto front of bytes against fidelity; ``onnx-embcomp sweep``.

    Args:
        model: the ONNX model: a path, the bytes of an ONNX file, or an ``onnx.ModelProto``.
        out: folder to write sweep.json, sweep.svg, sweep.png (and token-counts.txt with a
            corpus) into, created if missing. Default None: nothing is written.
        corpus: text files or folders of them, a path or a list (needs ``tokenizer``): rows
            weighted by token frequency, fidelity measured on held-out sentences. Default None:
            on random token ids.
        tokenizer: the model's Hugging Face tokenizer.json: counts ``corpus``, its prior blended
            in; alone, the prior gives the weights and the validation's ids. Default None.
        token_counts: token counts computed elsewhere (``id count`` per line). Default None.
        prior_strength: how much the tokenizer's prior weighs against the counted text (0:
            counts alone). Default None: 0.25.
        prior_share: share of the held-out tokens drawn from the tokenizer's prior before the
            check (0: as written). Default None: 0.1.
        ks: subspace counts of the grid (1: the SVD). Default None: 1, 4, 8.
        ratios: ratios of the grid (fraction of numbers removed). Default None: 0.5, 0.8.
        bits: coefficient precisions of the grid (8, 4, 2, ``"float"``). Default None: 8, 4, 2.
        weighting: ``"none"``, ``"sqrt"`` or ``"linear"``. Default None: ``"sqrt"``.
        weight_floor: weight added to every row, as a fraction of the mean. Default None: 0.1.
        holdout: held-out sentences, at most. Default None: 200.
        seed: seed of all random choices. Default 0.
        embedding: force the table (a Gather node or initializer name). Default None.
        allow_shared: rewrite even if other nodes read the table. Default False.
        threads: points checked at once (0: all cores). Default 0.
        validate: the runtime that checks the points: ``"tract"`` or ``"onnxruntime"`` (as for
            :func:`compress`). Default ``'tract'``.
        progress: ``progress(stage, done, total)``, or None (the progress bar on a terminal) or
            False (nothing). Default None.

    Returns:
        The :class:`SweepResult`: ``points``, ``front`` (each point with the compress flags
        that write it), ``str()`` the command line's table.

    Raises:
        ParameterError, ModelError, FileError: as :func:`compress`.
    """
    data, _ = _model_arg(model)
    f = _Flags(["onnx-embcomp", "sweep"])
    f.data(corpus, tokenizer, token_counts, prior_strength, prior_share, weighting, weight_floor, holdout)
    f.value("--ks", _ids(ks, "ks", (int,)))
    f.value("--ratios", _ids(ratios, "ratios", (int, float)))
    f.value("--bits", _ids(bits, "bits", (int,)))
    f.int("--seed", seed, "seed")
    f.value("--embedding", embedding)
    f.switch("--allow-shared", allow_shared)
    f.int("--threads", threads, "threads")
    runtime = _runtime(validate)
    if runtime is None:
        raise ParameterError("invalid validate: a sweep always validates: \"tract\" or \"onnxruntime\"")
    if runtime == "onnxruntime":
        f.value("--validate", runtime)
    folder = None if out is None else _path(out, "out")
    # The model's name in the commands the table prints for the front points.
    f.argv += ["--", data if isinstance(data, str) else "MODEL.onnx"]
    figures, text = _native.sweep(data, folder, f.argv, progress)
    return SweepResult(json.loads(figures), text)


def inspect(model: ModelLike, *, embedding: Optional[str] = None) -> Dict[str, Any]:
    """A model's overview: inputs, outputs, parameters and embedding candidates, as
    ``onnx-embcomp inspect --json`` prints it.

    Args:
        model: the ONNX model: a path, the bytes of an ONNX file, or an ``onnx.ModelProto``.
        embedding: force the table (a Gather node or initializer name). Default None.

    Raises:
        ModelError: not an ONNX model, or a forced table that is not one.
        FileError: the model cannot be read.
    """
    data, _ = _model_arg(model)
    figures, _text = _native.inspect(data, embedding)
    return json.loads(figures)
