#!/usr/bin/env bash
# Installs what fsa needs from Debian 12's packages and builds it into build/.
# Safe to run again: apt skips what is installed, ccache and CMake reuse work.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  build-essential cmake ccache pkg-config
  libtorch-dev libopenblas0-pthread            # tensors, autograd, optimisers; fast BLAS
  libopencv-core-dev libopencv-imgproc-dev libopencv-imgcodecs-dev
  libyaml-cpp-dev libcli11-dev libspdlog-dev libfmt-dev nlohmann-json3-dev zlib1g-dev
  libprotobuf-dev protobuf-compiler           # TensorBoard event files
  libgloo-dev                                 # data-parallel training (c10d with Gloo)
  gnuplot-nox                                 # report charts
  libgtest-dev libbenchmark-dev
  strace                                      # kills at save points (tests/fault)
  dataset-fashion-mnist                       # the quickstart's data
  python3-torch python3-torchvision           # tests: files that PyTorch writes
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

jobs=$(nproc)
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j "$jobs"
