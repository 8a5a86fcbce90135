"""Size and build time of the batch HTML report over a large batch, and Chromium's time to open it.

Builds a batch CSV of `--videos` synthetic videos (labels and clips from a seeded random stream,
50 folders holding the same file names, 1% failures) whose paths are symbolic links to a few small
generated videos, so thumbnails are really decoded for every video. Then writes the report with
`uvtag.outputs.report.write_report` and prints its size, the time to build it (reading the CSV,
decoding thumbnails, building the page) and the time of the page alone; with Chromium installed,
the time headless Chromium takes to load it and run its script (best of `--loads`), next to an
empty page's.

    python tests/benchmarks/bench_report.py                 # 5,000 videos
    python tests/benchmarks/bench_report.py --videos 500 --loads 3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from uvtag import synth
from uvtag.batch.output import BatchWriter
from uvtag.outputs import report
from uvtag.outputs.report_page import report_html
from uvtag.results import ClipPrediction, Failure, LabelScore, VideoInfo, VideoPrediction

FOLDERS = 50


def _sources(folder: Path, count: int = 4) -> list[tuple[Path, float]]:
    """A few small cluttered clips (96-160 px), as a camera's frames compress: (path, duration)."""
    ranges = replace(synth.STRICT, short_side=(96, 160))
    out = []
    for k in range(count):
        scene = synth.random_clip(synth.clip_rng("test", 9000, k), ranges=ranges)
        out.append((synth.write_video(scene, folder / f"source{k}", "h264"), scene.duration_sec))
    return out


def _prediction(path: str, duration: float, rng: np.random.Generator) -> VideoPrediction:
    labels = synth.MOTION_CLASSES
    num_clips = max(1, int(duration))  # 1 s clips
    clips = []
    for i in range(num_clips):
        scores = rng.dirichlet(np.ones(len(labels)) * 0.3)
        order = np.argsort(-scores)[:5]
        top = tuple(LabelScore(labels[j], int(j), float(scores[j])) for j in order)
        clips.append(ClipPrediction(float(i), min(i + 1.0, duration), top))
    mean = np.zeros(len(labels))
    for c in clips:
        for ls in c.top:
            mean[ls.index] += ls.score / len(clips)
    order = np.argsort(-mean)[:5]
    info = VideoInfo(path, int(duration * 25), 25.0, duration, 160, 120)
    return VideoPrediction(path, "motion-tiny", info, tuple(LabelScore(labels[j], int(j), float(mean[j])) for j in order),
                           num_clips, tuple(clips))


def _build_batch(folder: Path, num_videos: int) -> Path:
    sources = _sources(folder)
    rng = np.random.default_rng(0)
    out = folder / "labels.csv"
    with BatchWriter.open(out, "csv") as writer:
        for i in range(num_videos):
            sub = folder / "videos" / f"group{i % FOLDERS:02d}"
            sub.mkdir(parents=True, exist_ok=True)
            source, duration = sources[i % len(sources)]
            link = sub / f"clip{i // FOLDERS:04d}.mp4"
            os.symlink(source, link)
            if i % 100 == 99:
                writer.write_failure(Failure(str(link), f"{link}: cannot decode frame 12", "VideoError"))
            else:
                writer.write_video(_prediction(str(link), duration, rng))
    return out


_LOAD_PROBE = """<!DOCTYPE html><html><body><iframe id="f" src="SRC" style="width:1280px;height:900px"></iframe>
<pre id="t"></pre><script>var t0 = performance.now();
document.getElementById('f').addEventListener('load', function () {
  var w = this.contentWindow, shown = w.document.getElementById('shown');
  document.getElementById('t').textContent = JSON.stringify({ms: performance.now() - t0,
    shown: shown ? shown.textContent : ''});
});</script></body></html>"""


def _chromium_load(chromium: str, page: Path, profile: Path) -> tuple[float, dict]:
    """(wall seconds of a headless --dump-dom, what the probe page measured) for `page`."""
    probe = page.with_name(".load-probe.html")
    probe.write_text(_LOAD_PROBE.replace("SRC", page.name), encoding="utf-8")
    started = time.perf_counter()
    run = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                          "--allow-file-access-from-files", f"--user-data-dir={profile}", "--window-size=1400,1000",
                          "--dump-dom", probe.resolve().as_uri()], capture_output=True, text=True, timeout=600)
    wall = time.perf_counter() - started
    probe.unlink()
    text = run.stdout.split('<pre id="t">', 1)[-1].split("</pre>", 1)[0]
    return wall, (json.loads(text) if text.startswith("{") else {})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=5000)
    parser.add_argument("--loads", type=int, default=2, help="Chromium loads (the best is printed); 0 skips")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        results = _build_batch(folder, args.videos)
        print(f"batch csv: {args.videos} videos, {results.stat().st_size:,} bytes "
              f"(built in {time.perf_counter() - started:.1f} s)")
        page = folder / "report" / "report.html"
        started = time.perf_counter()
        rows = report.write_report(results, page)
        build = time.perf_counter() - started
        size = page.stat().st_size
        print(f"report: {rows} rows, {size:,} bytes ({size / rows:,.0f} per video), "
              f"{report.thumbnail_count(rows)} thumbnails a video, built in {build:.1f} s "
              "(read, thumbnails decoded, page)")
        videos = report.read_report_videos(results, page, num_thumbnails=report.thumbnail_count(rows))
        started = time.perf_counter()
        report_html(videos)
        print(f"page alone (report_html): {time.perf_counter() - started:.2f} s")
        chromium = shutil.which("chromium") or shutil.which("chromium-browser")
        if chromium and args.loads:
            blank = folder / "report" / "blank.html"
            blank.write_text("<!DOCTYPE html><title>blank</title><p id=shown>blank</p>", encoding="utf-8")
            best_blank = min(_chromium_load(chromium, blank, folder / "profile")[0] for _ in range(args.loads))
            loads = [_chromium_load(chromium, page, folder / "profile") for _ in range(args.loads)]
            wall, probe = min(loads, key=lambda pair: pair[0])
            print(f"chromium headless: report loaded and its script run in {probe.get('ms', float('nan')):.0f} ms "
                  f"(page's own measure; {probe.get('shown', '?')}); --dump-dom wall {wall:.2f} s vs "
                  f"{best_blank:.2f} s for an empty page")


if __name__ == "__main__":
    main()
