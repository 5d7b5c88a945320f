#!/usr/bin/env bash
# One accelerator in one table (issue 26): steps/s of one run (baseline, two-pass clamp, Markov
# task), aggregate steps/s of sweeps of 8, 64 and 512 runs with device memory, Figure 5b's ladder
# trained end to end, and the main paper's training time estimated from the rates. About 8 minutes
# at most on one GPU; `--reduced` (or GPU_BENCH_REDUCED=1) runs it all at tiny scale on a CPU.
#
#   bash benchmarks/gpu.sh              # full scale (one GPU)
#   bash benchmarks/gpu.sh --reduced    # tiny scale, any machine
#
#   the device tool (carry the wheels; it runs this in the repository root):
#   run(command="PYTHONUNBUFFERED=1 bash benchmarks/gpu.sh 2>&1 | tee $OUT/log", carry=["benchmarks/wheels"], timeout_s=540)
#
# It uses the JAX already installed (on the GPU machine: JAX with CUDA 13, equinox, optax) and
# never reaches the network: optodsl runs from this checkout through PYTHONPATH (what `pip install
# --no-deps -e .` would give, without its build backend, hatchling, which the GPU machine lacks, and
# without touching the environment), and its other dependencies, if missing, are installed into
# /tmp/gpu_bench_site from wheels in benchmarks/wheels/ (see docs/performance.md, "On a GPU", for filling it). The table
# goes to stdout and to $OUT/gpu_table.md, each row to $OUT/gpu_rows.jsonl as it is measured
# (so a run cut short keeps its rows), where $OUT is the device tool's result folder (a temporary
# folder if unset); the ladder's run directories go to a temporary folder.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
REDUCED="${GPU_BENCH_REDUCED:-0}"
for arg in "$@"; do
    case "$arg" in
        --reduced) REDUCED=1 ;;
        *) echo "usage: bash benchmarks/gpu.sh [--reduced]" >&2; exit 2 ;;
    esac
done
OUT="${OUT:-$(mktemp -d)}"
mkdir -p "$OUT"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
# two JAX processes share the GPU (this one, then `opto run` for the ladder): JAX would otherwise
# take 75% of the GPU's memory in the first and leave the second too little; on demand also makes
# the sweeps' memory column the memory they use
export XLA_PYTHON_CLIENT_PREALLOCATE="${XLA_PYTHON_CLIENT_PREALLOCATE:-false}"

# optodsl's own dependencies beyond JAX, equinox and optax, from carried wheels when missing
missing=$("$PY" - <<'EOF'
import importlib.util
need = {"lark": "lark", "pydantic": "pydantic", "typer": "typer", "rich": "rich", "matplotlib": "matplotlib", "h5py": "h5py",
        "jax": "jax", "equinox": "equinox", "optax": "optax"}
print(" ".join(pkg for mod, pkg in need.items() if importlib.util.find_spec(mod) is None))
EOF
)
if [ -n "$missing" ]; then
    if ls benchmarks/wheels/*.whl >/dev/null 2>&1; then
        echo "gpu.sh: installing $missing from benchmarks/wheels into /tmp/gpu_bench_site" >&2
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/gpu_bench_site benchmarks/wheels/*.whl
        export PYTHONPATH="$PYTHONPATH:/tmp/gpu_bench_site"
    else
        echo "gpu.sh: missing $missing and no benchmarks/wheels/*.whl to install them from (docs/performance.md, On a GPU)" >&2
        exit 2
    fi
fi
"$PY" -c "import jax; print('gpu.sh:', jax.__version__, jax.devices())" >&2

args=(--out "$(mktemp -d)" --jsonl "$OUT/gpu_rows.jsonl")
[ "$REDUCED" = 1 ] && args+=(--reduced)
"$PY" benchmarks/gpu_bench.py "${args[@]}" | tee "$OUT/gpu_table.md"
