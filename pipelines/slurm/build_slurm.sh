#!/bin/bash
# Run the `drrgen build` driver as a small SLURM job of its own; it submits the worker jobs
# described in slurm.yaml and waits for them. Resubmitting this script resumes the build.
#SBATCH --job-name=drrgen-driver
#SBATCH --cpus-per-task=2
#SBATCH --mem=8G
#SBATCH --time=12:00:00
set -euo pipefail
source "$HOME/xmatch/.venv/bin/activate"
CT_DIR=${CT_DIR:?set CT_DIR to the folder of CT volumes}
OUT=${OUT:?set OUT to the store path on a shared filesystem, e.g. /scratch/$USER/train.zarr}
drrgen build --ct-dir "$CT_DIR" --out "$OUT" \
    --config pipelines/build_default.yaml \
    --slurm-config pipelines/slurm/slurm.yaml \
    --no-progress
drrgen verify "$OUT" --no-progress
