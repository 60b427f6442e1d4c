#!/usr/bin/env bash
# Set-up for a fresh machine, safe to re-run (make bench / make test call it first).
#
# Installs into the current Python (PYTHON, default python3):
#   * torch, only if none is installed: torch==2.13.0, which on the project's CPU machines is a
#     local CPU wheel. A torch that is already there (CPU or CUDA) is always kept: plain `torch`
#     from the registry would pull a multi-GB CUDA build onto a CPU machine.
#   * triton, if missing (the Triton kernels; on CPU they run in its interpreter);
#   * this package in editable mode with its test extras, without build isolation so that
#     setup.py sees the installed torch (and builds the CUDA extension where torch has CUDA);
#   * triton==3.6.0 (the GPU machine's version) beside it, in .triton36/ (pip --target, no
#     dependencies, gitignored): only the compile checks use it (tests/test_compile_checks.py,
#     on PYTHONPATH in a subprocess); YOLOV12_TRITON36=DIR names an existing one instead.
# On a machine without a package registry, whatever is missing is reported and skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1

if ! "$PY" -c "import torch" 2>/dev/null; then
    echo "setup: installing torch==2.13.0"
    "$PY" -m pip install --quiet "torch==2.13.0"
fi
if ! "$PY" -c "import triton" 2>/dev/null; then
    echo "setup: installing triton"
    "$PY" -m pip install --quiet triton || echo "setup: triton not installed: Triton backend off"
fi
# setuptools >= 64 builds PEP 660 editable installs (pyproject.toml); older ones fall back to
# `setup.py develop`, which needs the network
"$PY" -m pip install --quiet "setuptools>=64" wheel 2>/dev/null || true
if ! "$PY" -m pip install --quiet --no-build-isolation -e ".[test]"; then
    echo "setup: installing the test extras failed (no registry?); installing the package alone"
    "$PY" -m pip install --quiet --no-build-isolation --no-deps -e .
fi
# Triton 3.6.0 for the compile checks: into a temporary directory first, so that an interrupted
# download never leaves a half-installed .triton36 that later runs would take for a good one
SIDE=.triton36
if [ -n "${YOLOV12_TRITON36:-}" ]; then
    echo "setup: triton 3.6.0 for the compile checks: $YOLOV12_TRITON36 (YOLOV12_TRITON36)"
elif [ -d "$SIDE/triton-3.6.0.dist-info" ]; then
    echo "setup: triton 3.6.0 for the compile checks: $SIDE (already there)"
else
    rm -rf "$SIDE.partial"
    if "$PY" -m pip install --quiet --no-deps --target "$SIDE.partial" "triton==3.6.0"; then
        rm -rf "$SIDE" && mv "$SIDE.partial" "$SIDE"
        echo "setup: triton 3.6.0 for the compile checks: installed into $SIDE"
    else
        rm -rf "$SIDE.partial"
        echo "setup: triton==3.6.0 not installed (no registry?): the compile checks under" \
             "Triton 3.6.0 will be skipped"
    fi
fi
"$PY" -c "import torch, yolov12_kernels; print('setup: torch', torch.__version__, \
'| CUDA', torch.cuda.is_available(), '| backends', \
[k for k, v in yolov12_kernels.available_backends().items() if v is None])"
