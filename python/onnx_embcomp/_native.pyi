"""The Rust extension module of onnx_embcomp (private: use the functions of onnx_embcomp)."""

from typing import Any, Callable, List, Optional, Tuple, Union

_Progress = Union[Callable[[str, Optional[int], Optional[int]], Any], None, bool]

def main(argv: List[str]) -> int:
    """Runs the command line ``argv`` (the program's name first); returns the exit code."""

def compress(
    model: Union[str, bytes], output: Optional[str], argv: List[str], progress: _Progress = None
) -> Tuple[str, str, Optional[bytes]]:
    """The report as JSON, its text, and the model's bytes when ``output`` is None."""

def sweep(model: Union[str, bytes], out: Optional[str], argv: List[str], progress: _Progress = None) -> Tuple[str, str]:
    """The sweep as JSON (sweep.json) and the command line's table."""

def inspect(model: Union[str, bytes], embedding: Optional[str] = None) -> Tuple[str, str]:
    """The overview as JSON (``inspect --json``) and as text."""
