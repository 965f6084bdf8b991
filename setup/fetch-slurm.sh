#!/usr/bin/env bash
# Slurm and munge from Debian's packages (`slurm-wlm` 22.05, `munge`), for the
# tests that start a one-node Slurm cluster (tests/slurm.rs). Nothing is
# configured or started here: the tests run their own daemons from a
# temporary folder. Without root and without the packages this says so and
# succeeds, and those tests skip with the same message.
set -euo pipefail

have_all() {
  local program
  for program in sbatch squeue scontrol scancel slurmctld slurmd munged; do
    command -v "$program" >/dev/null 2>&1 || [ -x "/usr/sbin/$program" ] || return 1
  done
}

if have_all; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "fetch-slurm: slurm-wlm and munge are not installed and this is not root with apt-get;" \
       "the Slurm tests will skip (install them with: apt-get install slurm-wlm munge)" >&2
  exit 0
fi
echo "installing slurm-wlm and munge from Debian's packages (~14 MB, once per machine)..." >&2
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y --no-install-recommends slurm-wlm munge >&2; then
  apt-get update >&2
  apt-get install -y --no-install-recommends slurm-wlm munge >&2
fi
