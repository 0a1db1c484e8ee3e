"""The exceptions of onnx_embcomp: each carries the command line's one-line message."""

from __future__ import annotations

__all__ = ["Error", "ParameterError", "ModelError", "TargetNotReached", "FileError"]


class Error(Exception):
    """Base class of every error onnx_embcomp raises (the CLI's exit codes 1 and 2)."""


class ParameterError(Error, ValueError):
    """A bad parameter, or parameters that cannot go together (a usage error: the CLI's exit 2)."""


class ModelError(Error):
    """The model cannot be compressed: not ONNX, no word-embedding lookup found, a table that
    cannot be read, a rewritten model that fails validation, ... (the CLI's exit 2)."""


class TargetNotReached(Error):
    """The quality target (``target_cos``, ``min_cos``) was not met, so nothing was written
    (the CLI's exit 1)."""


class FileError(Error, OSError):
    """A file that cannot be read or written: the model, a corpus, the tokenizer, the output
    (the CLI's exit 2)."""
