#!/usr/bin/env bash
# Wheels of the pure-Python packages dgbench imports that the GPU machine's image lacks, fetched
# here (the device has no package registry) into .whl/ (git-ignored locally), for the device
# tool to carry. The image has torch, torchvision, numpy, pillow, opencv-python-headless, pandas,
# typer, rich, filelock, scikit-learn, scikit-image, matplotlib, numba, scipy and pytest; it lacks
#   cityscapesscripts      the Cityscapes label table, imported by every `import dgbench`
#   imagecorruptions-imaug the common corruptions (their tests, and `--protocol corruptions*`)
#   pyquaternion           imported by cityscapesscripts' evaluation, which the tests compare with
# They need none of their other requirements for what dgbench and its tests use (checked under
# torch 2.11 with only the image's packages: `DEVICE=cpu bash benchmarks/gpu_session.sh` and the
# test suite). benchmarks/gpu_session.sh installs them on the device; for a call of your own,
# begin the command with the install line printed last.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .git/info
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl \
    "cityscapesscripts==2.3.0" "imagecorruptions-imaug==1.1.5" "pyquaternion==0.9.9"
ls -l .whl
echo 'device command prefix (carry [".whl"]):'
echo 'python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit;'
