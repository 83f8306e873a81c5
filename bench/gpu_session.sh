#!/usr/bin/env bash
# The GPU measurements of bench/RESULTS.md, in the calls the device tool allows (10 minutes each):
#   bash bench/gpu_session.sh setup        # carried wheels (openai-clip, ftfy, wcwidth) into /tmp/site
#   bash bench/gpu_session.sh rehearsal-a  # ImageNet-shaped data, then zeroshot .. wise under an 8 GiB cap
#   bash bench/gpu_session.sh rehearsal-b  # linear_probe and peers under the cap, grid search, pipeline
#   bash bench/gpu_session.sh rehearsal-c  # finetune and prompt under the cap (data reused if present)
#   bash bench/gpu_session.sh prep         # data, then zeroshot splits features (one process, no cap)
#   bash bench/gpu_session.sh torchrun-ft  # the finetune step of the CLI on 2 GPUs, in a copy of the run
#   bash bench/gpu_session.sh benches      # every cached-feature method's cost, fine-tuning memory
#   bash bench/gpu_session.sh multi-gpu    # fine-tuning and re-encoding on 1 and 2 GPUs (torchrun)
#   bash bench/gpu_session.sh default-a    # data, then the steps zeroshot .. linear_probe with imagenet-rn50's DEFAULTS
#   bash bench/gpu_session.sh default-b    # peers, finetune, prompt of the same run (right after -a, machine warm)
#   STEPS="zeroshot .. peers" DEADLINE=500 bash bench/gpu_session.sh suite
#                                          # imagenet-rn50's defaults, STEPS one process each, each row
#                                          # added to $OUT/rehearsal-default.json (a step over its time is
#                                          # stopped and marked timed_out); the run folder stays in $WORK
# Rows go to $OUT (or bench/) as JSON.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench}
WORK=${WORK:-runs/ins}
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 BENCH_OUT=$OUT/results.jsonl
COMMON=(shots=[1,16] seeds=[1] ft_shots=[16] ft_epochs=1 coop_epochs=1 'ft_alphas=[0.0,0.5,1.0]' 'merge_tasks=""' num_workers=16)
data() { [[ -f $WORK/data/rn50-random.pt ]] || python3 -m fewshot world make-imagenet-shaped --out "$WORK/data"; }
case "$1" in
  setup) python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl ;;
  rehearsal-a) data; python3 bench/capped_rehearsal.py --work "$WORK" --cap-gib 8 --set "${COMMON[@]}" \
      --steps zeroshot splits features class_means tip_adapter tip_adapter_f wise --out "$OUT/rehearsal_a.json" ;;
  rehearsal-b) data; python3 bench/capped_rehearsal.py --work "$WORK" --cap-gib 8 --set "${COMMON[@]}" \
      --steps linear_probe peers --out "$OUT/rehearsal_b.json"
      (cd bench && python3 grid_search.py && python3 pipeline.py) ;;
  rehearsal-c) data; python3 bench/capped_rehearsal.py --work "$WORK" --cap-gib 8 --set "${COMMON[@]}" \
      --steps finetune prompt --out "$OUT/rehearsal_c.json" ;;
  prep) data; python3 bench/capped_rehearsal.py --work "$WORK" --set "${COMMON[@]}" --dump-config "$WORK/cfg.json"
      python3 -m fewshot run --config "$WORK/cfg.json" --steps zeroshot splits features ;;
  torchrun-ft) rm -rf "$WORK/run2"; cp -r "$WORK/run" "$WORK/run2"; rm -f "$WORK"/run2/results/ft-*.jsonl
      python3 bench/capped_rehearsal.py --work "$WORK" --set "${COMMON[@]}" --dump-config "$WORK/cfg.json"
      SECONDS=0
      torchrun --nproc_per_node 2 -m fewshot run --config "$WORK/cfg.json" --steps finetune --set out="$WORK/run2"
      echo "torchrun finetune step: $SECONDS s"
      mkdir -p "$OUT/ft-one" "$OUT/ft-two"; cp "$WORK"/run/results/ft-*.jsonl "$OUT/ft-one/"; cp "$WORK"/run2/results/ft-*.jsonl "$OUT/ft-two/" ;;
  benches) cd bench; python3 methods.py
      python3 finetune.py --model rn50 --batch 256 --cap-gib 15
      python3 finetune.py --model vitb16 --batch 128 --cap-gib 15 --checkpointing ;;
  default-a|default-b) data
      OVR="{\"data\": \"$WORK/data/ImageNet-1K-16shot\", \"backbone\": \"$WORK/data/rn50-random.pt\", \"out\": \"$WORK/def\", \"cache_dir\": \"$WORK/cache\", \"report_dir\": \"$WORK/report\", \"progress\": false, \"num_workers\": 16}"
      if [[ $1 == default-a ]]; then STEPS=(zeroshot splits features class_means tip_adapter tip_adapter_f wise linear_probe)
      else STEPS=(peers finetune prompt); fi
      python3 bench/rehearse.py --config imagenet-rn50 --overrides "$OVR" --out "$WORK/rehearsal" --steps "${STEPS[@]}"
      cp "$WORK/rehearsal/rehearsal.json" "$OUT/rehearsal-default.json" ;;
  suite) data
      OVR="{\"data\": \"$WORK/data/ImageNet-1K-16shot\", \"backbone\": \"$WORK/data/rn50-random.pt\", \"out\": \"$WORK/def\", \"cache_dir\": \"$WORK/cache\", \"report_dir\": \"$WORK/report\", \"progress\": false, \"num_workers\": 16}"
      python3 bench/rehearse.py --config imagenet-rn50 --overrides "$OVR" --out "$WORK/rehearsal" --steps $STEPS \
        --deadline "${DEADLINE:-0}" --step-timeout "${STEP_TIMEOUT:-0}" || true
      cp "$WORK/rehearsal/rehearsal.json" "$OUT/rehearsal-default.json"; cp -r "$WORK/rehearsal/logs" "$OUT/" ;;
  multi-gpu) cd bench; for m in "rn50 256" "vitb16 128"; do set -- $m
        python3 finetune.py --model $1 --batch $2 --checkpointing
        torchrun --nproc_per_node 2 finetune.py --model $1 --batch $2 --checkpointing; done ;;
esac
