"""``python -m onnx_embcomp``: the command line, as the ``onnx-embcomp`` console script."""

from ._cli import main

main()
