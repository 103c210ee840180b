#!/usr/bin/env bash
# Builds the issue-21 experiment binary here (Swift is not on the GPU machine): experiments.patch applied to the
# working tree, a static release build, stripped and xz'd into out/exp/mamba2-exp.xz, then the patch taken back
# out. One binary serves every variant: MAMBA2_EXP=evict-first,early-pre selects them at run time.
# Then, with a device lent: run(command="bash benchmarks/experiments/issue21/device-ab.sh [selftest]",
#                               carry=["out/exp"], timeout_s=600)
set -euo pipefail
cd "$(dirname "$0")/../../.."
patch=benchmarks/experiments/issue21/experiments.patch
git apply --check "$patch" || { echo "experiments.patch no longer applies to this tree: redo it on the current persistent kernel" >&2; exit 1; }
git apply "$patch"
trap 'git apply -R "$patch"' EXIT
swift build -c release --static-swift-stdlib --product mamba2 -Xcc -O2 --scratch-path .build-static
mkdir -p out/exp
strip -o out/exp/mamba2-exp .build-static/release/mamba2
xz -6 -T2 -f out/exp/mamba2-exp
ls -la out/exp
