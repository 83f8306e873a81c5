#!/usr/bin/env bash
# The merging measurements on a lent GPU (10-minute calls):
#   bash bench/gpu_merging.sh setup                  # carried wheels (openai-clip, ftfy, wcwidth) into /tmp/site
#   bash bench/gpu_merging.sh vit                    # pretrain miniclip-vit (world train-clip --tower vit) into $OUT
#   SEEDS="1" SET="merge_steps=400 ..." bash bench/gpu_merging.sh calibrate   # bench/calibrate_merging.py
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench}
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
case "$1" in
  setup) python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
         python3 -c "import scipy, skimage, clip, torch; print('ok', torch.__version__, torch.cuda.get_device_name())" ;;
  vit) SECONDS=0; python3 -m fewshot world train-clip --tower vit --out "$OUT/miniclip-vit.pt" --force --set device=cuda workers=16
       echo "vit pretraining: $SECONDS s" ;;
  calibrate) python3 bench/calibrate_merging.py --tasks "${TASKS:-/tmp/tasks-cal}" --names ${NAMES:-shape colour count position style} \
       --train "${TRAIN:-64}" --val "${VAL:-480}" --unlabeled "${UNL:-256}" --backbone "${BACKBONE:-miniclip-rn}" \
       --seeds ${SEEDS:-1 2 3} --set device=cuda num_workers=8 cache_dir=/tmp/cache ${SET:-} --out "$OUT/calibration-${TAG:-run}.json" ;;
esac
