#!/usr/bin/env bash
# All six models on one GPU at once, each continuing from its shipped checkpoint, for MINUTES of
# wall clock (the cosine schedule spans exactly that). Used on the GPU machines lent to this project:
#
#   python scripts/pack_y_dataset.py ../shared/datasets .data T91 BSD200 Set5   # here, then carry .data
#   OUT=/some/dir MINUTES=7 RUN=gpu5 scripts/train_on_gpu.sh                    # there
#
# BATCH, LR, EVAL_EVERY and TRAIN_SETS (space-separated, default "T91 BSD200") set the run, and TRAIN_ARGS
# passes more flags to every training.train (e.g. TRAIN_ARGS=--transpose);
# TEACH=1 distils each FSRCNN-s from the FSRCNN of its scale as it stands when the run starts (train --teacher,
# weight TEACHER_WEIGHT, default 0.5; kd28 in TRAINING.md). MPS=0 keeps the CUDA MPS daemon off.
# RUN names the run folder (runs/$RUN/<id>/log.csv); scripts/plot_curves.py chains gpu1, gpu2, ... in order.
# Every 45 s, and at the end, the new weights, the run folders (for --resume) and the logs are packed
# into $OUT/gpu_run.tgz (written to a temp name, then renamed), so a cut-off run still returns them.
set -u
cd "$(dirname "$0")/.."
[ -n "${OUT:-}" ] || { echo "train_on_gpu.sh: error: set OUT to the folder the results go to" >&2; exit 2; }
[ -d "${EDGE_SR_DATA:-.data}/T91" ] || { echo "train_on_gpu.sh: error: no ${EDGE_SR_DATA:-.data}/T91 (see the header for how to pack the data)" >&2; exit 2; }
PY=${PY:-python3}
MINUTES=${MINUTES:-7}
BATCH=${BATCH:-512}  # gpu3 (MPS, 512): 2.2x the patches per second of gpu1 (no MPS, 256); 1024 gave no more
LR=${LR:-1e-3}
RUN=${RUN:-gpu}
read -r -a TRAIN_SETS <<<"${TRAIN_SETS:-T91 BSD200}"
read -r -a TRAIN_ARGS <<<"${TRAIN_ARGS:-}"
export EDGE_SR_DATA=${EDGE_SR_DATA:-.data} OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
mkdir -p logs "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"

# Six small processes on one GPU are time-sliced unless the CUDA MPS daemon lets their kernels run
# side by side. Start it where it exists and works; otherwise train without it.
if [ "${MPS:-1}" = 1 ] && command -v nvidia-cuda-mps-control >/dev/null; then
  export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps_pipe CUDA_MPS_LOG_DIRECTORY=/tmp/mps_log
  mkdir -p "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"
  if nvidia-cuda-mps-control -d && timeout 60 "$PY" -c "import torch; torch.ones(1, device='cuda').sum().item()"; then
    echo "MPS: on"
  else
    echo quit | nvidia-cuda-mps-control 2>/dev/null
    unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY
    echo "MPS: failed to start; training without it"
  fi
else
  echo "MPS: off"
fi

pack() {
  tar czf "$OUT/gpu_run.tgz.tmp" training/weights runs logs 2>/dev/null && mv "$OUT/gpu_run.tgz.tmp" "$OUT/gpu_run.tgz"
}

for model in fsrcnn fsrcnn-s; do
  for scale in 2 3 4; do
    id=${model}_x${scale}
    teach=()
    [ "${TEACH:-0}" = 1 ] && [ "$model" = fsrcnn-s ] && teach=(--teacher "training/weights/fsrcnn_x$scale.pt" --teacher-weight "${TEACHER_WEIGHT:-0.5}")
    "$PY" -m training.train --model "$model" --scale "$scale" --init-from "training/weights/$id.pt" \
      --minutes "$MINUTES" --iters 100000000 --batch "$BATCH" --lr "$LR" --eval-every "${EVAL_EVERY:-1000}" \
      --train-sets "${TRAIN_SETS[@]}" --run-dir "runs/$RUN" ${TRAIN_ARGS[@]+"${TRAIN_ARGS[@]}"} ${teach[@]+"${teach[@]}"} >"logs/gpu_$id.log" 2>&1 &
  done
done
while sleep 45; jobs -r | grep -q .; do
  pack
  for f in "runs/$RUN"/*/log.csv; do echo "$f: $(tail -n 1 "$f")"; done
  nvidia-smi --query-gpu=utilization.gpu --format=csv,noheader 2>/dev/null
done
wait
pack
[ -n "${CUDA_MPS_PIPE_DIRECTORY:-}" ] && echo quit | nvidia-cuda-mps-control
for f in logs/gpu_*.log; do echo "== $f"; tail -n 3 "$f"; done
