#!/usr/bin/env bash
# The 224 px student on a lent GPU (docs/training.md, "On a lent GPU"), in device calls that each carry one piece
# made here by `make gpu-train-carry` (the data set does not travel with the repository):
#   training/gpu_train.sh --receive       every call but the last: keep the piece this call carried
#   training/gpu_train.sh --minutes M     the last call, with .gpu/train/stream.sha256: check, unpack, then run
# The run: the Lite1 teacher at 240 px (the recipe of runs/teacher-lite1-d2, docs/training.md), a timing run of the
# student, the student (training/configs/art5-d2-224-gpu.yaml) for as many epochs as fit M minutes, then
# training.compare against the default on the dev split and the export with its calibration to runs/. To $OUT (or
# --out DIR): log.txt, results.tar.gz (records, metrics, timing, comparison, card) and the exported checkpoint in
# pieces under 16 MiB (the device tool's limit a file): `cat art-category.pt.part-* > art-category.pt`.
# Flags after `--` go to the student's training.train (e.g. `-- --image-size 192 --resize 219 --lr 0.005`).
# --dry-run --data DIR: the same steps on this CPU with a small data set, a teacher of random weights, 64 px and one
# epoch (tests/integration/test_gpu_train.py), so that the first GPU run is not the script's first run.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=python3
[[ -x .venv/bin/python ]] && PY=.venv/bin/python
work=/tmp/artserve-train minutes=4 dry=0 out=${OUT:-runs/gpu-out} data="" extra=()
while (($#)); do
  case $1 in
    --receive)
      mkdir -p "$work/pieces" && mv .gpu/train/piece-* "$work/pieces/" && ls -l "$work/pieces"
      exit 0
      ;;
    --minutes) minutes=$2 && shift ;;
    --out) out=$2 && shift ;;
    --data) data=$2 && shift ;;
    --dry-run) dry=1 ;;
    --) shift && extra=("$@") && break ;;
    *) echo "unknown argument: $1" >&2 && exit 2 ;;
  esac
  shift
done
mkdir -p "$out" && out=$(realpath "$out")
exec > >(tee "$out/log.txt") 2>&1

if ((dry)); then
  [[ -d $data ]] || { echo "--dry-run needs --data DIR (an ImageFolder with train/ and val/)" >&2 && exit 2; }
  work=$(mktemp -d) && runs=$work/runs
  trap 'rm -rf "$work"' EXIT
  "$PY" -c "import sys, torch; from training.teacher_model import Teacher; \
torch.save(Teacher('lite1', [str(i) for i in range(1000)]).net.state_dict(), sys.argv[1])" "$work/random-lite1.pth"
  teacher=(--weights "$work/random-lite1.pth" --image-size 64 --epochs 1)
  student=(--image-size 64 --resize 72 --batch-size 8)
  avoid=() timing_steps=3 max_epochs=1
else
  mkdir -p "$work/pieces" && mv .gpu/train/piece-* "$work/pieces/" 2>/dev/null || true
  cat "$work"/pieces/piece-* > "$work/stream.tar"
  echo "$(cat .gpu/train/stream.sha256)  $work/stream.tar" | sha256sum -c - || {
    echo "the pieces in $work/pieces do not make the stream make gpu-train-carry packed: $(ls "$work/pieces")" >&2
    exit 1
  }
  tar -xf "$work/stream.tar" -C "$work" && rm "$work/stream.tar"
  "$PY" -m pip install -q --no-index --no-deps --upgrade --target "$work/site" "$work"/whl/*.whl
  export PYTHONPATH=$work/site${PYTHONPATH:+:$PYTHONPATH}
  data=$work/art5 runs=runs
  rm -rf runs/gpu-teacher-lite1 runs/gpu-timing runs/gpu-student  # a second try on a warm machine starts afresh
  teacher=(--epochs 5) student=() avoid=(--dev-avoid "$work/dev-avoid.pt") timing_steps=30 max_epochs=60
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
fi
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"

echo "== teacher: Lite1 at 240 px $(date -u +%T)"
"$PY" -m training.teacher --data "$data" --variant lite1 --warmup-epochs 0.5 --views crop-flip \
  --class-weights balanced "${avoid[@]}" "${teacher[@]}" --output "$runs/gpu-teacher-lite1"
config=(--config training/configs/art5-d2-224-gpu.yaml --data "$data" "${avoid[@]}"
  --teacher "$runs/gpu-teacher-lite1/teacher.pt" "${student[@]}" "${extra[@]}")

echo "== student: timing $(date -u +%T)"
"$PY" -m training.train "${config[@]}" --output "$runs/gpu-timing" --max-steps "$timing_steps"
epochs=$("$PY" - "$runs/gpu-timing/timing.yaml" "$minutes" "$max_epochs" <<'PY'
import sys

import yaml

epoch = yaml.safe_load(open(sys.argv[1]))["epoch_seconds_extrapolated"] * 1.25  # + the dev split each epoch
print(max(1, min(int(sys.argv[3]), int(float(sys.argv[2]) * 60 / epoch))))
PY
)
echo "== student: $epochs epochs in about $minutes minutes $(date -u +%T)"
"$PY" -m training.train "${config[@]}" --output "$runs/gpu-student" --epochs "$epochs" --time-budget "$((minutes + 2))"

echo "== compare with the default on dev $(date -u +%T)"
"$PY" -m training.compare model_store/art-category.pt "$runs/gpu-student/best.pt" --data "$data" "${avoid[@]}" \
  --json "$runs/gpu-student/compare.json"

echo "== export with calibration $(date -u +%T)"
"$PY" -m training.export "$runs/gpu-student" --output "$runs/gpu-student/export/art-category.pt" --max-error 0.02 0.05 0.1 \
  --notes "student from training/gpu_train.sh ($epochs epochs${extra[*]:+, ${extra[*]}})"

tar -czf "$out/results.tar.gz" -C "$runs" --exclude='*.pt' --exclude='*.pth' gpu-teacher-lite1 gpu-timing gpu-student
split -b 15m -d "$runs/gpu-student/export/art-category.pt" "$out/art-category.pt.part-"
ls -l "$out"
echo "== done $(date -u +%T)"
