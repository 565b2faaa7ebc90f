#!/usr/bin/env bash
# The GPU check: the CUDA tests (pytest -m cuda), then bench_train_gpu.py and bench_gr.py at the
# paper's sizes, each step under its own timeout and all within --budget seconds (8 minutes),
# every figure and each step's status in one JSON file.
#
#   bash bench/gpu_check.sh                  # on a GPU machine: $OUT/gpu_check.json (+ .log)
#   bash bench/gpu_check.sh --device cpu     # dry run anywhere: tiny sizes, the CUDA tests skip
#   bash bench/gpu_check.sh --out DIR --budget 480
#
# Output: --out, else $OUT, else runs/gpu_check/. Exit status 0 when every step passed.
#
# The interpreter, first that fits (the JSON records which, and why the others did not):
#   1. $GRMODEL_PYTHON, as given;
#   2. .venv-gpu/bin/python, a virtualenv installed from requirements/gpu.lock on this machine
#      (or brought along);
#   3. .venv/bin/python, then python3 on PATH, if its torch imports with numpy, pandas, pyarrow
#      and pytest (and, for --device cuda, sees a CUDA device); grmodel itself always comes from
#      this tree (PYTHONPATH), so an image's own torch serves;
#   4. otherwise a new .venv-gpu installed from requirements/gpu.lock (CPython 3.11; needs the
#      package index or a wheel directory in PIP_FIND_LINKS; minutes, within the budget).
set -euo pipefail

started=$(date +%s)
cd "$(dirname "$0")/.."
device=cuda
out="${OUT:-runs/gpu_check}"
budget=480
while [ $# -gt 0 ]; do
    case "$1" in
        --device) device="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        --budget) budget="$2"; shift 2 ;;
        -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "gpu_check.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
case "$device" in cuda|cpu) ;; *) echo "gpu_check.sh: --device is cuda or cpu, not $device" >&2; exit 2 ;; esac
mkdir -p "$out"

# Prints nothing and fails unless $1 imports what the check needs (and, for cuda, sees a GPU).
fits() {
    timeout 120 "$1" - "$device" >/dev/null 2>&1 <<'EOF'
import sys
import numpy, pandas, pyarrow, pytest, torch  # noqa: F401
sys.exit(0 if sys.argv[1] == "cpu" or torch.cuda.is_available() else 3)
EOF
}

python="" route="" rejected=()
if [ -n "${GRMODEL_PYTHON:-}" ]; then
    python="$GRMODEL_PYTHON" route="GRMODEL_PYTHON"
else
    for candidate in .venv-gpu/bin/python .venv/bin/python "$(command -v python3 || true)"; do
        [ -n "$candidate" ] && [ -x "$candidate" ] || continue
        if fits "$candidate"; then
            python="$candidate" route="found: $candidate"
            break
        fi
        rejected+=("$candidate: torch, numpy, pandas, pyarrow or pytest missing$([ "$device" = cuda ] && echo ', or no CUDA device seen')")
    done
fi
if [ -z "$python" ]; then
    echo "[gpu_check] no fitting interpreter; installing requirements/gpu.lock into .venv-gpu" >&2
    left=$(( budget - ($(date +%s) - started) - 180 ))  # leave the steps 3 minutes
    if [ "$left" -gt 30 ] && command -v python3 >/dev/null \
        && timeout "$left" python3 -m venv .venv-gpu \
        && timeout "$left" .venv-gpu/bin/pip install --quiet --no-deps --retries 1 --timeout 20 \
            -r requirements/gpu.lock && fits .venv-gpu/bin/python; then
        python=.venv-gpu/bin/python route="installed from requirements/gpu.lock"
    else
        rejected+=("install from requirements/gpu.lock: failed or no time (offline? see docker/README.md)")
        python="$(command -v python3 || echo python3)" route="none fits; ran with $python to record why"
    fi
fi

printf '%s\n' "${rejected[@]}" >"$out/.rejected"
python_json=$("$python" - "$python" "$route" "$out/.rejected" <<'EOF'
import json, sys
rejected = [line for line in open(sys.argv[3]).read().splitlines() if line]
print(json.dumps({"interpreter": sys.argv[1], "route": sys.argv[2], "rejected": rejected}))
EOF
)
rm -f "$out/.rejected"
echo "[gpu_check] device $device, interpreter $python ($route), budget ${budget} s, output $out"
exec "$python" bench/_gpu_check.py run --device "$device" --out "$out" --budget "$budget" \
    --started "$started" --python-json "$python_json"
