#!/usr/bin/env bash
# Full-scale dress rehearsal: ImageNet-shaped data, an RN50-shaped random CLIP, every notebook
# through papermill with the ImageNet configuration, timed and measured per notebook.
#   bash bench/rehearsal.sh [WORKDIR]            # a CUDA machine, full size (data generated here)
#   SMOKE=1 bash bench/rehearsal.sh [WORKDIR]    # CPU smoke: 100 classes, tiny images, the mini CLIP
# Results: WORKDIR/rehearsal.json (wall time, peak host and GPU memory per notebook), WORKDIR/report/.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
WORK=${1:-/tmp/fewshot-rehearsal}
mkdir -p "$WORK"
if [[ "${SMOKE:-0}" == 1 ]]; then
  gen=--smoke
  extra='"backbone": "miniclip-rn", "templates": "single", "shots": [1, 2], "seeds": [1, 2], "views": 2, "beta_steps": 10, "alpha_steps": 5, "epochs": 2, "lambdas": [0.0, 0.5, 1.0], "cv_folds": 2, "num_workers": 0, "device": "cpu", "ft_shots": [2], "ft_epochs": 1, "ft_alphas": [0.0, 1.0], "coop_epochs": 1, "merge_tasks": ""'
else
  gen=
  extra="\"backbone\": \"$WORK/data/rn50-random.pt\", \"shots\": [1, 5, 16], \"seeds\": [1, 2, 3], \"num_workers\": ${WORKERS:-16}"
fi
t0=$(date +%s)
"$PY" -m fewshot world make-imagenet-shaped --out "$WORK/data" $gen
echo "data generation: $(( $(date +%s) - t0 )) s"
"$PY" bench/rehearse.py --config imagenet-rn50 --out "$WORK" --overrides \
  "{\"data\": \"$WORK/data/ImageNet-1K-16shot\", \"out\": \"$WORK/run\", \"cache_dir\": \"$WORK/cache\", \"report_dir\": \"$WORK/report\", \"progress\": false, $extra}"
