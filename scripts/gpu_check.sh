#!/usr/bin/env bash
# The GPU checks, prepared as one command for a lent device machine (a session gets about 15 minutes
# of device time in all, so this stays under 9.5 minutes).
#
#   here:   scripts/gpu_check.sh prepare          # into .whl/ the wheels the device image lacks, into
#                                                 # .gpucache/ the photos and meshes the chapters read
#   there:  bash scripts/gpu_check.sh run "$OUT"  # device tool, carry [".whl", ".gpucache"]
#
# `run` uses the device image's own python3 and torch (inrlib from this checkout on PYTHONPATH), then:
#   1. benchmarks/ntk_bench.py --device cuda --n 1024 4096 16384 (the engine against torch.func), alone;
#   2. benchmarks/train_bench.py --device cuda --members 1 5 20 100 (fit_ensemble against a loop of fits), alone;
#   3. at once, until the deadline (GPU_CHECK_SECONDS after the start, default 560):
#      tests/test_device.py with INRLIB_TEST_DEVICE=cuda (every entry point on the GPU against the CPU,
#      the sync-free hot paths, deterministic mode), and the chapters' paper profiles (all but Weyl's
#      unless GPU_CHECK_CHAPTERS names it) through scripts/run_headless.py (the image has no Jupyter),
#      each with a share of the card's memory.
# A rehearsal here, on the CPU, in a minute: PYTHON=.venv/bin/python GPU_CHECK_DEVICE=cpu GPU_CHECK_PROFILE=smoke
#   GPU_CHECK_N=256 GPU_CHECK_MEMBERS="1 2" GPU_CHECK_SECONDS=150 bash scripts/gpu_check.sh run /tmp/gpu-out
# Each step has its own time limit; a step that fails or runs out is reported and the next one runs.
# $OUT gets the benchmarks' JSON, gpu-text.tar.gz (every log, each chapter's report.md, cells.json and
# results JSON) and gpu-figures.tar.gz (the chapters' figures).
set -u
cd "$(dirname "$0")/.."

case "${1:-}" in
prepare)
    grep -qx /.whl/ .git/info/exclude || echo /.whl/ >> .git/info/exclude
    grep -qx /.gpucache/ .git/info/exclude || echo /.gpucache/ >> .git/info/exclude
    mkdir -p .whl .gpucache
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d .whl trimesh==5.2.0 pytorch-msssim==1.0.0 optuna==5.1.0 alembic==1.20.1 colorlog==6.12.0 \
        SQLAlchemy==2.1.9 Mako==1.4.3 greenlet==3.5.6 embreex==4.4.0.post1 rtree==1.4.1
    cache=$(.venv/bin/python -c 'from inrlib.io import cache_dir; print(cache_dir())')
    cp -r "$cache/imagenet" "$cache/meshes" .gpucache/
    du -sh .whl .gpucache
    ;;
run)
    out=${2:?usage: scripts/gpu_check.sh run OUTDIR}
    py=${PYTHON:-python3} dev=${GPU_CHECK_DEVICE:-cuda} profile=${GPU_CHECK_PROFILE:-paper}
    deadline=$((SECONDS + ${GPU_CHECK_SECONDS:-560}))   # everything ends by then; the packing takes seconds
    rm -rf /tmp/gpu; mkdir -p "$out" /tmp/gpu/chapters
    if compgen -G ".whl/*.whl" >/dev/null; then
        "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
    fi
    export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 MPLBACKEND=Agg INRLIB_PROGRESS=0
    [ -d .gpucache ] && export INRLIB_CACHE="$PWD/.gpucache"
    step() {   # step NAME SECONDS COMMAND...: one check, its log in /tmp/gpu/NAME.log, its status and time on stdout
        local name=$1 limit=$2; shift 2
        local t0=$SECONDS
        timeout -s INT -k 10 "$limit" "$@" > "/tmp/gpu/$name.log" 2>&1
        local rc=$?
        echo "$name: exit $rc in $((SECONDS - t0)) s (limit $limit s)"
        tail -n 3 "/tmp/gpu/$name.log"
    }
    { nvidia-smi -L; "$py" -c 'import torch; print("torch", torch.__version__, torch.cuda.is_available() and torch.cuda.get_device_name(0))'; } \
        > /tmp/gpu/machine.log 2>&1
    cat /tmp/gpu/machine.log
    # 1. the benchmarks, alone on the card (their timings are the README's)
    step ntk_bench 140 "$py" benchmarks/ntk_bench.py --device "$dev" --n ${GPU_CHECK_N:-1024 4096 16384} \
        --methods structured jacobian ntk_vp --repeats 3 --max-seconds 20 --timeout 60 --out "/tmp/gpu/ntk_bench-$dev.json"
    step train_bench 80 "$py" benchmarks/train_bench.py --device "$dev" --members ${GPU_CHECK_MEMBERS:-1 5 20 100} \
        --out "/tmp/gpu/train_bench-$dev.json"
    # 2. the device tests and every chapter's paper profile at once, each chapter with its share of the
    #    card's memory, until the deadline: a chapter that does not finish leaves its progress
    #    (cells.json, report.md) and, from the interrupt, the line it was on (its log)
    left=$((deadline - SECONDS))
    step test_device 200 env INRLIB_TEST_DEVICE="$dev" "$py" -m pytest -q -p no:cacheprovider tests/test_device.py &
    # Each chapter gets a share of the card's memory; its NTK budget is half its share, so the paper
    # profiles need: Weyl 34 GiB (a share >= 0.49 of an H200), Scaling 29 GiB (>= 0.42), ImageNet 10 GiB
    # (>= 0.15). Weyl is left out by default (it trains for about an hour: GPU_CHECK_CHAPTERS="weyl_bound:1").
    for spec in ${GPU_CHECK_CHAPTERS:-scaling:0.45 imagenet:0.2 sinusoidal_bandwidth:0.15 occupancy:0.1 theory:0.05 staf_init:0.05}; do
        name=${spec%%:*}
        OMP_NUM_THREADS=2 step "$profile-$name" "$left" "$py" scripts/run_headless.py "book/$name.py" \
            "/tmp/gpu/chapters/$name" -p profile "$profile" -p device "$dev" --memory-fraction "${spec#*:}" &
    done
    wait
    nvidia-smi --query-gpu=memory.used,memory.total --format=csv > /tmp/gpu/nvidia-smi.log 2>&1
    # 3. what comes back (at most 8 files): the JSON and logs, then the chapters' figures apart
    cp /tmp/gpu/*.json "$out"/ 2>/dev/null
    tar -C /tmp/gpu --exclude='*.png' -czf "$out/gpu-text.tar.gz" .
    tar -C /tmp/gpu -czf "$out/gpu-figures.tar.gz" $(cd /tmp/gpu && find chapters -name '*.png' | sort)
    ls -la "$out"
    ;;
*)
    sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
