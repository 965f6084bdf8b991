#!/usr/bin/env bash
# Create the Python that `make bench` compares saelab with: a venv in the
# per-user cache holding Hugging Face transformers and PyTorch, pinned to the
# versions the model's reference fixture was made with (tests/fixtures/model/).
# The same venv holds Jupyter's client side for the kernel's tests
# (tests/kernel.rs): jupyter_client, jupyter_kernel_test and nbclient.
#
# Opt-in (`make peer-venv`): PyPI's torch wheel brings the CUDA libraries
# along (several GB), which the CPU benchmark does not need. The venv is
# marked complete only once every package is in, so an interrupted install is
# started over rather than used half-made.
set -euo pipefail

CACHE="${SAELAB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/saelab}"
DEST="$CACHE/peer-venv"
MARKER="$DEST/saelab-peer-complete"
JUPYTER_MARKER="$DEST/saelab-jupyter-complete"
JUPYTER_PACKAGES=(
  "jupyter_client==8.10.0"
  "jupyter_kernel_test==0.7.0"
  "nbclient==0.11.0"
  "nbformat==5.11.1"
)
PACKAGES=(
  "torch==${TORCH_VERSION:-2.11.0}"
  "transformers==5.24.0"
  "gguf==0.19.0"
  "accelerate==1.15.0"
  "numpy==2.4.6"
  "safetensors==0.8.0"
)

# A venv made before the kernel existed gets the Jupyter packages added.
install_jupyter() {
  if [ ! -f "$JUPYTER_MARKER" ]; then
    echo "adding ${JUPYTER_PACKAGES[*]} to $DEST..." >&2
    "$DEST/bin/python" -m pip install --quiet "${JUPYTER_PACKAGES[@]}" >&2
    "$DEST/bin/python" -c 'import jupyter_client, jupyter_kernel_test, nbclient, nbformat' >&2
    touch "$JUPYTER_MARKER"
  fi
}

if [ -f "$MARKER" ]; then
  install_jupyter
  echo "$DEST/bin/python"
  exit 0
fi

rm -rf "$DEST"
mkdir -p "$CACHE"
echo "creating $DEST with ${PACKAGES[*]} from PyPI (several GB with torch's CUDA wheels)..." >&2
python3 -m venv "$DEST"
"$DEST/bin/python" -m pip install --quiet --upgrade pip >&2
"$DEST/bin/python" -m pip install --quiet --only-binary=:all: "${PACKAGES[@]}" >&2
"$DEST/bin/python" -c 'import torch, transformers, gguf, numpy, safetensors' >&2
touch "$MARKER"
install_jupyter
echo "$DEST/bin/python"
