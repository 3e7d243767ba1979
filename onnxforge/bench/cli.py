"""`onnxforge bench`: latency, throughput and efficiency of every variant and provider."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..cli_common import ArtifactDir, JsonOut, err_console, handle_errors, out_console, print_json_maybe

Variants = Annotated[list[str] | None, typer.Option("--variants", help="Variants to time, comma-separated or repeated (default: every variant built for the device).")]
Devices = Annotated[str, typer.Option("--device", help="cpu, cuda or auto (cpu, plus cuda when ONNX Runtime can use it); comma-separated for several.")]
BatchSizes = Annotated[str, typer.Option("--batch-sizes", help="Batch sizes, comma-separated.")]
SeqLens = Annotated[str, typer.Option("--seq-lens", help="Sequence lengths (tokens, no padding), comma-separated.")]
Torch = Annotated[bool, typer.Option("--torch/--no-torch", help="Time PyTorch eager fp32 (the reference row) and its fp16/bf16 where the hardware has it.")]
Cycles = Annotated[int, typer.Option("--cycles", help="Least number of cycles of blocks (more run until medians are stable).")]
MaxCycles = Annotated[int, typer.Option("--max-cycles", help="Most cycles of blocks.")]
BlockSeconds = Annotated[float, typer.Option("--block-seconds", help="Seconds of timed calls per contender per cycle.")]
Threads = Annotated[int | None, typer.Option("--threads", help="Intra-op threads for ONNX Runtime and PyTorch (default: their own choice).")]
Engine = Annotated[str | None, typer.Option("--engine", help="ort or openvino for every variant (default: each variant's own engine).", show_default=False)]
Quick = Annotated[bool, typer.Option("--quick", help="Smoke-sized run (short blocks, 2 cycles): rough numbers.")]
MarkdownOut = Annotated[Path | None, typer.Option("--markdown", help="Write the table as Markdown to this path.")]
PlotOut = Annotated[Path | None, typer.Option("--plot", help="Write a PNG chart of latency and throughput to this path.")]


@handle_errors
def bench_command(
    artifact: ArtifactDir,
    variants: Variants = None,
    device: Devices = "auto",
    batch_sizes: BatchSizes = "1,8,32",
    seq_lens: SeqLens = "16,128",
    torch: Torch = True,
    cycles: Cycles = 3,
    max_cycles: MaxCycles = 5,
    block_seconds: BlockSeconds = 0.5,
    threads: Threads = None,
    engine: Engine = None,
    quick: Quick = False,
    json_path: JsonOut = None,
    markdown: MarkdownOut = None,
    plot: PlotOut = None,
) -> None:
    """Time every variant and provider against PyTorch eager fp32: latency, throughput, efficiency."""
    from ..errors import UserInputError
    from .options import BenchOptions, parse_int_list, parse_name_list

    if plot is not None and plot.suffix.lower() != ".png":
        raise UserInputError(f"--plot {plot}: the chart is a PNG", hint="give a path ending in .png")
    common = dict(
        variants=parse_name_list(variants),
        devices=parse_name_list(device),
        batch_sizes=parse_int_list(batch_sizes, "--batch-sizes"),
        seq_lens=parse_int_list(seq_lens, "--seq-lens"),
        torch_reference=torch,
        threads=threads,
        engine=engine,
    )
    if quick:
        options = BenchOptions.quick(**common)
    else:
        options = BenchOptions(min_cycles=cycles, max_cycles=max_cycles, block_seconds=block_seconds, **common)

    from . import run_bench, write_plot

    with err_console().status("benchmarking") as status:
        report = run_bench(artifact, options, progress=lambda m: status.update(m))
    report.render(out_console())
    print_json_maybe(json_path, report.to_dict())
    if markdown is not None:
        from ..artifact import atomic_write_text

        atomic_write_text(markdown, report.markdown())
    if plot is not None:
        write_plot(report, plot)
    for label, path in (("JSON", json_path), ("Markdown", markdown), ("chart", plot)):
        if path is not None:
            err_console().print(f"wrote {label}: {path}")


COMMANDS = {"bench": bench_command}
