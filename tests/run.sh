#!/usr/bin/env bash
# The test command (make test): starts the one-node SLURM cluster when we are root (the slurm
# tests submit to it), always stops it, and runs the suite in both environments: everything but
# the `seg`-marked tests in the classification environment (.venv), the `seg`-marked tests
# (mmcv/mmseg) in the segmentation environment (.venv-seg).  Extra arguments go to both pytest
# runs (e.g. tests/test_seg.py); a run that selects no test counts as passed.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
SEG_PY=${SEG_PY:-.venv-seg/bin/python}
export SLURM_LOCAL_STATE=${SLURM_LOCAL_STATE:-/tmp/vpt-replicate-slurm}
started=0
if [ "$(id -u)" = 0 ] && [ -f slurm/local/start.sh ] && command -v apt-get >/dev/null; then
  if bash slurm/local/start.sh --install; then
    started=1
  else
    echo "tests/run.sh: could not start the local SLURM cluster; slurm tests will be skipped" >&2
  fi
fi
cleanup() { [ $started = 1 ] && bash slurm/local/stop.sh >/dev/null 2>&1; }
trap cleanup EXIT
export REPLICATE_SLURM_UP=$started
# tiny models: one thread per process avoids oversubscribing 2 cores when SLURM jobs and the
# test process run at once (measured ~10x faster than 2 threads under contention)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
status=0
run() {  # run <label> <python> <marker expression> [pytest args]
  local label=$1 py=$2 marks=$3 rc
  shift 3
  echo "== $label tests: $("$py" -c 'import torch; print("torch", torch.__version__)' 2>&1 | tail -1) ($py)"
  "$py" -m pytest -q -m "$marks" "$@"
  rc=$?
  [ $rc = 5 ] && rc=0  # no test selected by the arguments: nothing failed
  [ $rc = 0 ] || status=$rc
}
run classification "$PY" "not seg" "$@"
if [ -x "$SEG_PY" ]; then
  run segmentation "$SEG_PY" "seg" "$@"
else
  echo "tests/run.sh: no $SEG_PY: the segmentation tests did not run (make install-seg)" >&2
  status=1
fi
exit $status
