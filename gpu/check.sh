#!/usr/bin/env bash
# saelab on a CUDA machine, in one go: the environment, agreement with the
# CPU, SAE training and model throughput against PyTorch/transformers, and
# CE loss recovered — written to OUT/gpu-check.md (a Markdown report) with
# every step's log in OUT/logs/.
#
#   gpu/check.sh [OUT]                                   (default runs/gpu-check)
#   DEVICE=cpu QUICK=1 PYTHON=... gpu/check.sh /tmp/gpucheck   (a dry run on a CPU)
#
# Environment:
#   SAELAB        the binary (./saelab, else ./target/release/saelab)
#   PYTHON        a Python with torch and transformers (/opt/torch/.venv/bin/python3, else python3)
#   DEVICE        cuda (default) or cpu
#   QUICK=1       small sizes, for a dry run on a CPU (a few minutes on 2 cores)
#   REPS          repetitions of the interleaved SAE benchmark (2)
#   BUDGET        seconds for all steps (330); a step is cut to what is left,
#                 and one that would start with under 15 s left is skipped
#   BUNDLE        a folder whose wheels/*.whl are made importable when
#                 `import gguf, accelerate` fails (the root of a bundle made by
#                 gpu/make-bundle.sh, else gpu/bundle): transformers reads a
#                 GGUF file only with both (and accelerate needs psutil)
#   SAELAB_CACHE  where the model and the demo corpus are (./cache when it holds
#                 the model, as in a bundle; else ~/.cache/saelab)
#
# saelab's CUDA build (`make build-cuda`, `make gpu-bundle`) was linked
# against torch 2.11's libtorch; it runs here against $PYTHON's torch (same
# release): OUT/bin/saelab puts that torch's lib folder on LD_LIBRARY_PATH.
# The binary loads libtorch_cuda.so by itself (it is in its DT_NEEDED), and
# section a reports whether it did. PRELOAD_CUDA=1 also preloads that library,
# which lets a binary linked against a CPU libtorch use CUDA (CUDA registers
# itself from the library's static initialisers) — but then the check no
# longer shows that the build loads CUDA on its own. Python processes get
# neither variable: torch finds its own libraries.
#
# Every step runs under a time limit and on its own: a failure is recorded
# (FAIL and the last lines of its log in the report) and the next step runs.
# The sections run cheapest first (a, b, e, d, c), so that if time runs out
# what is lost is the SAE benchmark's last repetition; the report keeps a-e.
set -uo pipefail

# Paths given by the caller are taken from where it stands; defaults from the repository root.
out=${1:-$(dirname "$0")/../runs/gpu-check}
mkdir -p "$out"/logs "$out"/status "$out"/sae "$out"/bin
out=$(cd "$out" && pwd)
[ -n "${SAELAB:-}" ] && SAELAB=$(readlink -f "$SAELAB")
[ -n "${BUNDLE:-}" ] && BUNDLE=$(readlink -f "$BUNDLE")
cd "$(dirname "$0")/.."
rm -f "$out"/status/* "$out"/sae/*.csv "$out"/model.json

if [ -z "${SAELAB:-}" ]; then
    if [ -x ./saelab ]; then SAELAB=$PWD/saelab; else SAELAB=$PWD/target/release/saelab; fi
fi
[ -x "$SAELAB" ] || echo "warning: no saelab binary at $SAELAB (SAELAB=...): its steps will fail"
if [ -z "${PYTHON:-}" ]; then
    if [ -x /opt/torch/.venv/bin/python3 ]; then PYTHON=/opt/torch/.venv/bin/python3; else PYTHON=python3; fi
fi
DEVICE=${DEVICE:-cuda}
QUICK=${QUICK:-0}
REPS=${REPS:-2}
BUDGET=${BUDGET:-330}
# A bundle from gpu/make-bundle.sh is this folder itself: ./wheels, ./cache.
if [ -z "${BUNDLE:-}" ]; then
    if [ -d wheels ]; then BUNDLE=$PWD; else BUNDLE=$PWD/gpu/bundle; fi
fi
THREADS=${THREADS:-$(nproc)}
if [ -z "${SAELAB_CACHE:-}" ] && [ -f cache/models/SmolLM2-135M-Instruct.Q4_1.gguf ]; then
    SAELAB_CACHE=$PWD/cache
fi
export SAELAB_CACHE=${SAELAB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/saelab}
# As `make bench`: idle OpenMP threads sleep instead of spinning, on both sides.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
export DEVICE QUICK SAELAB PYTHON

if [ "$QUICK" = 1 ]; then
    sae_widths=4096 sae_bf16_width=4096 sae_steps=2 sae_batch=512 sae_peak_width=4096
    model_args=(--tokens 512 --reps 2 --new-tokens 8 --batch 4)
    ce_args=(tokens=2048 n_features=512 steps=40 batch_size=256 ce_tokens=128 harvest_batch=8)
else
    sae_widths=16384,65536 sae_bf16_width=65536 sae_steps=60 sae_batch=4096 sae_peak_width=65536
    # A quarter of a million rows: four shards, so that the pipeline's start
    # and the last shard's write (which nothing overlaps) weigh as in a real harvest.
    model_args=(--tokens 262144 --reps 3 --new-tokens 64 --batch 64)
    ce_args=(tokens=32768 n_features=4096 steps=300 batch_size=1024 ce_tokens=1024 harvest_batch=64)
fi

# run_step NAME LIMIT_SECONDS COMMAND...: the command's output to
# logs/NAME.log, "exit-code seconds limit" to status/NAME.
run_step() {
    local name=$1 limit=$2
    shift 2
    local left=$((BUDGET - SECONDS))
    if ((left < 15)); then
        echo "skipped: the time budget (BUDGET=$BUDGET s) is spent" >"$out/logs/$name.log"
        echo "skip" >"$out/status/$name"
        echo "== $name: skipped (time budget spent)"
        return 1
    fi
    ((limit > left)) && limit=$left
    local start=$SECONDS rc
    echo "== $name (limit ${limit} s)"
    timeout --kill-after=10 "$limit" "$@" >"$out/logs/$name.log" 2>&1
    rc=$?
    echo "$rc $((SECONDS - start)) $limit" >"$out/status/$name"
    if ((rc != 0)); then
        echo "   failed (exit $rc), last lines of logs/$name.log:"
        tail -n 5 "$out/logs/$name.log" | sed 's/^/   | /'
    fi
    return $rc
}

# --- set-up: saelab against this machine's torch, gguf for transformers -------
torch_lib=$("$PYTHON" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))' 2>/dev/null)
{
    echo '#!/bin/sh'
    if [ -n "$torch_lib" ]; then
        echo "export LD_LIBRARY_PATH=\"$torch_lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}\""
        if [ -e "$torch_lib/libtorch_cuda.so" ] && [ "${PRELOAD_CUDA:-0}" = 1 ]; then
            echo "export LD_PRELOAD=\"$torch_lib/libtorch_cuda.so\${LD_PRELOAD:+:\$LD_PRELOAD}\""
        fi
    fi
    echo "exec \"$SAELAB\" \"\$@\""
} >"$out/bin/saelab"
chmod +x "$out/bin/saelab"
saelab="$out/bin/saelab"
echo "saelab: $SAELAB (through $saelab); Python: $PYTHON; torch libraries: ${torch_lib:-none found}"

# transformers reads a GGUF file with the gguf package and, since 5.x, only
# with accelerate installed; a machine without them gets them from the bundle.
peer_modules='import gguf, accelerate'
if ! "$PYTHON" -c "$peer_modules" 2>/dev/null; then
    wheels=("$BUNDLE"/wheels/*.whl)
    if [ -e "${wheels[0]}" ]; then
        pylib="$out/pylib"
        rm -rf "$pylib"
        echo "peer: installing ${#wheels[@]} wheel(s) from $BUNDLE/wheels into $pylib"
        # pip may be absent from the venv; a wheel is a zip archive, so unpacking
        # it onto the path does for pure-Python (and abi3) packages.
        "$PYTHON" -m pip install --quiet --no-index --no-deps --target "$pylib" "${wheels[@]}" \
            >"$out/logs/wheels.log" 2>&1 ||
            "$PYTHON" -c 'import sys, zipfile; [zipfile.ZipFile(w).extractall(sys.argv[1]) for w in sys.argv[2:]]' \
                "$pylib" "${wheels[@]}" >>"$out/logs/wheels.log" 2>&1
        export PYTHONPATH="$pylib${PYTHONPATH:+:$PYTHONPATH}"
    fi
    "$PYTHON" -c "$peer_modules" >>"$out/logs/wheels.log" 2>&1 ||
        echo "peer: '$peer_modules' fails (logs/wheels.log): transformers cannot load the GGUF"
fi

# --- a. environment ---------------------------------------------------------------
echo "# section a: environment"
if command -v nvidia-smi >/dev/null; then
    run_step nvidia-smi 30 nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
fi
run_step torch 60 "$PYTHON" -c '
import importlib.metadata, os, platform, torch
gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
print("torch=" + torch.__version__)
print("cuda=" + str(torch.version.cuda))
print("cuda_available=" + str(torch.cuda.is_available()).lower())
print("device=" + gpu)
print("lib=" + os.path.join(os.path.dirname(torch.__file__), "lib"))
print("python=" + platform.python_version())
for name in ["transformers", "gguf", "accelerate"]:
    try:
        __import__(name)
        print(name + "=" + importlib.metadata.version(name))
    except Exception as err:
        print(name + "=missing (" + type(err).__name__ + ")")
'
run_step version 30 "$saelab" --version
run_step environment 60 "$saelab" run gpu/environment.rhai

# --- b. agreement with the CPU ------------------------------------------------------
echo "# section b: agreement of $DEVICE with cpu"
run_step agreement 120 "$saelab" run gpu/agreement.rhai --set "device=$DEVICE"

# --- e. CE loss recovered -------------------------------------------------------------------
echo "# section e: CE loss recovered"
rm -rf "$out/ce"
ce_sets=()
for kv in "${ce_args[@]}"; do ce_sets+=(--set "$kv"); done
run_step ce_loss 180 "$saelab" run gpu/ce_loss.rhai --set "out=$out/ce" --set "device=$DEVICE" "${ce_sets[@]}"

# --- d. model throughput ----------------------------------------------------------------
echo "# section d: model throughput"
run_step model 240 env SAELAB_PROFILE=harvest "$PYTHON" benches/model_throughput.py --saelab "$saelab" --device "$DEVICE" \
    --threads "$THREADS" "${model_args[@]}" --json "$out/model.json"

# --- c. SAE training throughput -------------------------------------------------------
echo "# section c: SAE training throughput"
sae_common=(--set "device=$DEVICE" --set "steps=$sae_steps" --set "batch=$sae_batch" --set "peak_width=$sae_peak_width")
py_common=(--device "$DEVICE" --steps "$sae_steps" --batch "$sae_batch" --threads "$THREADS")
py_widths=()
for w in ${sae_widths//,/ }; do py_widths+=(--width "$w"); done
for rep in $(seq 1 "$REPS"); do
    run_step "sae-saelab-f32-$rep" 150 env OMP_NUM_THREADS="$THREADS" "$saelab" run benches/sae_throughput.rhai \
        "${sae_common[@]}" --set precision=f32 --set "widths=$sae_widths" --set "csv=$out/sae/saelab-f32-$rep.csv"
    run_step "sae-pytorch-f32-$rep" 150 env OMP_NUM_THREADS="$THREADS" "$PYTHON" benches/sae_throughput.py \
        "${py_common[@]}" --precision f32 "${py_widths[@]}" --csv "$out/sae/pytorch-f32-$rep.csv"
    run_step "sae-saelab-bf16-$rep" 120 env OMP_NUM_THREADS="$THREADS" "$saelab" run benches/sae_throughput.rhai \
        "${sae_common[@]}" --set precision=bf16 --set "width=$sae_bf16_width" --set "csv=$out/sae/saelab-bf16-$rep.csv"
    run_step "sae-pytorch-bf16-$rep" 120 env OMP_NUM_THREADS="$THREADS" "$PYTHON" benches/sae_throughput.py \
        "${py_common[@]}" --precision bf16 --width "$sae_bf16_width" --csv "$out/sae/pytorch-bf16-$rep.csv"
done

# --- the report ---------------------------------------------------------------------------
if ! "$PYTHON" gpu/report.py "$out" >"$out/gpu-check.md" 2>"$out/logs/report.log"; then
    # Without the report script, at least the steps' outcomes.
    {
        echo "# saelab GPU check (report.py failed: see logs/report.log)"
        echo
        echo "| step | exit, seconds, limit |"
        echo "|---|---|"
        for f in "$out"/status/*; do echo "| $(basename "$f") | $(cat "$f") |"; done
    } >"$out/gpu-check.md"
fi
echo "report: $out/gpu-check.md ($SECONDS s)"
