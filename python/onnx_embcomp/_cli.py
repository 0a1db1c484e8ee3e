"""The ``onnx-embcomp`` console script: the command line of the Rust crate, unchanged (same flags,
same output, same exit codes: 0, 1 when a quality target is missed, 2 on errors, 130 when
interrupted)."""

from __future__ import annotations

import sys

from . import _native


def main() -> None:
    sys.exit(_native.main(["onnx-embcomp", *sys.argv[1:]]))


if __name__ == "__main__":
    main()
