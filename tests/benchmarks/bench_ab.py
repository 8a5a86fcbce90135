"""The model forward of this checkout against another revision's, interleaved in one process.

Run:  python tests/benchmarks/bench_ab.py --base REV [--arch k400_k710_uniformerv2_b16_8x224]
      [--precision fp32] [--batch 1 4] [--runs 7]      (prints numbers; not collected by pytest)

This checkout's side is the model as `Predictor` runs it on the CPU: cast to the precision, with
the engine the Predictor installs (the fused one by default; `--engine`, and `UVTAG_PACKED_GEMM=0`
as for uvtag itself). The base side is `uvtag/model/uniformerv2.py` loaded from git revision REV as
a second module and run as it is: that suits a revision whose fused path lives inside
uniformerv2.py. Both networks get the same random weights and input and are timed in turn, run
after run (which one goes first alternates), so that the drift of a shared machine hits both
alike. Prints the medians, their ratio and the largest logit difference between the two.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from uvtag.bench.models import bench_model
from uvtag.infer.predict import ENGINES, Predictor, pick_dtype

ROOT = Path(__file__).resolve().parents[2]


def load_revision(rev: str):
    """uvtag.model.uniformerv2 as it is at git revision `rev`, imported under another name."""
    source = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:uvtag/model/uniformerv2.py"],
                            capture_output=True, text=True, check=True).stdout
    path = Path(tempfile.mkdtemp()) / "uniformerv2_base.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("uniformerv2_base", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="git revision to compare with (e.g. HEAD~3)")
    ap.add_argument("--arch", default="k400_k710_uniformerv2_b16_8x224")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--batch", nargs="+", type=int, default=[1, 4])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--engine", default="fused", choices=[e for e in ENGINES if e != "compile"])
    args = ap.parse_args()
    base = load_revision(args.base)
    bm = bench_model(args.arch)
    cpu = torch.device("cpu")
    dtype = pick_dtype(cpu, args.precision, emulated_bf16=True)
    head = Predictor(bm.fresh_model(), cpu, dtype, engine=args.engine).model  # cast, engine installed
    old = base.build_model(base.ModelConfig(**bm.config.to_dict())).eval()
    old.load_state_dict(bm.model.state_dict())
    old = old.to(dtype)
    print(f"{args.arch} {args.precision}, this checkout ({args.engine} engine) vs {args.base}, "
          f"{torch.get_num_threads()} threads")
    for batch in args.batch:
        cfg = bm.config
        clip = torch.randn(batch, 3, cfg.t_size, cfg.input_resolution, cfg.input_resolution).to(dtype)
        times: dict[str, list[float]] = {"this": [], "base": []}
        with torch.inference_mode():
            diff = (head(clip).float() - old(clip).float()).abs().max().item()  # also the warm-up
            for run in range(args.runs):
                pair = (("this", head), ("base", old))
                for name, model in pair if run % 2 == 0 else pair[::-1]:  # each goes first in turn
                    t0 = time.perf_counter()
                    model(clip)
                    times[name].append(time.perf_counter() - t0)
        this, ref = statistics.median(times["this"]), statistics.median(times["base"])
        print(f"batch {batch}: this {this * 1e3:.1f} ms, base {ref * 1e3:.1f} ms, this/base {this / ref:.3f} "
              f"(medians of {args.runs} interleaved runs); max |logit difference| {diff:.2e}")


if __name__ == "__main__":
    main()
