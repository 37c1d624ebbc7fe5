#!/usr/bin/env bash
# The protocol layer's checks on a GPU machine (H100/H200), in one call, for the device tool:
#   1. `dgbench train --task segmentation --device cuda` on a generated Cityscapes tree, a few AMP
#      iterations (the path that died in torch.cuda.set_device("cuda") before the runtime);
#   2. a 2-rank torchrun on a machine with fewer GPUs than ranks: dgbench's one-line answer;
#   3. the whole test suite with a GPU visible.
# Prints every figure; exits non-zero on the first failure. Runs from the repository root with
# the project's dependencies importable (PYTHONPATH=. is set here). DEVICE=cpu runs step 1 on the
# CPU (to check the script itself on a machine without a GPU).
set -uo pipefail
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 MPLBACKEND=Agg
work="$(mktemp -d)"
export DGBENCH_RESULTS="$work/results" DGBENCH_CACHE="$work/cache" TORCH_HOME="$work/torch"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'gpus', torch.cuda.device_count())"

echo "== 1. segmentation training on CUDA (AMP), generated Cityscapes tree"
python3 - "$work" "${DEVICE:-cuda}" <<'EOF'
import sys, time
from pathlib import Path
sys.path.insert(0, "tests")
from seg_fixtures import make_cityscapes
from dgbench.train.segmentation import train_segmentation
root = make_cityscapes(Path(sys.argv[1]) / "cityscapes", split="train", cities=("aachen",), per_city=8, size=(512, 256), seed=0)
t0 = time.perf_counter()
r = train_segmentation("cityscapes", "ibn_a", root=root, out_dir=Path(sys.argv[1]) / "run", device=sys.argv[2], amp=True,
                       epochs=1, batch_size=4, crop_size=(257, 257), pretrained_backbone=False, num_workers=2,
                       progress=False, resume=False)
print(f"iterations {r.iteration}/{r.total_iterations}, final loss {r.losses[-1]:.4f}, "
      f"{(time.perf_counter() - t0) / max(r.iteration, 1):.3f} s/iteration (incl. start-up)")
EOF
[ $? -eq 0 ] || { echo "FAILED: segmentation training on CUDA"; exit 1; }

echo "== 2. torchrun with more ranks than GPUs"
gpus=$(python3 -c "import torch; print(torch.cuda.device_count())")
if [ "$gpus" -eq 0 ]; then
    echo "skipped: no GPU here (the rule is tested with a mocked CUDA: tests/test_protocol_layer.py)"
else
    out=$(python3 -m torch.distributed.run --standalone --nproc-per-node $((gpus + 1)) -m dgbench run --model ibn_b \
          --protocol appearance-lite --dataset digits --limit 64 --device cuda --no-progress 2>&1)
    echo "$out" | grep -E "error:" | sort -u
    echo "$out" | grep -q "ranks on this node but $gpus GPU" || { echo "FAILED: no clear answer"; echo "$out" | tail -20; exit 1; }
fi

echo "== 3. the test suite with a GPU visible"
python3 -m pytest -q -p no:cacheprovider -x
