#!/usr/bin/env bash
# One-command setup: a virtual environment in .venv with PyTorch and pfs (plus test and docs tools).
#   bash setup.sh && source .venv/bin/activate
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
"$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
# pinned builds (a local cache holds them on our machines); CPU-only machines run them on the CPU
.venv/bin/python -m pip install --quiet torch==2.14.1 torchvision==0.29.1
.venv/bin/python -m pip install --quiet -e '.[test,docs]'
.venv/bin/python -c "import pfs, torch, snakemake; print('pfs', pfs.__version__, 'torch', torch.__version__, 'snakemake', snakemake.__version__)"
