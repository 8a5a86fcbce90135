"""Benchmark frame preparation: the host path against the device path, per decoded frame.

Run: python tests/benchmarks/bench_device_prep.py [--device cpu|cuda] [--frames N] [--size HxW]
(prints numbers; not collected by pytest). Without --device it runs on the CPU, and on CUDA too
when torch sees a GPU.

Per frame of a synthetic picture (smooth luma and chroma, BT.601 limited), medians over the runs:
- colour: YUV 4:2:0 -> RGB by swscale (PyAV's rgb24, on the CPU) vs `uvtag.video.colour` on the device
  (planes copied there as uint8, included);
- prep host: swscale resize to the short side + host normalise and crop (`Tagger.span_clips`, "host");
- prep uint8: the same decoder resize, uint8 crop to the device, normalised there ("uint8");
- prep device: full-size RGB uint8 to the device, resized, cropped and normalised there; from YUV
  planes: the decoded planes (copied out of the frame) instead, converted there too ("device");
- bytes: what crosses to the device per frame (float32 crop vs uint8 crop vs full-size uint8).
"""

from __future__ import annotations

import argparse
import statistics
import time

import av
import numpy as np
import torch

from uvtag.infer.device_prep import ClipPrep, prepare_frame
from uvtag.model.zoo import KINETICS_MEAN, KINETICS_STD
from uvtag.video.backends import yuv420_planes
from uvtag.video.colour import ColourSpec, Yuv420Frame, yuv420_to_rgb
from uvtag.video.transforms import resized_shape, to_views

CROP = 224


def _picture(height: int, width: int) -> av.VideoFrame:
    yy, xx = np.mgrid[0:height, 0:width]
    rgb = np.stack([(127 + 120 * np.sin(xx / 17 + k) * np.cos(yy / 23)) for k in range(3)], -1).astype(np.uint8)
    return av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_ms(fn, device: torch.device, frames: int, runs: int = 5) -> float:
    fn()  # burn-in
    _sync(device)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        for _ in range(frames):
            fn()
        _sync(device)
        times.append((time.perf_counter() - t0) / frames)
    return statistics.median(times) * 1e3


def run(device: torch.device, frames: int, height: int, width: int) -> None:
    picture = _picture(height, width)
    planes = yuv420_planes(picture)
    size = resized_shape(height, width, CROP)
    prep = ClipPrep(CROP, KINETICS_MEAN, KINETICS_STD)
    full_rgb = picture.to_ndarray(format="rgb24")

    def swscale_rgb():
        return picture.to_ndarray(format="rgb24")

    def torch_rgb():
        y, u, v = (torch.from_numpy(p).pin_memory() if device.type == "cuda" else torch.from_numpy(p) for p in planes)
        return yuv420_to_rgb(y.to(device, non_blocking=True), u.to(device, non_blocking=True),
                             v.to(device, non_blocking=True), ColourSpec())

    def decoder_resized():
        return picture.reformat(width=size[1], height=size[0], format="rgb24", interpolation="BILINEAR").to_ndarray()

    def prep_host():
        clip = to_views(decoder_resized()[None], CROP, KINETICS_MEAN, KINETICS_STD, [1])[0, :, 0]
        return clip.to(device, non_blocking=True) if device.type == "cuda" else clip

    def prep_uint8():
        return prepare_frame(decoder_resized(), prep, device)

    def prep_device():
        return prepare_frame(full_rgb, prep, device)

    def prep_planes():
        return prepare_frame(Yuv420Frame(*yuv420_planes(picture), ColourSpec()), prep, device)

    print(f"{device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else torch.backends.cpu.get_cpu_capability()}), "
          f"{torch.get_num_threads()} CPU threads, {width}x{height} -> {size[1]}x{size[0]} -> {CROP}x{CROP}, "
          f"{frames} frames x 5 runs, median ms/frame:")
    print(f"  colour   swscale rgb24 (CPU) {_median_ms(swscale_rgb, device, frames):7.3f}   "
          f"torch yuv420_to_rgb ({device}) {_median_ms(torch_rgb, device, frames):7.3f}")
    print(f"  prep     host {_median_ms(prep_host, device, frames):7.3f}   uint8 {_median_ms(prep_uint8, device, frames):7.3f}   "
          f"device from RGB {_median_ms(prep_device, device, frames):7.3f}   from YUV planes {_median_ms(prep_planes, device, frames):7.3f}")
    print(f"  bytes to the device per frame: host {3 * CROP * CROP * 4:,}   uint8 {3 * CROP * CROP:,}   "
          f"device from RGB {height * width * 3:,}   from YUV planes {height * width * 3 // 2:,}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", action="append", choices=("cpu", "cuda"))
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--size", default="720x1280", help="HxW of the decoded frames")
    args = parser.parse_args()
    height, width = (int(s) for s in args.size.split("x"))
    devices = args.device or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    for name in devices:
        run(torch.device(name), args.frames, height, width)


if __name__ == "__main__":
    main()
