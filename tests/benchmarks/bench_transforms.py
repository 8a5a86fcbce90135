"""Benchmark the test-time transforms: normalize (table vs direct formula) and to_views.

Run: python tests/benchmarks/bench_transforms.py   (prints numbers; not collected by pytest)
"""

from __future__ import annotations

import time

import torch

from uvtag.video.transforms import normalize, to_views

MEAN, STD = [0.45] * 3, [0.225] * 3


def _time(fn, repeats: int = 5) -> float:
    fn()  # burn-in
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _direct(frames: torch.Tensor) -> torch.Tensor:
    return ((frames.float() / 255.0) - torch.tensor(MEAN)) / torch.tensor(STD)


def _direct_inplace(frames: torch.Tensor) -> torch.Tensor:
    x = frames.float()
    x.div_(255.0).sub_(torch.tensor(MEAN)).div_(torch.tensor(STD))
    return x


def main() -> None:
    g = torch.Generator().manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{torch.backends.cpu.get_cpu_capability()}")
    for t, h, w in [(8, 360, 640), (16, 720, 1280), (32, 1080, 1920)]:
        frames = torch.randint(0, 256, (t, h, w, 3), dtype=torch.uint8, generator=g)
        assert torch.equal(normalize(frames, MEAN, STD), _direct(frames))
        assert torch.equal(_direct_inplace(frames), _direct(frames))
        mpix = t * h * w / 1e6
        t_lut = _time(lambda: normalize(frames, MEAN, STD))
        t_dir = _time(lambda: _direct(frames))
        t_inp = _time(lambda: _direct_inplace(frames))
        t_views = _time(lambda: to_views(frames, 224, MEAN, STD, [0, 1, 2]))
        print(f"{t:2d} x {h}x{w}: normalize table {t_lut * 1e3:7.1f} ms, direct "
              f"{t_dir * 1e3:7.1f} ms, direct in-place {t_inp * 1e3:7.1f} ms "
              f"({mpix / t_lut:5.1f} / {mpix / t_dir:5.1f} / {mpix / t_inp:5.1f} Mpix/s); "
              f"to_views 3 crops @224 {t_views * 1e3:7.1f} ms")


if __name__ == "__main__":
    main()
