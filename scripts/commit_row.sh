#!/usr/bin/env bash
# Files one finished run as a row of docs/RESULTS.md under results/<row>/:
# the final weights without optimiser state (fsa export), and row.json with
# the top-1 that `fsa test` gives them (the figure tests/results checks).
#
#   scripts/commit_row.sh ROW_DIR "ROW NAME" CONFIG CHECKPOINT DATA_ROOT
#
# e.g. scripts/commit_row.sh results/c10_if100_ce "CE" \
#        configs/cifar10_lt_resnet32_im100.yaml runs/c10_if100_ce/checkpoints/last.pt /tmp/c10
set -euo pipefail
row_dir=$1 name=$2 config=$3 checkpoint=$4 root=$5
fsa=${FSA:-build/fsa}
mkdir -p "$row_dir"
"$fsa" export --checkpoint "$checkpoint" --out "$row_dir/last.pt"
out=$(mktemp -d)
"$fsa" test --quiet --config "$config" --set dataset.root="$root" --set threads=1 \
  --checkpoint "$row_dir/last.pt" --out "$out" > "$out/test.log" 2>&1 || {
  cat "$out/test.log"; exit 1; }
python3 - "$out/metrics.json" "$row_dir/row.json" "$name" "$config" <<'PY'
import json, sys
metrics, row_json, name, config = sys.argv[1:5]
top1 = json.load(open(metrics))["test"]["top1"]
json.dump({"row": name, "config": config, "set": ["threads=1"], "checkpoint": "last.pt",
           "top1": top1}, open(row_json, "w"), indent=1)
print(f"{name}: top-1 {100 * top1:.2f}% written to {row_json}")
PY
rm -rf "$out"
