#!/usr/bin/env bash
# Where the first three steps spend their time at ImageNet scale: data, then zeroshot, splits and
# features in one process under cProfile (stats in $OUT/prof.txt), then class_means in a fresh
# process (its fixed start-up cost).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp}; WORK=${WORK:-/tmp/ins}
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
SECONDS=0; python3 -m fewshot world make-imagenet-shaped --out "$WORK/data" >/dev/null; echo "data: $SECONDS s"
SET=(data="$WORK/data/ImageNet-1K-16shot" backbone="$WORK/data/rn50-random.pt" out="$WORK/run" cache_dir="$WORK/cache"
     'shots=[1,5,16]' num_workers=16 progress=false 'merge_tasks=""')
for step in zeroshot splits features; do
  SECONDS=0
  python3 -m cProfile -o "$OUT/prof-$step.out" -m fewshot run --config imagenet-rn50 --set "${SET[@]}" --steps $step > "$OUT/log-$step.txt" 2>&1 || tail -5 "$OUT/log-$step.txt"
  echo "$step: $SECONDS s"
  python3 -c "import pstats,sys; s=pstats.Stats('$OUT/prof-$step.out',stream=sys.stdout); s.sort_stats('cumulative').print_stats(45)" > "$OUT/prof-$step.txt"
done
SECONDS=0; python3 -m fewshot run --config imagenet-rn50 --set "${SET[@]}" --steps class_means > "$OUT/log-cm.txt" 2>&1; echo "class_means (fresh process): $SECONDS s"
python3 -X importtime -c "import fewshot.run.pipeline" 2> "$OUT/importtime.txt" || true
nvidia-smi --query-gpu=memory.used --format=csv
