#!/usr/bin/env bash
# GPU figures for every hot loop of vdgtool (issue 17), in a few minutes on one CUDA device.
# Writes benchmarks/gpu_out/*.txt; copy the tables into benchmarks/GPU.md with the device named.
#
#   bash benchmarks/gpu.sh            # needs a CUDA device and ../shared/data
#   QUICK=1 bash benchmarks/gpu.sh    # fewer sizes/batches (a smoke run)
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
out=benchmarks/gpu_out
mkdir -p "$out"
python - <<'PY' | tee "$out/device.txt"
import os, platform, torch
assert torch.cuda.is_available(), "benchmarks/gpu.sh needs a CUDA device"
p = torch.cuda.get_device_properties(0)
print(f"device: {p.name}, {p.total_memory / 2**30:.0f} GiB, CC {p.major}.{p.minor}; torch {torch.__version__}, "
      f"CUDA {torch.version.cuda}; {os.cpu_count()} CPU cores ({platform.processor() or platform.machine()})")
PY
threads=$(nproc)
batches="32 64 128 256"; models="r3d_18,r2plus1d_18,i3d,tsm:resnet50"
if [ "${QUICK:-0}" = 1 ]; then batches="32"; models="r3d_18"; fi
export VDGTOOL_COMPILE_CACHE="$PWD/$out/compile-cache"

# 1. flow: torch TV-L1 pairs/s at 112^2 and 224^2, eager and compiled, against OpenCV DualTVL1 on all CPU cores
python benchmarks/flow/bench_flow.py --device cuda --sizes 112 224 --batches $batches --threads "$threads" \
  --compile --cv-pairs 6 | tee "$out/flow.txt"
# cold vs warm compile warm-up (second process, same cache directory)
python benchmarks/flow/bench_compile.py --size 224 --batch 32 --threads "$threads" | tee "$out/flow_compile.txt" || true

# 2. training step rate with AMP bf16: plain, channels_last, torch.compile
python benchmarks/gpu/bench_gpu.py step --models "$models" --batch 32 --amp bf16 | tee "$out/step.txt"
python benchmarks/gpu/bench_gpu.py step --models "$models" --batch 32 --amp bf16 --channels-last | tee -a "$out/step.txt"
python benchmarks/gpu/bench_gpu.py step --models r3d_18 --batch 32 --amp bf16 --compile | tee -a "$out/step.txt"

# 3. the loader's clip rate (to set beside r3d_18's step rate at batch 32): decoded in the workers, and as JPEG
#    bytes decoded on the GPU (--decode cuda, one nvJPEG call per batch)
python benchmarks/gpu/bench_gpu.py loader --model r3d_18 --batch 32 --workers 0 4 8 "$threads" --decode cpu cuda \
  | tee "$out/loader.txt"

# 4. nvJPEG batch decode against CPU JPEG decoding
python benchmarks/gpu/bench_gpu.py nvjpeg --device cuda | tee "$out/nvjpeg.txt"

# 5. synth-video frames/s on the device
python benchmarks/synth/bench_synth.py --device cuda | tee "$out/synth.txt"
echo "done: $out/"
