#!/usr/bin/env bash
# SAE training throughput, saelab against plain PyTorch on the same machine
# and thread count. The two sides alternate (saelab, PyTorch, saelab, ...)
# so that load from other jobs falls on both, and the summary compares
# medians over the repetitions.
#
#   benches/sae_throughput.sh [repetitions]      (default 3)
#
# Environment: SAELAB (./target/release/saelab), PYTHON (python3; needs
# torch for the PyTorch side, which is skipped otherwise), THREADS (nproc),
# STEPS (timed steps per loop, 6), WIDTH (one n_features instead of both),
# DEVICE (cpu; cuda for a GPU) and PRECISIONS (the precisions to run, each
# side by side with PyTorch; "f32 bf16" by default; PRECISION=x runs one).
# bf16 on the PyTorch side is `torch.autocast("cpu"/"cuda", torch.bfloat16)`
# around the forward pass, f32 weights and Adam, as saelab's trainer keeps.
set -euo pipefail
cd "$(dirname "$0")/.."
SAELAB=${SAELAB:-./target/release/saelab}
PYTHON=${PYTHON:-python3}
THREADS=${THREADS:-$(nproc)}
STEPS=${STEPS:-6}
REPS=${1:-3}
rows=$(mktemp -d)
trap 'rm -rf "$rows"' EXIT

PRECISIONS=${PRECISIONS:-${PRECISION:-f32 bf16}}
saelab_args=(--set "steps=$STEPS" --set "device=${DEVICE:-cpu}")
pytorch_args=(--threads "$THREADS" --steps "$STEPS" --device "${DEVICE:-cpu}")
if [ -n "${WIDTH:-}" ]; then
    saelab_args+=(--set "width=$WIDTH")
    pytorch_args+=(--width "$WIDTH")
fi
peer=1
if ! "$PYTHON" -c 'import torch' 2>/dev/null; then
    echo "PyTorch side skipped: $PYTHON has no torch (PYTHON=... to name one that has)"
    peer=
fi

for rep in $(seq 1 "$REPS"); do
    for precision in $PRECISIONS; do
        echo "== repetition $rep of $REPS, $precision: saelab"
        OMP_NUM_THREADS=$THREADS "$SAELAB" run benches/sae_throughput.rhai \
            "${saelab_args[@]}" --set "precision=$precision" --set "csv=$rows/saelab-$precision-$rep.csv"
        if [ -n "$peer" ]; then
            echo "== repetition $rep of $REPS, $precision: PyTorch"
            OMP_NUM_THREADS=$THREADS "$PYTHON" benches/sae_throughput.py \
                "${pytorch_args[@]}" --precision "$precision" --csv "$rows/pytorch-$precision-$rep.csv"
        fi
    done
done
"$PYTHON" benches/sae_throughput.py --summarize "$rows"/*.csv
