#!/usr/bin/env bash
# Issue 20, item 4 at fine-tuning length: one component on against off, two seeds each, every run
# fine-tuned for STEPS steps from INIT with a fresh schedule (Adam at LR, WARMUP warm-up steps) on
# scenes rendered in the run (config/train/synthetic_scenes.yaml). Seed-major, so a run cut short
# still has every variant of the first seed. INIT=backbone trains from the config's start instead
# (MoveNet's backbone, fresh heads): the component trained in from the beginning.
#   STEPS=1500 SEEDS="3 4" bash benchmarks/gpu_finetune_ablation.sh
#   INIT=backbone LR=1e-3 WARMUP=300 STEPS=3000 SEEDS=6 bash benchmarks/gpu_finetune_ablation.sh
# Environment: OUT (what comes back: <variant>_seed<seed>.pt released checkpoints, logs, times.txt;
# default runs/finetune_ablation_out), MOCAP (BVH folder or a .tar.xz of ../shared/mocap), INIT
# (default models/synthetic_lite.pt; backbone: from the start), STEPS, SEEDS, LR, WARMUP,
# VARIANTS ("name:override ..." with overrides of mp3d-train's --set; default HMOR's ordinal
# losses at weight 1 against 0), RECIPE (the scenes' mp3d-synth recipe; default
# config/synth/train.yaml), WORKERS (loader workers per run, default the config's 15; the data
# do not depend on it, so two seeds can train side by side on one GPU with half each).
# Score the checkpoints with mp3d-eval on config/synth's test splits afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
OUT="${OUT:-runs/finetune_ablation_out}"; mkdir -p "$OUT"
MOCAP="${MOCAP:-../shared/mocap}"
INIT="${INIT:-models/synthetic_lite.pt}"
STEPS="${STEPS:-1500}"; SEEDS="${SEEDS:-3 4}"; LR="${LR:-3e-4}"; WARMUP="${WARMUP:-100}"
VARIANTS="${VARIANTS:-hmor:loss.hmor=1.0 no_hmor:loss.hmor=0.0}"
RECIPE="${RECIPE:-config/synth/train.yaml}"
WORKERS="${WORKERS:-15}"
if [[ "$MOCAP" == *.tar.xz ]]; then  # a carried archive: unpack once, next to it
    folder="$(dirname "$MOCAP")/mocap"
    [[ -d "$folder" ]] || tar -xJf "$MOCAP" -C "$(dirname "$MOCAP")"
    MOCAP="$folder"
fi
for seed in $SEEDS; do
    for variant in $VARIANTS; do
        name="${variant%%:*}"; override="${variant#*:}"
        run="runs/finetune_ablation/${name}_seed$seed"
        started=$(date +%s)
        init=(--set "init={weights: $INIT, backbone_weights: ''}")
        [[ "$INIT" == backbone ]] && init=()
        python -m mp3d_ros.cli.train --config config/train/synthetic_scenes.yaml \
            --set "schedule.steps=$STEPS" --set "schedule.warmup_steps=$WARMUP" --set "optim.lr=$LR" \
            --set "seed=$seed" --set "workers=$WORKERS" --set "$override" "${init[@]}" \
            --set "datasets=[{kind: scenes, path: $RECIPE, mocap: $MOCAP}]" \
            --set "validation.kind=''" --set validate_every=0 --set "checkpoint_every=$STEPS" \
            --set keep_checkpoints=1 --set "out_dir=$run" --set progress=false \
            > "$OUT/${name}_seed$seed.log" 2>&1
        python - "$(ls "$run"/checkpoints/step_*.pt | tail -1)" "$OUT/${name}_seed$seed.pt" <<'EOF'
import sys
from mp3d_ros.model.checkpoint import load_checkpoint, release_checkpoint, save_checkpoint
save_checkpoint(sys.argv[2], release_checkpoint(load_checkpoint(sys.argv[1]), half=True))
EOF
        echo "$name seed $seed ($override): $STEPS steps, $(( $(date +%s) - started )) s" | tee -a "$OUT/times.txt"
    done
done
