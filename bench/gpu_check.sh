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
#   3. .venv/bin/python, then python3 on PATH;
#   each of 2-3 only if its torch imports with numpy, pandas and pyarrow and, for --device cuda,
#   sees a CUDA device. grmodel itself comes from this tree (PYTHONPATH), so an image's own torch
#   serves; without pytest the CUDA tests are skipped (and the check is not OK);
#   4. otherwise, where nvidia-smi lists a GPU, a new .venv-gpu from requirements/gpu.lock and
#      dev.lock's pytest (CPython 3.11; needs the package index or a wheel directory in
#      PIP_FIND_LINKS; minutes, taken from the budget).
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
        -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
        *) echo "gpu_check.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
case "$device" in cuda|cpu) ;; *) echo "gpu_check.sh: --device is cuda or cpu, not $device" >&2; exit 2 ;; esac
mkdir -p "$out"

# Fails, printing why, unless $1 imports what the check needs and, for cuda, sees a GPU.
probe() {
    timeout 120 "$1" - "$device" 2>&1 <<'EOF'
import sys
try:
    import numpy, pandas, pyarrow, torch  # noqa: F401
except ImportError as exc:
    sys.exit(f"cannot import {exc.name}")
if sys.argv[1] == "cuda" and not torch.cuda.is_available():
    sys.exit(f"torch {torch.__version__} (CUDA build {torch.version.cuda}) sees no CUDA device")
EOF
}

python="" route="" rejected=()
if [ -n "${GRMODEL_PYTHON:-}" ]; then
    python="$GRMODEL_PYTHON" route="GRMODEL_PYTHON"
else
    for candidate in .venv-gpu/bin/python .venv/bin/python "$(command -v python3 || true)"; do
        [ -n "$candidate" ] && [ -x "$candidate" ] || continue
        if reason=$(probe "$candidate"); then
            python="$candidate" route="found: $candidate"
            break
        fi
        reason="${reason##*$'\n'}"
        rejected+=("$candidate: ${reason:-no answer within 120 s}")
    done
fi
if [ -z "$python" ]; then
    left=$(( budget - ($(date +%s) - started) - 180 ))  # leave the steps 3 minutes
    if [ "$device" = cpu ]; then
        rejected+=("install from requirements/gpu.lock: not for a dry run (make .venv/.installed makes .venv)")
    elif ! nvidia-smi -L >/dev/null 2>&1; then
        rejected+=("install from requirements/gpu.lock: no NVIDIA GPU on this machine (nvidia-smi -L)")
    elif [ "$left" -le 30 ]; then
        rejected+=("install from requirements/gpu.lock: no time left in the budget")
    elif ! command -v python3 >/dev/null; then
        rejected+=("install from requirements/gpu.lock: no python3 to make the virtualenv")
    else
        echo "[gpu_check] no interpreter fits; installing requirements/gpu.lock into .venv-gpu (${left} s at most)"
        if timeout "$left" python3 -m venv .venv-gpu \
            && timeout "$left" .venv-gpu/bin/pip install --quiet --no-deps --retries 1 --timeout 20 \
                -r requirements/gpu.lock $(grep -E '^(pytest|pluggy|iniconfig)==' requirements/dev.lock) \
            && reason=$(probe .venv-gpu/bin/python); then
            python=.venv-gpu/bin/python route="installed from requirements/gpu.lock"
        else
            rejected+=("install from requirements/gpu.lock: failed (offline? docker/README.md, GPU check)")
        fi
    fi
fi
if [ -z "$python" ]; then
    python="$(command -v python3 || echo python3)" route="none fits; $python runs the check to record why"
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
