#!/usr/bin/env bash
# Peak resident memory of the quickstart run and of a CIFAR-10-LT run (issue 5, "Memory"),
# and the resident memory at the end of every epoch (metrics.json's history rss_mib), so
# that growth from epoch to epoch shows. Run it alone on the machine: it trains.
#
#   scripts/memory_check.sh [OUT_DIR]          (default /tmp/fsa_memory)
#
# The CIFAR-10-LT run uses the shared JPEGs (../shared/data/cifar10-jpeg.tar.gz, unpacked
# into OUT_DIR) with configs/cifar10_lt_resnet32_im100.yaml, cut to 3 + 2 epochs.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-/tmp/fsa_memory}
fsa=build/fsa
[ -x "$fsa" ] || { echo "memory_check: build fsa first ($fsa is missing)" >&2; exit 1; }
command -v /usr/bin/time >/dev/null || { echo "memory_check: needs GNU time (apt-get install time)" >&2; exit 1; }
mkdir -p "$out"

# run NAME ARGS...: runs fsa under GNU time, prints peak RSS and the per-epoch RSS.
run() {
  local name=$1; shift
  rm -rf "$out/$name"
  /usr/bin/time -f '%M %e' -o "$out/$name.time" "$fsa" run --quiet --out "$out/$name" "$@" \
    > "$out/$name.log" 2>&1
  read -r peak_kib wall < "$out/$name.time"
  python3 - "$out/$name/metrics.json" "$name" "$peak_kib" "$wall" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1]))
name, peak, wall = sys.argv[2], int(sys.argv[3]) / 1024, float(sys.argv[4])
print(f"{name}: peak resident {peak:.0f} MiB, wall {wall:.0f} s")
for phase in ("phase_i", "phase_iii"):
    rss = [e.get("rss_mib") for e in m[phase]["history"]]
    print(f"  {phase} resident at each epoch's end (MiB): " +
          " ".join("-" if r is None else f"{r:.0f}" for r in rss))
EOF
}

run quickstart
data="$out/cifar10"
if [ ! -d "$data/train" ]; then
  mkdir -p "$data" && tar xzf ../shared/data/cifar10-jpeg.tar.gz -C "$data"
fi
run cifar10_lt --config configs/cifar10_lt_resnet32_im100.yaml --set dataset.root="$data" \
  --set phase_i.train.num_epoch=3 --set phase_iii.train.num_epoch=2
