#!/usr/bin/env bash
# The GPU checks, prepared as one command for a lent device machine (a session gets about 15 minutes
# of device time in all, so this stays under 9 minutes and leaves room to rerun it once).
#
#   here:   scripts/gpu_check.sh wheels          # the few wheels the device image lacks, into .whl/
#   there:  bash scripts/gpu_check.sh run "$OUT" # device tool, carry [".whl"]; logs and JSON land in $OUT
#
# `run` uses the device image's own python3 and torch (inrlib from this checkout on PYTHONPATH), then:
#   1. tests/test_device.py with INRLIB_TEST_DEVICE=cuda: every entry point on the GPU against the CPU,
#      the sync-free hot paths (torch.cuda.set_sync_debug_mode("error")), deterministic mode;
#   2. benchmarks/ntk_bench.py --device cuda --n 1024 4096 16384 (the engine against torch.func);
#   3. benchmarks/train_bench.py --device cuda --members 1 5 20 100 (fit_ensemble against a loop of fits).
# Each step has its own time limit; a step that fails or runs out is reported and the next one runs.
set -u
cd "$(dirname "$0")/.."

case "${1:-}" in
wheels)
    echo /.whl/ >> .git/info/exclude
    mkdir -p .whl
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d .whl trimesh==5.2.0 pytorch-msssim==1.0.0
    ;;
run)
    out=${2:?usage: scripts/gpu_check.sh run OUTDIR}
    mkdir -p "$out"
    if compgen -G ".whl/*.whl" >/dev/null; then
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
    fi
    export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 MPLBACKEND=Agg INRLIB_PROGRESS=0
    step() {   # step NAME SECONDS COMMAND...: one check, its log in $out/NAME.log, its status and time on stdout
        local name=$1 limit=$2; shift 2
        local t0=$SECONDS
        timeout "$limit" "$@" > "$out/$name.log" 2>&1
        local rc=$?
        echo "$name: exit $rc in $((SECONDS - t0)) s (limit $limit s)"
        tail -n 3 "$out/$name.log"
    }
    { nvidia-smi -L; python3 -c 'import torch; print("torch", torch.__version__, torch.cuda.get_device_name(0))'; } \
        > "$out/machine.log" 2>&1
    cat "$out/machine.log"
    step test_device 180 env INRLIB_TEST_DEVICE=cuda python3 -m pytest -q -p no:cacheprovider tests/test_device.py
    step ntk_bench 200 python3 benchmarks/ntk_bench.py --device cuda --n 1024 4096 16384 --repeats 3 \
        --out "$out/ntk_bench-cuda.json"
    step train_bench 120 python3 benchmarks/train_bench.py --device cuda --members 1 5 20 100 \
        --out "$out/train_bench-cuda.json"
    ;;
*)
    sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
