#!/usr/bin/env bash
# One prepared GPU session (issue 5): builds fsa against the machine's CUDA
# LibTorch (from its Python torch), then measures
#   1. PyTorch's eager training images/s for the same model (bench/pytorch_reference.py),
#   2. `fsa bench --device cuda` (with its bf16-mixed and channels-last steps),
#   3. the full reference CIFAR-10-LT schedule at IF 100 as one `fsa run --device cuda`.
# The device tool allows 600 s per call, so the work comes in stages, one call
# each, back to back while the machine is warm (it keeps build-gpu/ between calls):
#   scripts/gpu_check.sh build      # unpack, configure, build    (~3-5 min)
#   scripts/gpu_check.sh measure    # data, PyTorch reference, fsa bench (< 5 min)
#   scripts/gpu_check.sh full       # the 200 + 40 epoch schedule (< 5.5 min)
#   scripts/gpu_check.sh            # all three in one go (no time limit)
# Needs, carried in .dev/: debs/*.deb (Debian 12's yaml-cpp, CLI11, spdlog, fmt,
# nlohmann-json, protobuf, zlib -dev packages and their libraries) and
# cifar10-jpeg.tar.gz. Writes logs and JSON under $OUT (default ./gpu_out).
# The machine has nvcc, CMake, ninja, numpy and Pillow (device/KINDS.md).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu_out}
mkdir -p "$OUT"
STAGE=${1:-all}
exec > >(tee -a "$OUT/gpu_check.log") 2>&1
t_start=$(date +%s)
stamp() { echo "== $(( $(date +%s) - t_start ))s: $*"; }

want() { [ "$STAGE" = all ] || [ "$STAGE" = "$1" ]; }
stamp "stage $STAGE: machine"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'
nproc

stamp "unpack Debian packages"
D=/tmp/fsa_deps
mkdir -p "$D"
for f in .dev/debs/*.deb; do dpkg -x "$f" "$D"; done
# Debian's libz.so points at /lib/...so.1.2.13; use this machine's zlib instead.
ln -sf "$(ls /usr/lib/x86_64-linux-gnu/libz.so.1* /lib/x86_64-linux-gnu/libz.so.1* 2>/dev/null | head -1)" \
  "$D/usr/lib/x86_64-linux-gnu/libz.so"
export LD_LIBRARY_PATH="$D/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
export PATH="$D/usr/bin:$PATH"
[ -d /usr/local/cuda/bin ] && export PATH="$PATH:/usr/local/cuda/bin"

command -v nvcc > /dev/null || echo "warning: no nvcc on PATH; find_package(Torch) needs the CUDA toolkit"
gen=Ninja; command -v ninja > /dev/null || gen="Unix Makefiles"

if want build; then
stamp "configure"
torch_prefix=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
cmake -S . -B build-gpu -G "$gen" -DCMAKE_BUILD_TYPE=Release -DFSA_WITH_OPENCV=OFF \
  -DFSA_BUILD_TESTS=OFF -DCMAKE_PREFIX_PATH="$torch_prefix;$D/usr" \
  -DProtobuf_PROTOC_EXECUTABLE="$D/usr/bin/protoc" -DProtobuf_INCLUDE_DIR="$D/usr/include" \
  -DProtobuf_LIBRARY="$D/usr/lib/x86_64-linux-gnu/libprotobuf.so" \
  -DZLIB_INCLUDE_DIR="$D/usr/include" -DZLIB_LIBRARY="$D/usr/lib/x86_64-linux-gnu/libz.so" \
  -DFSA_FIRST_INCLUDE_DIR="$D/usr/include" -DCMAKE_POLICY_VERSION_MINIMUM=3.5 \
  -DTORCH_CUDA_ARCH_LIST=9.0 -DCMAKE_CUDA_ARCHITECTURES=90 > "$OUT/configure.log" 2>&1
rc=$?
tail -n 30 "$OUT/configure.log"
[ $rc -eq 0 ] || { stamp "configure failed"; exit 1; }
stamp "build"
cmake --build build-gpu -j "$(nproc)" > "$OUT/build.log" 2>&1
rc=$?
grep -E "error|Error" "$OUT/build.log" | head -30
cmake --version | head -1
[ $rc -eq 0 ] || { tail -n 40 "$OUT/build.log"; stamp "build failed"; exit 1; }
./build-gpu/fsa --version
ldd build-gpu/fsa | grep -E "cudart|torch_cuda|protobuf" || true
fi
[ -x build-gpu/fsa ] || { stamp "no build-gpu/fsa: run the build stage first"; exit 1; }

if want measure || want full; then
  if [ ! -f /tmp/c10bin/cifar-10-batches-bin/test_batch.bin ]; then
stamp "CIFAR-10 JPEG -> binary"
mkdir -p /tmp/c10jpg && tar xzf .dev/cifar10-jpeg.tar.gz -C /tmp/c10jpg
root=$(dirname "$(find /tmp/c10jpg -maxdepth 3 -type d -name train | head -1)")
python3 scripts/jpeg_folder_to_cifar_bin.py "$root" /tmp/c10bin
  fi
fi

if want measure; then
stamp "PyTorch eager reference, ResNet-32, batch 128"
timeout 120 python3 bench/pytorch_reference.py --device cuda --depth 32 --epochs 4 \
  --json "$OUT/pytorch_reference.json" | tail -n 3

stamp "fsa bench --device cuda"
timeout 150 ./build-gpu/fsa bench --device cuda --model resnet32 --batch 128 --iters 10 \
  --warmup 3 --json "$OUT/bench_cuda.json" | tail -n 45
fi

if want full; then
stamp "full reference schedule: CIFAR-10-LT IF 100, ResNet-32, 200 + 40 epochs"
timer=""; [ -x /usr/bin/time ] && timer="/usr/bin/time -v"
$timer timeout ${FULL_RUN_TIMEOUT:-330} ./build-gpu/fsa run --quiet --device cuda \
  --config configs/cifar10_lt_resnet32_im100.yaml --set dataset.root=/tmp/c10bin \
  ${FULL_RUN_SET:-} --out /tmp/c10_full > "$OUT/full_run.log" 2> "$OUT/full_run.time"
echo "rc=$?"
tail -n 32 "$OUT/full_run.log"
grep -E "Elapsed|Maximum resident" "$OUT/full_run.time"
cp /tmp/c10_full/metrics.json "$OUT/full_run_metrics.json" 2>/dev/null
fi
stamp "done"
