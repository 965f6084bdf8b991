#!/usr/bin/env bash
# Fault trials for long jobs (issue 14; `make faults`): SAE training with
# checkpoints, a sweep, a harvest (shards of 2,000 rows) and the analysis
# records pass; kill -9 at random
# moments, disk full (RLIMIT_FSIZE with SIGXFSZ ignored, so writes fail with
# EFBIG), and an output folder that cannot be written. After each fault a
# rerun must complete and equal an uninterrupted run bit for bit (the
# saved SAE's weights; the sweep CSV without its timing column; the
# harvest's shards; the records' tensors and metadata).
# Usage: tests/faults/faults.sh SAELAB [TRIALS]
set -u
SAELAB=$(realpath "$1")
TRIALS=${2:-20}
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export OMP_NUM_THREADS=1

run() { # job out [--set name=value ...]
    local job=$1 out=$2
    shift 2
    "$SAELAB" run "$HERE/$job.rhai" --set "out=$out" "$@" >/dev/null 2>"$out.stderr"
}

result() { # job out → what must match
    case $1 in
        train) sha256sum < "$2/sae/sae_weights.safetensors" ;;
        harvest) cat "$2"/acts/shard-*.npy | sha256sum ;;
        records) cat "$2"/records/records.safetensors "$2"/records/records.json | sha256sum ;;
        sweep) python3 - "$2/sweep.csv" <<'PY'
import csv, sys, hashlib
rows = list(csv.DictReader(open(sys.argv[1])))
keep = sorted(tuple((k, v) for k, v in r.items() if k != "seconds") for r in rows)
print(len(rows), hashlib.sha256(repr(keep).encode()).hexdigest())
PY
        ;;
    esac
}

# What a disk-full run left: the sweep's CSV must hold whole rows, each one
# of the uninterrupted run's; the records must be complete or absent.
left_by_disk_full() { # job out reference-out
    case $1 in
        sweep) python3 - "$2/sweep.csv" "$3/sweep.csv" <<'PY'
import csv, os, sys
if not os.path.exists(sys.argv[1]):
    print("no CSV yet"); sys.exit()
def rows(path):
    return [tuple((k, v) for k, v in r.items() if k != "seconds") for r in csv.DictReader(open(path))]
part, whole = rows(sys.argv[1]), rows(sys.argv[2])
whole_rows = all(k is not None and v not in (None, "") for r in part for k, v in r)
valid = whole_rows and set(part) <= set(whole)
print(f"CSV {'valid' if valid else 'DAMAGED'} with {len(part)} of {len(whole)} rows")
PY
        ;;
        records) if [ -f "$2/records/records.json" ]; then
                [ "$(result records "$2")" = "$(result records "$3")" ] && echo "records complete" || echo "records DAMAGED"
            else
                echo "no records.json (nothing complete-looking left)"
            fi ;;
        *) echo "" ;;
    esac
}

for job in ${JOBS:-train sweep harvest records}; do
    mkdir -p "$WORK/$job" && out="$WORK/$job/straight"
    start=$(date +%s.%N)
    run $job "$out" || { echo "$job: the uninterrupted run failed"; cat "$out.stderr"; exit 1; }
    seconds=$(echo "$(date +%s.%N) - $start" | bc)
    reference=$(result $job "$out")

    same=0 killed=0
    for trial in $(seq 1 "$TRIALS"); do
        out="$WORK/$job/kill-$trial"
        "$SAELAB" run "$HERE/$job.rhai" --set "out=$out" >/dev/null 2>&1 &
        pid=$!
        sleep "$(python3 -c "import random; random.seed($trial); print(round(random.uniform(0.2, 0.9 * $seconds), 2))")"
        kill -9 $pid 2>/dev/null && killed=$((killed + 1))
        wait $pid 2>/dev/null
        run $job "$out" && [ "$(result $job "$out")" = "$reference" ] && same=$((same + 1))
    done
    echo "$job: kill -9 at a random moment in $TRIALS trials ($killed killed mid-run), rerun equal to an uninterrupted run bit for bit: $same/$TRIALS"

    # A limit (in KB) the job's files outgrow: checkpoints ~20 KB, shards
    # ~2 MB, records ~3.5 MB. The sweep's CSV (~1 KB for six rows) is
    # rewritten whole after each run, so the wide grid's nine rows outgrow
    # 1 KB at the seventh: that run is lost, the six before it kept.
    out="$WORK/$job/full" && limit=$(case $job in train) echo 16 ;; sweep) echo 1 ;; records) echo 1024 ;; *) echo 64 ;; esac)
    wide=() full_reference=$reference reference_out="$WORK/$job/straight"
    if [ $job = sweep ]; then
        wide=(--set wide=true) reference_out="$WORK/$job/wide"
        run $job "$reference_out" "${wide[@]}" || { echo "$job: the wide run failed"; exit 1; }
        full_reference=$(result $job "$reference_out")
    fi
    ( ulimit -f $limit; trap '' XFSZ; run $job "$out" "${wide[@]}" )
    status=$?
    why=$(grep -m1 -o "File too large\|No space left" "$out.stderr")
    left=$(left_by_disk_full $job "$out" "$reference_out")
    message=$(grep -m1 -o "cannot write [^:]*\|[^ ]*: File too large" "$out.stderr" | head -n1 | head -c 120)
    run $job "$out" "${wide[@]}" && [ "$(result $job "$out")" = "$full_reference" ] && rerun=equal || rerun=DIFFERENT
    echo "$job: disk full ($limit KB file-size limit): exit $status, error: ${why:-none} (${message:-no file named}); ${left:+left: $left; }rerun with space: $rerun"

    # /sys refuses new files even to root (a chmod'ed folder would not).
    start=$(date +%s.%N)
    "$SAELAB" run "$HERE/$job.rhai" --set "out=/sys/saelab-fault-trial" >/dev/null 2>"$WORK/$job/ro.stderr"
    status=$?
    took=$(echo "$(date +%s.%N) - $start" | bc)
    echo "$job: unwritable output folder: exit $status after ${took} s: $(head -c 160 "$WORK/$job/ro.stderr")"
done
