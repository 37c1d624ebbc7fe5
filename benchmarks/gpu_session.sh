#!/usr/bin/env bash
# Every GPU figure the project still owes, in one call of the device tool (15 minutes of device
# time a session, a machine start included: one call, then give it back). Prepare here, once:
#     bash benchmarks/device_wheels.sh        # the pure-Python packages the GPU image lacks -> .whl/
# then call the device tool with  command="bash benchmarks/gpu_session.sh", carry=[".whl"],
# timeout_s=600. Parts, most wanted first, each under its own limit (seconds; override with the
# variables) so that a slow or hung part cannot take the others' time:
#     APPEARANCE_S=360  benchmarks/gpu_appearance_bench.py   issue 12's figures ($OUT/gpu_bench.json)
#     FINETUNE_S=80     benchmarks/finetune_timing.py        s/iteration of Table 8's recipe vs floor
#     CHECK_S=80        benchmarks/gpu_check.sh              CUDA training, torchrun, the test suite
# Each part's whole output goes to $OUT/<part>.log (the tool returns only the last 12,000
# characters of the call's output). Checked end to end on the CPU under torch 2.11 (the GPU
# image's version) with DEVICE=cpu, which passes --device cpu and small sizes to every part.
set -uo pipefail
cd "$(dirname "$0")/.."
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || { echo "FAILED: installing the carried wheels"; exit 1; }
fi
export PYTHONPATH="$PWD:/tmp/site${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 MPLBACKEND=Agg
OUT="${OUT:-$(mktemp -d)}"
DEVICE="${DEVICE:-cuda}"
if [ "$DEVICE" = cpu ]; then  # a smoke test of this script: tiny sizes, rates meaningless
    appearance=(--images 16 --device cpu --model resnet18_ibn_a --ratio-models resnet18,resnet18_ibn_a,resnet18_ibn_b --workers 1)
    finetune=(--device cpu --size 128x64 --crop 64 --batch-size 2 --images 4 --iterations 2 --warmup 1 --repeats 1 --workers 1)
else
    appearance=()
    finetune=(--repeats 2)
fi

part() {  # part NAME LIMIT_S COMMAND...: run it under `timeout`, log to $OUT/NAME.log, say how it ended
    local name=$1 limit=$2 t0=$SECONDS
    shift 2
    echo "== $name (limit ${limit} s)"
    timeout --kill-after=10 "$limit" "$@" >"$OUT/$name.log" 2>&1
    local rc=$?
    tail -n "${TAIL_LINES:-40}" "$OUT/$name.log"
    [ -z "$(tail -c 1 "$OUT/$name.log")" ] || echo  # a log cut mid-line
    echo "== $name: exit $rc after $((SECONDS - t0)) s$([ $rc -eq 124 ] && echo ' (time limit)')"
    return 0
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "(no nvidia-smi)"
python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'gpus', torch.cuda.device_count())"
part appearance "${APPEARANCE_S:-360}" python3 benchmarks/gpu_appearance_bench.py "${appearance[@]}"
part finetune "${FINETUNE_S:-80}" python3 benchmarks/finetune_timing.py "${finetune[@]}"
DEVICE="$DEVICE" part check "${CHECK_S:-80}" bash benchmarks/gpu_check.sh
echo "logs and JSON in $OUT: $(ls "$OUT" | tr '\n' ' ')"
