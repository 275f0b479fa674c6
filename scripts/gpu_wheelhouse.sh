#!/usr/bin/env bash
# Prepares what `cirbench doctor --gpu` needs on a GPU machine that has its own torch and
# transformers (seen: torch 2.11 + CUDA 13, transformers 5.17, Python 3.12) but no network and no
# open_clip: everything goes into .gpu/ (ignored by git), to be carried along and installed there
# with `pip install --no-index --no-deps --target` (README, "GPU machines").
#
#   .gpu/wheels/     the cirbench wheel, and py3.12 manylinux wheels of what such machines lack
#                    (open_clip_torch, ftfy, wcwidth), at the versions this checkout's venv tests
#   .gpu/fashioniq/  the FashionIQ annotation files (captions/, image_splits/) for the throughput run
#
# Usage: scripts/gpu_wheelhouse.sh [FASHIONIQ_DIR]   (default: ../shared/data/fashioniq)
# Set WITH_FAISS=1 to add faiss-cpu (only FACap pairing uses it; about 30 MB of the 64 MB a call carries).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
FASHIONIQ=${1:-../shared/data/fashioniq}

version() { "$PY" -c "import importlib.metadata as m; print(m.version('$1'))"; }
packages=("open_clip_torch==$(version open_clip_torch)" "ftfy==$(version ftfy)" "wcwidth==$(version wcwidth)")
if [[ "${WITH_FAISS:-0}" == 1 ]]; then packages+=("faiss-cpu==$(version faiss-cpu)"); fi

rm -rf .gpu && mkdir -p .gpu/wheels .gpu/fashioniq
"$PY" -m pip wheel -q --no-deps -w .gpu/wheels .
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .gpu/wheels "${packages[@]}"
cp -r "$FASHIONIQ/captions" "$FASHIONIQ/image_splits" .gpu/fashioniq/
ls -1 .gpu/wheels
du -sh .gpu
