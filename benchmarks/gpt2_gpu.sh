#!/usr/bin/env bash
# zero-bench-gpu-gpt2 — GPT-2 on one GPU (the cuda backend, zero-gpt2's cuBLAS path): step time,
# tokens/s and model FLOP utilisation at ZERO_STAGE 0, 1, 2, 3 (one rank: the stages differ in
# what they keep and copy, not in what a second rank would send), for each GEMM mode of zero-gpt2:
# --gemm fp32 (exact), tf32 and bf16 (tensor cores; with ZERO_DTYPE=bf16 weights).
#   MFU = (6 * Psi + 12 * L * T * C) * tokens/s (weights forward + backward, and the attention
#   scores and their use), over the card's dense peak for the arithmetic used: fp32 (H100 SXM /
#   H200: 67, H100 PCIe: 51, A100: 19.5 TFLOPS), TF32 (495, 378, 156) or bf16 (989, 756, 312), by
#   the name nvidia-smi gives; PEAK_FP32 / PEAK_TF32 / PEAK_BF16 override.
# Environment: BIN (default: the directory of this script, as installed in build/bin), GPT2_ARGS
# (model flags; default a 12-layer, 768-wide model at T=256, batch 8), STEPS (default 12; the
# median of the steps after the first two is reported). "peak MiB" is libzero's device peak
# (report memory.device_peak_bytes): the model's activations and cuBLAS's workspace are not in it.
# Exit 77 without a usable GPU.
set -uo pipefail
bin=${BIN:-$(cd "$(dirname "$0")" && pwd)}
args=(${GPT2_ARGS:---layers 12 --heads 12 --dim 768 --seq 256 --batch 8})
steps=${STEPS:-12}
log=$(mktemp -d)
trap 'rm -rf "$log"' EXIT

if ! ZERO_DEVICE=cuda "$bin/zero-gpt2" --layers 1 --heads 1 --dim 8 --seq 4 --batch 1 --steps 1 \
        --quiet > "$log/probe.txt" 2>&1; then
    cat "$log/probe.txt"
    grep -q "cannot use a GPU" "$log/probe.txt" && { echo "no usable GPU: skipped"; exit 77; }
    exit 1
fi
name=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
case "$name" in
*H100*PCIe*) p32=51 ptf=378 pbf=756 ;;
*H100*|*H200*|*GH200*) p32=67 ptf=495 pbf=989 ;;
*A100*) p32=19.5 ptf=156 pbf=312 ;;
*) p32=0 ptf=0 pbf=0 ;;
esac
p32=${PEAK_FP32:-$p32}
ptf=${PEAK_TF32:-$ptf}
pbf=${PEAK_BF16:-$pbf}
echo "GPU: ${name:-unknown}; peaks for MFU: fp32 $p32, TF32 $ptf, bf16 $pbf TFLOPS; model: ${args[*]}"
echo "(peak MiB: libzero's device peak; the model's activations are not in it)"
printf '%-5s %-6s %10s %12s %8s %12s\n' gemm stage "ms/step" "tokens/s" "MFU" "peak MiB"
best=0
for mode in fp32 tf32 bf16; do
  case $mode in fp32) peak=$p32 dtype=fp32 ;; tf32) peak=$ptf dtype=fp32 ;; bf16) peak=$pbf dtype=bf16 ;; esac
  for stage in 0 1 2 3; do
    tag=${mode}_s$stage
    ZERO_DEVICE=cuda ZERO_STAGE=$stage ZERO_DTYPE=$dtype ZERO_REPORT="$log/$tag.json" \
        "$bin/zero-gpt2" "${args[@]}" --gemm $mode --steps "$steps" > "$log/$tag.txt" 2>&1 ||
        { cat "$log/$tag.txt"; echo "$mode stage $stage FAILED"; exit 1; }
    # "step    3/12 | loss ... | 12345 tok/s | 123.4 ms | mem ..."
    ms=$(sed -nE 's/^step +([0-9]+)\/[0-9]+ .*\| ([0-9.]+) ms \|.*/\1 \2/p' "$log/$tag.txt" |
         awk '$1 > 2 {print $2}' | sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}')
    params=$(grep -oE '[0-9]+ parameters' "$log/$tag.txt" | head -1 | cut -d' ' -f1)
    peakmib=$(grep -oE '"device_peak_bytes": [0-9]+' "$log/$tag.json" | grep -oE '[0-9]+$')
    line=$(awk -v ms="$ms" -v p="$params" -v peak="$peak" -v a="${args[*]}" -v pk="$peakmib" '
        BEGIN {
            n = split(a, f, " ");
            for (i = 1; i < n; i++) { v[f[i]] = f[i+1] }
            L = v["--layers"]; T = v["--seq"]; C = v["--dim"]; B = v["--batch"];
            tok = B * T / (ms / 1000.0);
            flops = (6.0 * p + 12.0 * L * T * C) * tok;
            mfu = peak > 0 ? flops / (peak * 1e12) : 0;
            printf "%.1f %.0f %.4f %.0f", ms, tok, mfu, pk / 1048576.0
        }')
    read -r ms_r tok_r mfu_r mib_r <<< "$line"
    printf '%-5s %-6s %10s %12s %7.1f%% %12s\n' "$mode" "$stage" "$ms_r" "$tok_r" "$(awk -v m="$mfu_r" 'BEGIN{print m*100}')" "$mib_r"
    best=$(awk -v a="$best" -v b="$mfu_r" 'BEGIN{print (b > a) ? b : a}')
  done
done
echo "ratio=$best (best MFU over stages 0-3 and the three GEMM modes, each against its own peak)"
