#!/usr/bin/env bash
# On the GPU machine (device tool), over the binary build.sh made: the model self-test under each variant (they
# must pass before they are timed), then two rounds of the persistent decode's A/B at 2.7b and 1.3b, batch 1,
# variants alternated within a round. With "selftest" first, the whole `selftest --device cuda` of the base too.
# Everything lands in $OUT/issue21-ab.txt; the last lines printed are the whole-step and phase lines.
set -uo pipefail
cd "$(dirname "$0")/../../.."
out=${OUT:-/tmp/out}; mkdir -p "$out"; log=$out/issue21-ab.txt
xz -dkf out/exp/mamba2-exp.xz && chmod +x out/exp/mamba2-exp
bin=out/exp/mamba2-exp
variants=("" "evict-first" "early-pre" "evict-first,early-pre")
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,power.draw --format=csv >"$log" 2>&1
if [ "${1:-}" = selftest ]; then
    echo "== selftest --device cuda (base)" >>"$log"
    timeout 420 $bin selftest --device cuda >>"$log" 2>&1; echo "rc=$?" >>"$log"
fi
for v in "${variants[@]}"; do
    echo "== selftest --device cuda --only model, MAMBA2_EXP=$v" >>"$log"
    MAMBA2_EXP=$v timeout 120 $bin selftest --device cuda --only model 2>&1 | tail -3 >>"$log"
done
for r in 1 2; do
    for s in 2.7b 1.3b; do
        for v in "${variants[@]}"; do
            echo "== round $r $s MAMBA2_EXP=$v" >>"$log"
            MAMBA2_EXP=$v timeout 120 $bin bench --device cuda --weights-dtype bf16 --shape $s --profile --batch 1 >>"$log" 2>&1
        done
    done
done
grep -E "^== round|whole step|persistent|phases|passed|failed" "$log" | tail -60
