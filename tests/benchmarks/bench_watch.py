"""How fast can `uvtag watch` keep up? Window rate, latency and memory of the real command.

Run:  python tests/benchmarks/bench_watch.py [--arch motion-tiny k400_k710_uniformerv2_b16_8x224]
      [--minutes 30] [--device cpu]      (prints numbers; not collected by pytest)

For each architecture (motion-tiny: the bundled weights, demo settings, 2 s windows every 0.25 s;
a zoo name: random weights from its config, saved as a uvtag file, 8 s windows every 4 s), on a
generated untrimmed motion video (MPEG-TS, H.264, 15 fps, the model's input size on the short
side), the `uvtag watch` command is run twice:
1. sustainable window rate: on a one-minute file (not followed, so nothing is skipped and the
   decoder waits for the model), windows per second between the first and the last window line:
   the highest window rate the machine sustains, i.e. the smallest real-time stride is 1 / rate;
2. a paced stream of --minutes through standard input (each frame's bytes at its presentation
   time): the latency from a window's end (when the feeder sent that stream time) to its line on
   stdout, median and p95, the watcher's own latency_sec (closing frame decoded -> line), the
   windows skipped, and the watch process's peak RSS, with its RSS in the first and the last
   minute (memory stays bounded when they agree).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import livefeed  # noqa: E402

UVTAG = str(Path(sys.executable).with_name("uvtag"))
MOTION = ["-w", "2", "-s", "0.25", "--smooth", "3", "--min-duration", "0.75", "--merge-gap", "0.5"]


def _model_args(arch: str, folder: Path) -> tuple[list[str], int]:
    """The command's model options and the model's input size (a zoo name: random weights saved)."""
    if arch == "motion-tiny":
        return ["-m", "motion-tiny", *MOTION], 64
    from uvtag.bench.models import bench_model
    from uvtag.model.weights import save_checkpoint

    bm = bench_model(arch)
    path = folder / f"{arch}-random.pt"
    save_checkpoint(path, bm.model, bm.labels, {"dataset": "random", "protocol": {
        "num_clips": 1, "num_crops": 1, "sampler": bm.checkpoint.sampler,
        "mean": list(bm.checkpoint.mean), "std": list(bm.checkpoint.std)}})
    return ["-m", str(path), "-w", "8", "-s", "4"], bm.checkpoint.input_size


def _stream(folder: Path, short_side: int, minutes: float, name: str) -> livefeed.TsIndex:
    scene = livefeed.motion_scene(3, num_actions=6, short_side=max(160, short_side))  # synth draws >= 160 px
    repeat = max(1, round(minutes * 60 / scene.duration_sec))
    return livefeed.index_ts(livefeed.write_ts(scene, folder / name, repeat=repeat))


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def model_rate(arch: str, device: str) -> float:
    """Model-only clips/s at the CLI's default batch on this machine now (the yardstick)."""
    import torch

    from uvtag.bench.models import bench_forward, bench_model
    from uvtag.infer.predict import default_batch_size

    bm = bench_model(arch)
    dev = torch.device(device)
    row = bench_forward(bm, device=dev, precision="fp32", batch=default_batch_size(bm.model, dev), runs=3)
    return row["clips_per_s"]


def sustainable_rate(path: Path, model: list[str], device: str) -> tuple[float, int]:
    process = subprocess.Popen([UVTAG, "watch", str(path), *model, "--device", device, "--quiet", "-k", "1"],
                               stdout=subprocess.PIPE, text=True)
    times = [time.monotonic() for line in process.stdout if '"type": "window"' in line]
    process.wait()
    if len(times) < 2:
        return 0.0, len(times)
    return (len(times) - 1) / (times[-1] - times[0]), len(times)


def _rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def paced(index: livefeed.TsIndex, model: list[str], device: str) -> dict:
    process = subprocess.Popen([UVTAG, "watch", "-", *model, "--device", device, "-k", "1"], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    ready = process.stderr.readline().decode()  # "model ... loaded in ..." : pacing starts with a ready watcher
    lines: list[tuple[float, dict]] = []
    rss: list[tuple[float, float]] = []

    def read() -> None:
        for line in process.stdout:
            lines.append((time.monotonic(), json.loads(line)))

    def sample(stop: threading.Event) -> None:
        while not stop.wait(5.0):
            value = _rss_mib(process.pid)
            if value is not None:
                rss.append((time.monotonic(), value))

    stop = threading.Event()
    threads = [threading.Thread(target=read, daemon=True), threading.Thread(target=sample, args=(stop,), daemon=True)]
    for t in threads:
        t.start()
    t0 = time.monotonic()

    def write(data: bytes) -> None:
        process.stdin.write(data)
        process.stdin.flush()

    livefeed.send_paced(write, index, t0)
    process.stdin.close()
    _, status, usage = os.wait4(process.pid, 0)  # this child's own peak RSS
    process.returncode = os.waitstatus_to_exitcode(status)
    stop.set()
    threads[0].join(timeout=30)
    peak_mib = usage.ru_maxrss / 1024
    windows = [(t, r) for t, r in lines if r["type"] == "window"]
    external = [t - (t0 + r["end_sec"]) for t, r in windows[:-1]]  # the last window closes at the end
    internal = [r["latency_sec"] for _, r in windows]
    end = lines[-1][1] if lines else {}
    first_min = [v for t, v in rss if t - t0 <= 60]
    last_min = [v for t, v in rss if t - t0 >= index.duration_sec - 60]
    return {"ready": ready.strip(), "windows": len(windows), "skipped": end.get("skipped"), "exit": process.returncode,
            "latency_median": statistics.median(external), "latency_p95": _percentile(external, 0.95),
            "latency_max": max(external), "internal_median": statistics.median(internal),
            "internal_p95": _percentile(internal, 0.95), "peak_rss_mib": peak_mib,
            "rss_first_min": max(first_min, default=float("nan")), "rss_last_min": max(last_min, default=float("nan"))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", nargs="+", default=["motion-tiny", "k400_k710_uniformerv2_b16_8x224"])
    ap.add_argument("--minutes", type=float, default=30.0, help="length of the paced stream")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    print(f"{os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.1f}); paced stream of {args.minutes:g} min "
          "per architecture", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for arch in args.arch:
            model, size = _model_args(arch, folder)
            one_minute = _stream(folder, size, 1.0, f"{arch}-1min.ts")
            rate, count = sustainable_rate(folder / f"{arch}-1min.ts", model, args.device)
            forward = model_rate(arch, args.device)
            print(f"{arch}: sustainable {rate:.2f} windows/s ({count} windows of a {one_minute.duration_sec:.0f} s file; "
                  f"smallest real-time stride {1 / rate if rate else float('inf'):.3f} s); model alone {forward:.2f} "
                  f"clips/s, measured just after", flush=True)
            stream = _stream(folder, size, args.minutes, f"{arch}-paced.ts")
            r = paced(stream, model, args.device)
            print(f"{arch}: paced {stream.duration_sec / 60:.1f} min ({' '.join(model[2:])}): {r['windows']} windows, "
                  f"{r['skipped']} skipped, exit {r['exit']}; window end -> line median {r['latency_median']:.3f} s, "
                  f"p95 {r['latency_p95']:.3f} s, max {r['latency_max']:.3f} s; closing frame -> line median "
                  f"{r['internal_median']:.3f} s, p95 {r['internal_p95']:.3f} s; peak RSS {r['peak_rss_mib']:.0f} MiB "
                  f"(first minute {r['rss_first_min']:.0f} MiB, last minute {r['rss_last_min']:.0f} MiB); "
                  f"load average after it {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
