#!/usr/bin/env bash
# make gpu-check: set up whatever this machine lacks, then run benchmarks/gpu_check.py (its
# docstring says what is measured). Usage: bash benchmarks/gpu_check.sh [WHEELHOUSE]
#
# - No NVIDIA GPU: one line, exit 0.
# - A package index answers: `make install-gpu` (onnxruntime-gpu, CUDA/cuDNN wheels, TensorRT 10);
#   if TensorRT cannot be installed, the rest is measured without it and the results say so.
# - No index (a locked-down GPU machine): the machine's own python3 (torch with CUDA), with the
#   wheels of WHEELHOUSE (`make wheelhouse`: rasterio and its small dependencies) installed into
#   a folder on PYTHONPATH, and this checkout on PYTHONPATH too (nothing is pip-installed).
#
# The measurement is bounded by gpu_check.py's own budget (450 s) and by `timeout` below.
set -uo pipefail
cd "$(dirname "$0")/.."
WHEELHOUSE=${1:-.wheelhouse}

if ! nvidia-smi -L >/dev/null 2>&1; then
    echo "gpu-check: no NVIDIA GPU here (nvidia-smi lists none); nothing measured"
    exit 0
fi

probe=$(mktemp -d)
if timeout 30 python3 -m pip download -q --no-deps -d "$probe" click >/dev/null 2>&1; then
    setting=index
    if ! make install-gpu; then
        echo "gpu-check: the [tensorrt] extra did not install (above); measuring without it"
        make install || exit 1
    fi
    py=.venv/bin/python
else
    setting=locked
    if ! ls "$WHEELHOUSE"/*.whl >/dev/null 2>&1; then
        echo "gpu-check: no package index here and no wheels in $WHEELHOUSE: run 'make wheelhouse' where pip works and bring that folder along"
        exit 1
    fi
    site=/tmp/cloudseg-gpu-site
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$site" "$WHEELHOUSE"/*.whl || exit 1
    export PYTHONPATH="$site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
    py=python3
fi
rm -rf "$probe"
export PYTHONUNBUFFERED=1
echo "gpu-check: setting '$setting', $($py -c 'import sys; print(sys.version.split()[0])')"
timeout 480 "$py" benchmarks/gpu_check.py --setting "$setting"
