#!/usr/bin/env bash
# Fault trials for long jobs (issue 14; `make faults`): SAE training with
# checkpoints, a sweep and a harvest (shards of 2,000 rows); kill -9 at random
# moments, disk full (RLIMIT_FSIZE with SIGXFSZ ignored, so writes fail with
# EFBIG), and an output folder that cannot be written. After each fault a
# rerun must complete and equal an uninterrupted run bit for bit (the
# saved SAE's weights; the sweep CSV without its timing column; the
# harvest's shards).
# Usage: tests/faults/faults.sh SAELAB [TRIALS]
set -u
SAELAB=$(realpath "$1")
TRIALS=${2:-20}
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export OMP_NUM_THREADS=1

run() { # job out
    "$SAELAB" run "$HERE/$1.rhai" --set "out=$2" >/dev/null 2>"$2.stderr"
}

result() { # job out → what must match
    case $1 in
        train) sha256sum < "$2/sae/sae_weights.safetensors" ;;
        harvest) cat "$2"/acts/shard-*.npy | sha256sum ;;
        sweep) python3 - "$2/sweep.csv" <<'PY'
import csv, sys, hashlib
rows = list(csv.DictReader(open(sys.argv[1])))
keep = sorted(tuple((k, v) for k, v in r.items() if k != "seconds") for r in rows)
print(len(rows), hashlib.sha256(repr(keep).encode()).hexdigest())
PY
        ;;
    esac
}

for job in ${JOBS:-train sweep harvest}; do
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

    # A limit (in KB) the job's files outgrow: checkpoints ~20 KB, the CSV ~1 KB (under this limit: not yet a disk-full case), shards ~2 MB.
    out="$WORK/$job/full" && limit=$(case $job in train) echo 16 ;; sweep) echo 1 ;; *) echo 64 ;; esac)
    ( ulimit -f $limit; trap '' XFSZ; run $job "$out" )
    status=$?
    why=$(grep -m1 -o "File too large\|No space left" "$out.stderr")
    run $job "$out" && [ "$(result $job "$out")" = "$reference" ] && rerun=equal || rerun=DIFFERENT
    echo "$job: disk full ($limit KB file-size limit): exit $status, error: ${why:-none}; rerun with space: $rerun"

    # /sys refuses new files even to root (a chmod'ed folder would not).
    start=$(date +%s.%N)
    "$SAELAB" run "$HERE/$job.rhai" --set "out=/sys/saelab-fault-trial" >/dev/null 2>"$WORK/$job/ro.stderr"
    status=$?
    took=$(echo "$(date +%s.%N) - $start" | bc)
    echo "$job: unwritable output folder: exit $status after ${took} s: $(head -c 160 "$WORK/$job/ro.stderr")"
done
