"""`uvtag bench`: the benchmark suite as a command.

Prints the tables (markdown, pasteable into the README) on stderr; `--json FILE` (or `--json -`
for stdout) writes the full result for comparison across commits.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from uvtag.cli.common import err, run, write_stdout
from uvtag.errors import UsageError


def _ints(text: str, what: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise UsageError(f"{what} must be comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise UsageError(f"{what} must be positive integers, got {text!r}")
    return values


def bench(
    arch: Annotated[Optional[list[str]], typer.Option("--arch", "-a", help="Zoo name, 'motion-tiny' or 'tiny' (repeatable). Default: B/16 8x224 and motion-tiny.")] = None,
    precision: Annotated[Optional[list[str]], typer.Option(help="fp32, bf16, fp16 (repeatable). Default: fp32+bf16 on CPU, all three on CUDA.")] = None,
    batch_sizes: Annotated[Optional[str], typer.Option(help="Comma-separated batch sizes for the model rows. Default: 1,4 on the CPU, 1,8,32 on CUDA.")] = None,
    engine: Annotated[Optional[list[str]], typer.Option(help="fused (default), reference (plain PyTorch ops), autocast (fp32 weights under autocast), compile (torch.compile) or unpacked (fused, but oneDNN instead of MKL-packed fp32 linears on the CPU); repeatable.")] = None,
    runs: Annotated[int, typer.Option(min=1, help="Timed runs per row (the median is reported).")] = 3,
    warmup: Annotated[int, typer.Option(min=0, help="Untimed runs before timing.")] = 1,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    work_dir: Annotated[Path, typer.Option("--dir", help="Where generated videos are cached.")] = Path("/tmp/uvtag_bench"),
    decode: Annotated[bool, typer.Option("--decode/--no-decode", help="Decode rates next to the ffmpeg CLI.")] = True,
    e2e: Annotated[bool, typer.Option("--e2e/--no-e2e", help="End to end: classify, batch, localize.")] = True,
    e2e_arch: Annotated[Optional[list[str]], typer.Option(help="Models for the end-to-end rows (repeatable). Default: as --arch.")] = None,
    e2e_precision: Annotated[str, typer.Option(help="Precision for the end-to-end rows (auto = the CLI default).")] = "auto",
    e2e_batch: Annotated[Optional[int], typer.Option(min=1, help="Batch size for the end-to-end rows (default: what uvtag uses, 2 on the CPU, 16 for small models, 8 on CUDA).")] = None,
    long_sec: Annotated[float, typer.Option(min=1.0, help="Length of the long video for localize, seconds.")] = 120.0,
    clip_sec: Annotated[float, typer.Option(min=1.0, help="Length of each generated clip, seconds.")] = 10.0,
    num_clips: Annotated[int, typer.Option(min=1, help="Clips in the folder for batch (and for classify); enough that the first decode, which nothing hides, is noise.")] = 12,
    height: Annotated[int, typer.Option(min=32, help="Generated video height (16:9).")] = 720,
    peak_size: Annotated[Optional[str], typer.Option(help="Comma-separated square matmul sizes for the peak. Default: 2048,3072 on the CPU, 8192,4096 on CUDA.")] = None,
    json_out: Annotated[Optional[str], typer.Option("--json", help="Write the result as JSON to FILE ('-' = stdout).")] = None,
    markdown: Annotated[Optional[Path], typer.Option(help="Also write the markdown tables to FILE.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress lines on stderr.")] = False,
) -> None:
    """Measure matmul peak, model forward, decode and end-to-end speed (one table; --json for machines)."""

    def body() -> None:
        from uvtag.bench import DEFAULT_ARCHS, ENGINES, BenchOptions, format_markdown, run_suite
        from uvtag.outputs.files import check_output

        engines = tuple(engine or ("fused",))
        for e in engines:
            if e not in ENGINES:
                raise UsageError(f"unknown engine {e!r}; choose one of {', '.join(ENGINES)}")
        if json_out not in (None, "-"):
            check_output(json_out, overwrite=True)  # the result file is replaced on every run
        archs = tuple(arch or DEFAULT_ARCHS)
        opts = BenchOptions(
            archs=archs, precisions=tuple(precision or ()), batch_sizes=_ints(batch_sizes, "--batch-sizes") if batch_sizes else (),
            engines=engines, runs=runs, warmup=warmup, device=device, folder=work_dir, decode=decode, e2e=e2e,
            e2e_archs=tuple(e2e_arch or archs), e2e_precision=e2e_precision, e2e_batch=e2e_batch, long_sec=long_sec,
            clip_sec=clip_sec, num_clips=num_clips, height=height, peak_sizes=_ints(peak_size, "--peak-size") if peak_size else (),
        )
        result = run_suite(opts, log=(lambda s: None) if quiet else (lambda s: err.print(f"[dim]{s}[/dim]", soft_wrap=True)))
        table = format_markdown(result)
        err.print(table, soft_wrap=True, markup=False)
        if markdown is not None:
            markdown.write_text(table)
        if json_out == "-":
            write_stdout(lambda f: f.write(json.dumps(result, indent=2) + "\n"))
        elif json_out is not None:
            Path(json_out).write_text(json.dumps(result, indent=2) + "\n")

    run(body)
