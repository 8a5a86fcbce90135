"""`uvtag demo`: generate videos, then classify and localize them with the bundled model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from uvtag.cli.common import err, run

# localize settings for the bundled motion-tiny model (actions of a few seconds; see weights/MOTION_TINY.md)
MOTION_WINDOW_SEC, MOTION_STRIDE_SEC = 2.0, 0.25
MOTION_SEGMENTS = dict(threshold=0.3, smooth_windows=3, min_duration_sec=0.75, merge_gap_sec=0.5, nms_iou=0.5)


def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the generated videos and results.")] = Path("uvtag-demo"),
    seed: Annotated[int, typer.Option(help="Which demo videos to draw.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
) -> None:
    """Offline demo: draw motion clips and an untrimmed video, classify and localize them with motion-tiny.

    Nothing is downloaded: the videos are generated here and the model ships in weights/.
    Results are written to OUT (classify.json, localize.json, truth.csv) and shown as tables.
    """
    from rich.table import Table

    from uvtag import synth
    from uvtag.outputs.formats import write_result
    from uvtag.tagger import SegmentOptions, load

    def body() -> int:
        with err.status("drawing and encoding demo videos", spinner="dots"):
            clips, long_path, truth = synth.write_examples(out, "demo", seed)
        tagger = load("motion-tiny", device=device, offline=True, progress=False)
        predictions = [tagger.classify(path, top=1) for path, _ in clips]
        table = Table(title=f"motion-tiny on {len(clips)} generated clips ({out})", title_justify="left")
        for col in ("video", "size", "fps", "truth", "predicted", "score", ""):
            table.add_column(col)
        for (path, label), p in zip(clips, predictions):
            guess = p.top[0]
            table.add_row(path.name, f"{p.info.width}x{p.info.height}", f"{p.info.fps:g}", label, guess.label,
                          f"{guess.score:.2f}", "ok" if guess.label == label else "WRONG")
        err.print(table)
        result = tagger.localize(long_path, window_sec=MOTION_WINDOW_SEC, stride_sec=MOTION_STRIDE_SEC, top=1,
                                 options=SegmentOptions(**MOTION_SEGMENTS))
        err.print(_segments_table(long_path.name, truth, result.segments))
        write_result(predictions, out / "classify.json", "json", overwrite=True)
        write_result(result, out / "localize.json", "json", overwrite=True)
        (out / "truth.csv").write_text("video,start_sec,end_sec,label\n" + "".join(
            [f"{p.name},,,{label}\n" for p, label in clips] + [f"{long_path.name},{s:.3f},{e:.3f},{label}\n" for s, e, label in truth]))
        correct = sum(p.top[0].label == label for (_, label), p in zip(clips, predictions))
        err.print(f"{correct}/{len(clips)} clips right; {len(result.segments)} segments found for {len(truth)} actions; "
                  f"results in {out}/ (classify.json, localize.json, truth.csv)", markup=False)
        return 0

    run(body)


def _segments_table(name: str, truth, segments):
    from rich.table import Table

    from uvtag.infer.segments import temporal_iou

    table = Table(title=f"localize {name} (window {MOTION_WINDOW_SEC} s, stride {MOTION_STRIDE_SEC} s)", title_justify="left")
    for col in ("true start", "true end", "truth", "found start", "found end", "found", "tIoU"):
        table.add_column(col)
    for start, end, label in truth:
        same = [s for s in segments if s.label == label]
        best = max(same, key=lambda s: temporal_iou((start, end), (s.start_sec, s.end_sec)), default=None)
        if best is None:
            table.add_row(f"{start:.2f}", f"{end:.2f}", label, "", "", "(missed)", "0.00")
        else:
            iou = temporal_iou((start, end), (best.start_sec, best.end_sec))
            table.add_row(f"{start:.2f}", f"{end:.2f}", label, f"{best.start_sec:.2f}", f"{best.end_sec:.2f}",
                          best.label, f"{iou:.2f}")
    return table
