#!/usr/bin/env bash
# Assemble a CPU libtorch (TORCH_VERSION, set by the Makefile) from PyPI wheels into the per-user cache.
#
# tch's own download site is unreachable from our machines, but PyPI is not.
# The torch wheel carries headers and shared libraries; we keep only the CPU
# ones (libtorch_cuda*.so would make the folder ~4 GB and force a CUDA link)
# plus the two CUDA runtime stubs that libtorch_cpu.so links even on a CPU.
# The folder is built in a temporary directory and renamed into place, so an
# interrupted fetch never leaves a half-made libtorch behind.
set -euo pipefail

TORCH_VERSION=${TORCH_VERSION:-2.11.0}
CUDART_VERSION=13.0.96
CUPTI_VERSION=13.0.85
CACHE="${SAELAB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/saelab}"
DEST="$CACHE/libtorch-$TORCH_VERSION-cpu"

if [ -f "$DEST/build-version" ]; then
  echo "$DEST"
  exit 0
fi

mkdir -p "$CACHE"
WORK=$(mktemp -d "$CACHE/.libtorch-fetch.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

echo "fetching torch==$TORCH_VERSION wheels from PyPI (~540 MB, once per machine)..." >&2
python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$WORK/wheels" \
  "torch==$TORCH_VERSION" \
  "nvidia-cuda-runtime==$CUDART_VERSION" \
  "nvidia-cuda-cupti==$CUPTI_VERSION" >&2

OUT="$WORK/libtorch"
mkdir -p "$OUT/lib"
torch_wheel=$(ls "$WORK"/wheels/torch-*.whl)
python3 - "$torch_wheel" "$OUT" <<'PY'
import sys, zipfile, os
wheel, out = sys.argv[1], sys.argv[2]
keep_libs = {"libtorch_cpu.so", "libtorch.so", "libc10.so", "libgomp.so.1", "libshm.so"}
with zipfile.ZipFile(wheel) as z:
    for info in z.infolist():
        name = info.filename
        if name.startswith(("torch/include/", "torch/share/")):
            target = os.path.join(out, name[len("torch/"):])
        elif name.startswith("torch/lib/") and os.path.basename(name) in keep_libs:
            target = os.path.join(out, "lib", os.path.basename(name))
        else:
            continue
        if name.endswith("/"):
            continue
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with z.open(info) as src, open(target, "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
PY
for wheel in "$WORK"/wheels/nvidia_cuda_runtime-*.whl "$WORK"/wheels/nvidia_cuda_cupti-*.whl; do
  python3 - "$wheel" "$OUT/lib" <<'PY'
import sys, zipfile, os
wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    for info in z.infolist():
        base = os.path.basename(info.filename)
        if base in ("libcudart.so.13", "libcupti.so.13"):
            with z.open(info) as src, open(os.path.join(out, base), "wb") as dst:
                dst.write(src.read())
PY
done
for lib in libtorch_cpu.so libtorch.so libc10.so libgomp.so.1 libshm.so libcudart.so.13 libcupti.so.13; do
  [ -f "$OUT/lib/$lib" ] || { echo "fetch-libtorch: $lib missing from the wheels" >&2; exit 1; }
done
echo "$TORCH_VERSION" > "$OUT/build-version"
rm -rf "$DEST"
mv "$OUT" "$DEST"
echo "$DEST"
