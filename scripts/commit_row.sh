#!/usr/bin/env bash
# Files one finished run as a row of docs/RESULTS.md under results/<row>/:
# the final weights without optimiser state (fsa export), and row.json with
# the top-1 that `fsa test` gives them (the figure tests/results checks).
#
#   scripts/commit_row.sh ROW_DIR "ROW NAME" CONFIG CHECKPOINT DATA_ROOT [KEY=VALUE...]
#
# Any KEY=VALUE after DATA_ROOT is passed to `fsa test` as --set and recorded in
# row.json. precision and memory_format, unless given there, are the run's own
# (its config.yaml beside checkpoints/), so the check evaluates the way the run
# did and does not depend on what "auto" picks on the checking machine.
#
# e.g. scripts/commit_row.sh results/c10_if100_ce "CE" \
#        configs/cifar10_lt_resnet32_im100.yaml runs/c10_if100_ce/checkpoints/last.pt /tmp/c10
set -euo pipefail
row_dir=$1 name=$2 config=$3 checkpoint=$4 root=$5
shift 5
overrides=("threads=1" "$@")
run_config=$(dirname "$(dirname "$checkpoint")")/config.yaml
for key in precision memory_format; do
  [[ " $* " == *" $key="* ]] && continue
  value=$(sed -n "s/^$key: *//p" "$run_config" 2>/dev/null | head -1)
  [[ -n $value ]] || { echo "commit_row.sh: no '$key' in $run_config; give $key=... after DATA_ROOT" >&2; exit 2; }
  overrides+=("$key=$value")
done
set_args=()
for kv in "${overrides[@]}"; do set_args+=(--set "$kv"); done
fsa=${FSA:-build/fsa}
mkdir -p "$row_dir"
"$fsa" export --checkpoint "$checkpoint" --out "$row_dir/last.pt"
out=$(mktemp -d)
"$fsa" test --quiet --config "$config" --set dataset.root="$root" "${set_args[@]}" \
  --checkpoint "$row_dir/last.pt" --out "$out" > "$out/test.log" 2>&1 || {
  cat "$out/test.log"; exit 1; }
python3 - "$out/metrics.json" "$row_dir/row.json" "$name" "$config" "${overrides[@]}" <<'PY'
import json, sys
metrics, row_json, name, config = sys.argv[1:5]
overrides = sys.argv[5:]
top1 = json.load(open(metrics))["test"]["top1"]
json.dump({"row": name, "config": config, "set": overrides, "checkpoint": "last.pt",
           "top1": top1}, open(row_json, "w"), indent=1)
print(f"{name}: top-1 {100 * top1:.2f}% written to {row_json}")
PY
rm -rf "$out"
