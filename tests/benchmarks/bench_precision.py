"""Is bfloat16 ever faster than float32 on this CPU? Interleaved A/B of the two in one process.

Run:  python tests/benchmarks/bench_precision.py [--arch k400_k710_uniformerv2_b16_8x224 motion-tiny]
      [--batch 1 2] [--runs 5]      (prints numbers; not collected by pytest)

To see a CPU without native bfloat16 on one that has it, cap the kernels for the run:
      ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 python ...

For each architecture and batch size, one float32 and one bfloat16 predictor (the engine uvtag
runs: fused path, bfloat16 weights cast once) are timed in turn, --runs rounds, so that drift of
the machine hits both alike; the medians and the bf16/fp32 time ratio are printed, with the CPU's
instruction sets and the kernels each precision runs.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from uvtag.bench.models import bench_model
from uvtag.infer.predict import Predictor
from uvtag.model.kernels import cpu_info, kernel_plan


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", nargs="+", default=["k400_k710_uniformerv2_b16_8x224", "motion-tiny"])
    ap.add_argument("--batch", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    print(cpu_info().summary(), f"({torch.get_num_threads()} threads, torch {torch.__version__})")
    for dtype in (torch.float32, torch.bfloat16):
        print(f"  {str(dtype).removeprefix('torch.')}: {kernel_plan(dtype)}")
    for arch in args.arch:
        bm = bench_model(arch)
        cfg = bm.config
        for batch in args.batch:
            clips = torch.randn(batch, 3, cfg.t_size, cfg.input_resolution, cfg.input_resolution)
            runs = {dtype: Predictor(bm.fresh_model(), torch.device("cpu"), dtype, batch)
                    for dtype in (torch.float32, torch.bfloat16)}
            times: dict[torch.dtype, list[float]] = {d: [] for d in runs}
            for p in runs.values():
                p.logits(clips)  # warm-up: packing, casting, allocation
            for _ in range(args.runs):
                for dtype, p in runs.items():
                    t0 = time.perf_counter()
                    p.logits(clips)
                    times[dtype].append(time.perf_counter() - t0)
            fp32, bf16 = (statistics.median(times[d]) for d in (torch.float32, torch.bfloat16))
            print(f"{arch} batch {batch}: fp32 {fp32 * 1e3:.1f} ms, bf16 {bf16 * 1e3:.1f} ms, "
                  f"bf16/fp32 time {bf16 / fp32:.2f}x ({args.runs} interleaved runs, medians)")


if __name__ == "__main__":
    main()
