#!/usr/bin/env bash
# Phase II's peak resident memory at iNaturalist 2018's 8,142 classes (issue 13;
# docs/SCALING.md): a list-file dataset of placeholder images (one 32×32 JPEG listed
# IMAGES times under every class, through links), a ResNet-10 trained on it for one epoch, then
# `fsa extract` under GNU time, once as it runs by default (confusing classes only) and
# once with feature.score_matrix (the C² matrix kept). Run it alone on the machine.
#
#   scripts/phase_ii_memory.sh [CLASSES] [IMAGES] [OUT_DIR]   (8142 2 /tmp/fsa_phase_ii_memory)
set -euo pipefail
cd "$(dirname "$0")/.."
classes=${1:-8142}
images=${2:-2}
out=${3:-/tmp/fsa_phase_ii_memory}
fsa=$PWD/build/fsa
[ -x "$fsa" ] || { echo "phase_ii_memory: build fsa first ($fsa is missing)" >&2; exit 1; }
mkdir -p "$out/data"
/usr/bin/python3 - "$out/data" "$classes" "$images" <<'PY'
import os, sys
from PIL import Image
root, classes, images = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
Image.new("RGB", (32, 32), (120, 60, 200)).save(f"{root}/placeholder.jpg")
with open(f"{root}/train.txt", "w") as f:
    for c in range(classes):
        for i in range(images + 1):  # one image a path: links to the placeholder
            name = f"c{c}_{i}.jpg"
            if not os.path.lexists(f"{root}/{name}"):
                os.symlink("placeholder.jpg", f"{root}/{name}")
            if i < images:
                f.write(f"{name} {c}\n")
with open(f"{root}/test.txt", "w") as f:
    for c in range(classes):
        f.write(f"c{c}_{images}.jpg {c}\n")
PY
cat > "$out/config.yaml" <<YAML
random_seed: 0
dataset:
  name: iNaturalist-LT
  root: $out/data
  train_list: train.txt
  test_list: test.txt
  num_classes: $classes
  transform: {crop_size: 32, resize_size: 32}
model: {name: resnet10}
feature: {cam_layers: layer4}
finetune: {Nf: 3}
test: {batch_size: 256}
log: {progress: quiet}
train:
  num_epoch: 1
  batch_size: 256
  optimizer: {name: SGD, kwargs: {lr: 0.01, momentum: 0.9}}
  lr_scheduler: {name: constant}
YAML
if [ ! -f "$out/phase_i/checkpoints/last.pt" ]; then
  "$fsa" train --config "$out/config.yaml" --out "$out/phase_i" > "$out/phase_i.log" 2>&1
fi
extract() {  # NAME ARGS...
  local name=$1; shift
  rm -rf "${out:?}/$name"
  /usr/bin/time -f '%M %e' -o "$out/$name.time" "$fsa" extract --config "$out/config.yaml" \
    --checkpoint "$out/phase_i/checkpoints/last.pt" --out "$out/$name" "$@" > "$out/$name.log" 2>&1
  read -r peak_kib wall < "$out/$name.time"
  printf '%s: %d classes, peak resident %d MiB, wall %.0f s, analysis.pt %d kB\n' "$name" \
    "$classes" $((peak_kib / 1024)) "$wall" $(($(stat -c %s "$out/$name/analysis.pt") / 1000))
}
extract phase_ii
extract phase_ii_score_matrix --set feature.score_matrix=true
