#!/usr/bin/env bash
# The scaling-law study (scripts/scaling_laws.rhai) at 100× the CPU study's
# budgets, on a CUDA machine: the same script, the same rules (one pass over
# the data, a learning rate tuned per point, widths widened until bracketed,
# the recycled-data and seed checks), bigger budgets and batches.
#
#   gpu/scaling.sh [OUT]                  (default runs/scaling-gpu; SUMMARY.md there)
#
# Environment (defaults in brackets):
#   SAELAB        the binary (./saelab, else ./target/release/saelab)
#   PYTHON        a Python whose torch's libraries saelab runs against
#                 (/opt/torch/.venv/bin/python3, else python3)
#   SAELAB_CACHE  the model and corpus (./cache when it holds the model, as in a bundle)
#   C_MIN C_MAX   budgets in FLOPs [1e13, 1.5e14] (the CPU study: 1e11, 1.5e12)
#   TOKENS        training tokens harvested [6000000: the harvest stops at the
#                 end of the demo corpus's training split, about 5.3M tokens;
#                 budgets whose optimum needs more are reported as not
#                 bracketed, with the tokens they need]
#   BATCH [4096]  MIN_WIDTH [256]  MAX_WIDTH [16384]  RECYCLE [500000]  SEEDS [3]
#   EXTRA         more `--set k=v` arguments for the script
#
# A killed run resumes: rerun the same command (harvest and sweep both resume).
set -euo pipefail
out=${1:-$(dirname "$0")/../runs/scaling-gpu}
mkdir -p "$out"
out=$(cd "$out" && pwd)
[ -n "${SAELAB:-}" ] && SAELAB=$(readlink -f "$SAELAB")
cd "$(dirname "$0")/.."
if [ -z "${SAELAB:-}" ]; then
    if [ -x ./saelab ]; then SAELAB=$PWD/saelab; else SAELAB=$PWD/target/release/saelab; fi
fi
if [ -z "${PYTHON:-}" ]; then
    if [ -x /opt/torch/.venv/bin/python3 ]; then PYTHON=/opt/torch/.venv/bin/python3; else PYTHON=python3; fi
fi
if [ -z "${SAELAB_CACHE:-}" ] && [ -f cache/models/SmolLM2-135M-Instruct.Q4_1.gguf ]; then
    export SAELAB_CACHE=$PWD/cache
fi
# The CUDA build was linked against torch 2.11's libtorch: run it against this machine's.
torch_lib=$("$PYTHON" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))' 2>/dev/null || true)
[ -n "$torch_lib" ] && export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}

# shellcheck disable=SC2086  # EXTRA is a list of words
"$SAELAB" run scripts/scaling_laws.rhai \
    --set out="$out" \
    --set c_min="${C_MIN:-1e13}" --set c_max="${C_MAX:-1.5e14}" \
    --set batch="${BATCH:-4096}" \
    --set min_width="${MIN_WIDTH:-256}" --set max_width="${MAX_WIDTH:-16384}" \
    --set train_tokens="${TOKENS:-6000000}" --set recycle_tokens="${RECYCLE:-500000}" \
    --set seeds="${SEEDS:-3}" ${EXTRA:-} 2>&1 | tee "$out/study.log"
