"""How close to the matmul peak can a UniFormerV2 forward get on this machine, kernel by kernel?

Run:  python tests/benchmarks/bench_bound.py [--arch k400_k710_uniformerv2_b16_8x224] [--batch 1 4]
      [--precision fp32 bf16] [--runs 7]      (prints numbers; not collected by pytest)

`uvtag bench` reports a forward's achieved GFLOP/s as a fraction of the machine's measured matmul
peak (square 2048/3072 matmuls). This script asks what that fraction could be at best with the
kernels this torch build has:

1. One fused forward is profiled with its input shapes; every matrix product in it (the linears,
   whichever op ran them) and every fused attention call is collected with its shape and count.
2. Each distinct shape is then timed alone, on fresh tensors, with the best of the GEMM kernels
   torch can call on this CPU (torch.mm, F.linear, oneDNN's linear, oneDNN and MKL pre-packed
   weights) and SDPA for attention: median of --runs.
3. Bound = the forward's counted FLOPs (2 x `gmac_per_view` per clip) / the sum of those
   isolated times / the peak measured in the same run. Everything else (the depthwise and patch
   convolutions, adds, copies) is counted as free, so no engine built on these kernels can exceed
   the bound; the "GEMM only" bound also counts attention as free, and a third bound adds the
   LayerNorms and the MLP activation (one in-place SiLU per c_fc), which no kernel available here
   fuses away without cost. The actual forward is timed in the same run for comparison.
"""

from __future__ import annotations

import argparse
from collections import Counter
from functools import partial

import torch
import torch.nn.functional as F

from uvtag.bench.measure import matmul_peak, median_seconds, model_gmac
from uvtag.bench.models import bench_model
from uvtag.infer.predict import Predictor, pick_dtype

GEMM_OPS = {"mkldnn::_linear_pointwise", "mkldnn::_linear_pointwise.binary", "aten::addmm", "aten::mm", "aten::bmm",
            "aten::matmul", "mkl::_mkl_linear"}
SDPA_OPS = {"aten::_scaled_dot_product_flash_attention_for_cpu"}
LAYER_NORM_OPS = {"aten::native_layer_norm"}


def _median(fn, runs: int, warmup: int = 2) -> float:
    return median_seconds(fn, runs, warmup)[0]


def profiled_ops(predictor: Predictor, clips: torch.Tensor) -> tuple[Counter, Counter, Counter]:
    """Counts of (M, K, N) matrix products, of (B, heads, L, d) SDPA calls and of LayerNorm input
    shapes in one forward."""
    from torch.profiler import ProfilerActivity, profile

    predictor.logits(clips)
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        predictor.logits(clips)
    gemms, attns, norms = Counter(), Counter(), Counter()
    for ev in prof.events():
        shapes = [tuple(s) for s in ev.input_shapes]
        if ev.name in GEMM_OPS and not ev.name.startswith("aten::matmul"):
            if ev.name == "aten::addmm":  # (bias, x [M, K], w^T [K, N])
                (m, k), n = shapes[1], shapes[2][1]
            elif ev.name in ("aten::mm",):
                (m, k), n = shapes[0], shapes[1][1]
            elif ev.name == "aten::bmm":
                (b, m, k), n = shapes[0], shapes[1][2]
                gemms[(b * m, k, n, "bmm")] += 1
                continue
            else:  # oneDNN linear: (x [.., K], w [N, K], bias) or, fused add, (x, other, w, bias);
                # MKL: (x, packed w, w, bias, rows)
                x = shapes[0]
                w = shapes[2] if len(shapes) > 2 and len(shapes[2]) == 2 else shapes[1]
                m, k, n = int(torch.tensor(x[:-1]).prod()) if len(x) > 1 else 1, x[-1], w[0]
            gemms[(m, k, n, "linear")] += 1
        elif ev.name in SDPA_OPS:
            attns[(shapes[0], shapes[1][2])] += 1  # q [B, h, Lq, d], keys' length
        elif ev.name in LAYER_NORM_OPS:
            norms[shapes[0]] += 1
    return gemms, attns, norms


def best_gemm_seconds(m: int, k: int, n: int, dtype: torch.dtype, runs: int) -> tuple[float, str]:
    """Fastest of the GEMM kernels torch offers on this CPU for x [m, k] @ w[n, k].T + bias."""
    x, w, b = (torch.randn(m, k).to(dtype), torch.randn(n, k).to(dtype), torch.randn(n).to(dtype))
    wt = w.t().contiguous()
    kernels = {"F.linear": lambda: F.linear(x, w, b), "mm": lambda: torch.mm(x, wt)}
    if torch.backends.mkldnn.is_available():
        kernels["onednn"] = lambda: torch.ops.mkldnn._linear_pointwise(x, w, b, "none", [], "")
        try:
            packed = torch.ops.mkldnn._reorder_linear_weight(w, m)
            kernels["onednn packed"] = lambda: torch.ops.mkldnn._linear_pointwise(x, packed, b, "none", [], "")
        except (AttributeError, RuntimeError):
            pass
    if dtype == torch.float32:
        try:
            mkl_w = torch.ops.mkl._mkl_reorder_linear_weight(w, m)
            kernels["mkl packed"] = lambda: torch.ops.mkl._mkl_linear(x, mkl_w, w, b, m)
        except (AttributeError, RuntimeError):
            pass
    times = {name: _median(fn, runs) for name, fn in kernels.items()}
    name = min(times, key=times.get)
    return times[name], name


def sdpa_seconds(q_shape: tuple, kv_len: int, dtype: torch.dtype, runs: int) -> float:
    b, h, lq, d = q_shape
    q = torch.randn(b, h, lq, d).to(dtype)
    k, v = torch.randn(b, h, kv_len, d).to(dtype), torch.randn(b, h, kv_len, d).to(dtype)
    return _median(lambda: F.scaled_dot_product_attention(q, k, v), runs)


def layer_norm_seconds(shape: tuple, dtype: torch.dtype, runs: int) -> float:
    x = torch.randn(shape).to(dtype)
    w, b = torch.ones(shape[-1]).to(dtype), torch.zeros(shape[-1]).to(dtype)
    return _median(lambda: F.layer_norm(x, shape[-1:], w, b), runs)


def activation_seconds(m: int, n: int, dtype: torch.dtype, runs: int) -> float:
    """QuickGELU as the fused engine computes it: one in-place SiLU over the MLP's hidden [m, n]."""
    h = torch.randn(m, n).to(dtype)
    return _median(lambda: F.silu(h, inplace=True), runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="k400_k710_uniformerv2_b16_8x224")
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--precision", nargs="+", default=["fp32", "bf16"])
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    device = torch.device("cpu")
    bm = bench_model(args.arch)
    cfg = bm.config
    print(f"{args.arch}: {model_gmac(cfg):.1f} GMAC per clip; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    for precision in args.precision:
        dtype = pick_dtype(device, precision)
        peak = matmul_peak(dtype, device)["gflops"]
        for batch in args.batch:
            predictor = Predictor(bm.fresh_model(), device, dtype, batch)
            clips = torch.randn(batch, 3, cfg.t_size, cfg.input_resolution, cfg.input_resolution)
            gemms, attns, norms = profiled_ops(predictor, clips)
            forward = _median(partial(predictor.logits, clips), max(3, args.runs // 2), warmup=1)
            del predictor  # its packed weights too, before the kernels are timed alone
            flops = 2 * model_gmac(cfg) * 1e9 * batch
            gemm_s, gemm_flops, used = 0.0, 0.0, Counter()
            for (m, k, n, _kind), count in sorted(gemms.items()):
                seconds, kernel = best_gemm_seconds(m, k, n, dtype, args.runs)
                gemm_s += count * seconds
                gemm_flops += count * 2 * m * k * n
                used[kernel] += count
                print(f"  {precision} b{batch} GEMM {m}x{k}x{n} x{count}: {2 * m * k * n / seconds / 1e9:7.1f} GFLOP/s "
                      f"({2 * m * k * n / seconds / 1e9 / peak:.0%} of peak, {kernel})")
            attn_s = 0.0
            for (q_shape, kv_len), count in sorted(attns.items()):
                seconds = sdpa_seconds(q_shape, kv_len, dtype, args.runs)
                attn_s += count * seconds
                b, h, lq, d = q_shape
                print(f"  {precision} b{batch} SDPA {q_shape} keys {kv_len} x{count}: "
                      f"{4 * b * h * lq * kv_len * d / seconds / 1e9:7.1f} GFLOP/s")
            # the operations no fusion available here removes: LayerNorms and the MLP activation
            # (one per c_fc, the GEMM whose output is 4x its input width)
            rest_s = sum(count * layer_norm_seconds(shape, dtype, args.runs) for shape, count in norms.items())
            rest_s += sum(count * activation_seconds(m, n, dtype, args.runs)
                          for (m, k, n, _kind), count in gemms.items() if n == 4 * k and m > 1)
            print(f"{precision} batch {batch}: peak {peak:.0f} GFLOP/s; forward {forward * 1e3:.0f} ms = "
                  f"{flops / forward / 1e9 / peak:.1%} of peak; GEMMs {gemm_flops / flops:.1%} of the counted FLOPs, "
                  f"best isolated {gemm_s * 1e3:.0f} ms, SDPA {attn_s * 1e3:.0f} ms "
                  f"(kernels: {dict(used)})")
            print(f"  bound (GEMMs + SDPA, all else free): {flops / (gemm_s + attn_s) / 1e9 / peak:.1%} of peak; "
                  f"GEMM-only bound: {flops / gemm_s / 1e9 / peak:.1%}; with LayerNorms and the MLP activation "
                  f"({rest_s * 1e3:.0f} ms): {flops / (gemm_s + attn_s + rest_s) / 1e9 / peak:.1%}; forward time "
                  f"outside the GEMMs' and SDPA's isolated time: {(forward - gemm_s - attn_s) * 1e3:.0f} ms")


if __name__ == "__main__":
    main()
