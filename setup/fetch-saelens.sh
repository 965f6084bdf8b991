#!/usr/bin/env bash
# Create the Python with SAELens itself, which tests/saelens.rs uses to open
# SAEs saved by saelab (every architecture) and check that SAELens encodes
# and decodes them as saelab does. A venv of its own in the per-user cache,
# so that SAELens's dependencies (transformer-lens, datasets, ...) cannot
# move the pinned packages of the peer venv; it sees the peer venv's torch
# through a .pth file instead of downloading torch again.
set -euo pipefail

CACHE="${SAELAB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/saelab}"
PEER="$CACHE/peer-venv"
DEST="$CACHE/saelens-venv"
MARKER="$DEST/saelab-saelens-complete"
SAELENS="sae-lens==6.54.12"

if [ -f "$MARKER" ]; then
  echo "$DEST/bin/python"
  exit 0
fi
if [ ! -x "$PEER/bin/python" ]; then
  echo "the peer venv ($PEER) is missing: run setup/fetch-peer-python.sh first" >&2
  exit 1
fi

rm -rf "$DEST"
echo "creating $DEST with $SAELENS from PyPI (about 700 MB of dependencies)..." >&2
"$PEER/bin/python" -m venv "$DEST"
peer_site=$("$PEER/bin/python" -c 'import site; print(site.getsitepackages()[0])')
own_site=$("$DEST/bin/python" -c 'import site; print(site.getsitepackages()[0])')
echo "$peer_site" > "$own_site/saelab-peer.pth"
"$DEST/bin/python" -m pip install --quiet --upgrade pip >&2
"$DEST/bin/python" -m pip install --quiet "$SAELENS" >&2
"$DEST/bin/python" -c 'import torch, sae_lens' >&2
touch "$MARKER"
echo "$DEST/bin/python"
