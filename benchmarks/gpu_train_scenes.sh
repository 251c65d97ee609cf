#!/usr/bin/env bash
# Issue 20 on one GPU, in runs that each fit a time-limited job: train the lite network on scenes
# rendered in the run (config/train/synthetic_scenes.yaml), stopping after MINUTES with a
# checkpoint, and continue in the next run.
#   bash benchmarks/gpu_train_scenes.sh start MINUTES TOTAL_MINUTES   # throughput table, val split, train
#   bash benchmarks/gpu_train_scenes.sh continue MINUTES              # resume, train, release the model
# start measures images/s (benchmarks/bench_scene_stream.py) and sets the run's length to what
# TOTAL_MINUTES of training give at the measured rate. continue resumes from the run folder's
# newest full checkpoint; without one (a fresh machine), from the optimiser-less checkpoint in
# RESUME_DIR (its parts, as `start` left them in OUT) with --restart-optimizer.
# Environment: OUT (what to bring back; default runs/gpu_train_scenes_out), MOCAP (BVH folder, or
# a .tar.xz of ../shared/mocap; default ../shared/mocap), RESUME_DIR, CONFIG (default
# config/train/synthetic_scenes.yaml), SIZES (inputs to measure; the first one's training rate
# sets the run's length), INIT (start from these network weights, e.g. models/synthetic_lite.pt,
# instead of MoveNet's backbone: a fine-tuning run with a fresh schedule), SEED (the run's seed,
# so a fine-tuning run draws other scenes than the run it starts from; default the config's),
# SETS (further mp3d-train --set overrides, separated by ';', e.g.
# "model.input_size=[832,512];optim.lr=5.0e-4").
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
phase="$1"; minutes="$2"
OUT="${OUT:-runs/gpu_train_scenes_out}"; mkdir -p "$OUT"
MOCAP="${MOCAP:-../shared/mocap}"
RUN=runs/synthetic_scenes
CONFIG="${CONFIG:-config/train/synthetic_scenes.yaml}"
SIZES="${SIZES:-416x256,832x512}"
batch=$(python -c "from mp3d_ros.training.config import load_train_config; print(load_train_config('$CONFIG').batch_size)")
if [[ "$MOCAP" == *.tar.xz ]]; then  # a carried archive: unpack once, next to it
    folder="$(dirname "$MOCAP")/mocap"
    [[ -d "$folder" ]] || tar -xJf "$MOCAP" -C "$(dirname "$MOCAP")"
    MOCAP="$folder"
fi
overrides=()
[[ -n "${INIT:-}" ]] && overrides=(--set "init={weights: $INIT, backbone_weights: ''}")
IFS=';' read -r -a extra <<< "${SETS:-}"
for value in "${extra[@]}"; do [[ -n "$value" ]] && overrides+=(--set "$value"); done
mkdir -p "$RUN"
if [[ "$phase" == start ]]; then
    python benchmarks/bench_scene_stream.py --config "$CONFIG" --sizes "$SIZES" --steps 60 \
        --batch-size "$batch" --set "datasets=[{kind: scenes, path: config/synth/train.yaml, mocap: $MOCAP}]" "${overrides[@]}" \
        | tee "$OUT/bench_scene_stream.txt"
    rate=$(awk -v size="${SIZES%%,*}" '$1 == size && $2 == "train" {print $3}' "$OUT/bench_scene_stream.txt")
    total_minutes="$3"
    python -c "print(max(100, round($rate * $total_minutes * 60 / $batch / 100) * 100))" > "$RUN/steps.txt"
fi
steps=$(cat "$RUN/steps.txt" 2>/dev/null || cat "${RESUME_DIR:?no steps.txt: run start first}/steps.txt")
echo "$steps" > "$RUN/steps.txt"; cp "$RUN/steps.txt" "$OUT/"
[[ -d data/synthetic/val ]] || python -m mp3d_ros.cli.synth --recipe config/synth/val.yaml --images 200 \
    --out data/synthetic/val --mocap "$MOCAP" --device cuda --workers 15
args=(--config "$CONFIG" --set "schedule.steps=$steps" --stop-after-min "$minutes" --set progress=false
      --set "datasets=[{kind: scenes, path: config/synth/train.yaml, mocap: $MOCAP}]")
args+=("${overrides[@]}")
[[ -n "${SEED:-}" ]] && args+=(--set "seed=$SEED")
if [[ "$phase" == continue ]]; then
    if ls "$RUN"/checkpoints/step_*.pt > /dev/null 2>&1; then
        args+=(--resume "$RUN")
    else
        cat "${RESUME_DIR:?no checkpoint in $RUN and no RESUME_DIR}"/resume.pt.part* > "$RUN/resume.pt"
        args+=(--resume "$RUN/resume.pt" --restart-optimizer)
    fi
fi
python -m mp3d_ros.cli.train "${args[@]}" 2>&1 | tee "$OUT/train_$phase.log"
cp "$RUN/metrics.jsonl" "$OUT/"
newest=$(ls "$RUN"/checkpoints/step_*.pt | tail -1)
python - "$newest" "$OUT" <<'EOF'
import sys
from pathlib import Path
from mp3d_ros.model.checkpoint import load_checkpoint, release_checkpoint, save_checkpoint
from mp3d_ros.training.state import without_optimizer
newest, out = Path(sys.argv[1]), Path(sys.argv[2])
slim = without_optimizer(newest, out / "resume.pt")
data = slim.read_bytes()
slim.unlink()
part = 15 * 2**20  # the files that come back are at most 16 MiB each
for k in range(0, len(data), part):
    (out / f"resume.pt.part{k // part}").write_bytes(data[k:k + part])
save_checkpoint(out / "synthetic_lite.pt", release_checkpoint(load_checkpoint(newest), half=True))
print(f"{newest.name}: resume state in {len(range(0, len(data), part))} parts of {out}, "
      f"inference checkpoint {out / 'synthetic_lite.pt'}")
EOF
ls -la "$OUT"
