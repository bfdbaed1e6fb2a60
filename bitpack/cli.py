"""The ``bitpack`` command line: parses, calls the library, renders. No logic of its own.

Exit codes (DESIGN.md): 0 success, 1 a verification found a difference, 2 bad input.
Every BitpackError becomes one line on stderr; anything else is a bug and shows a traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from . import __version__
from .codecs import list_codecs
from .errors import BitpackError
from .tensorfile import decode_file, encode_file, formats_table

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Convert, inspect and verify ternary (BitNet b1.58) model weights.",
    context_settings={"help_option_names": ["-h", "--help"]},
)
stdout = Console()
stderr = Console(stderr=True)


def _version(value: bool) -> None:
    if value:
        print(f"bitpack {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    pass


def _emit_json(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, indent=2) + "\n")


def _tiles_option(text: Optional[str]) -> dict[str, int]:
    """'BM=256,BK=96,bm=32' -> {'BM': 256, ...}"""
    if not text:
        return {}
    params = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if not sep or not value.strip().isdigit():
            raise BitpackError(f"--params expects KEY=INT pairs like BM=256,BK=96,bm=32; got {item!r}")
        params[key.strip()] = int(value)
    return params


@app.command()
def formats(json_out: bool = typer.Option(False, "--json", help="Print one JSON document.")) -> None:
    """List the ternary codecs: bits per weight, container, constraints, runtime."""
    rows = formats_table()
    if json_out:
        _emit_json(rows)
        return
    table = Table(title="bitpack codecs", show_lines=False)
    for column in ("codec", "container", "bits/weight", "shape constraints", "exact scale", "read by"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(
            row["name"] + (f" ({', '.join(row['aliases'])})" if row["aliases"] else ""),
            row["container"],
            row["bits_per_weight_text"],
            row["constraints"],
            row["lossless_scale"],
            row["runtime"],
        )
    stdout.print(table)


@app.command()
def encode(
    src: Path = typer.Argument(..., help="A .npz with 'codes' (int8 M x K of -1/0/+1) and 'scale'."),
    to: str = typer.Option(..., "--to", help="Target codec (see `bitpack formats`)."),
    out: Optional[Path] = typer.Option(None, "-o", "--output", help="Output file (default: SRC.<codec>)."),
    params: Optional[str] = typer.Option(None, "--params", help="Codec parameters, e.g. BM=256,BK=96,bm=32."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output file."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Encode one ternary tensor into a codec's exact bytes (what a runtime reads)."""
    report = encode_file(src, to, out, _tiles_option(params), overwrite=overwrite)
    _render(report, json_out)


@app.command()
def decode(
    src: Path = typer.Argument(..., help="Bytes written by `bitpack encode` (with its .json sidecar)."),
    out: Optional[Path] = typer.Option(None, "-o", "--output", help="Output .npz (default: SRC.npz)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output file."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Decode codec bytes back into 'codes' and 'scale' (.npz), validating every byte."""
    report = decode_file(src, out, overwrite=overwrite)
    _render(report, json_out)


@app.command()
def convert(
    src: str = typer.Argument(..., help="HF model directory, .safetensors file (config.json beside it) or .gguf file."),
    to: str = typer.Option(..., "--to", help="Target format: " + ", ".join(list_codecs()) + "."),
    out: Optional[Path] = typer.Option(None, "-o", "--output", help="Output file (GGUF) or directory (safetensors)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output."),
    params: Optional[str] = typer.Option(None, "--params", help="Codec parameters, e.g. BM=256,BK=96,bm=32."),
    dialect: Optional[str] = typer.Option(None, "--dialect", help="GGUF dialect to write: mainline, bitnet-cpp-2024 or bitnet-cpp-2026."),
    source_dialect: Optional[str] = typer.Option(None, "--source-dialect", help="Dialect of a GGUF source whose type ids are ambiguous."),
    tile_params: Optional[str] = typer.Option(None, "--tile-params", help="Tiles of a foreign TL1/TL2 source, e.g. BM=256,BK=96,bm=32."),
    embed_dtype: Optional[str] = typer.Option(None, "--embed-dtype", help="f16, bf16 or f32 for the GGUF embedding/output (default: the narrowest exact one)."),
    scale_dtype: str = typer.Option("f32", "--scale-dtype", help="hf_packed weight_scale dtype: f32 (exact) or bf16 (as published)."),
    linear_class: Optional[str] = typer.Option(None, "--linear-class", help="hf_packed: autobitlinear (multiply) or bitlinear (divide)."),
    scale_convention: Optional[str] = typer.Option(None, "--scale-convention", help="Override a packed source's weight_scale meaning: multiply or divide."),
    allow_scale_rounding: bool = typer.Option(False, "--allow-scale-rounding", help="Accept scales the target cannot hold exactly; each is listed."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Convert a ternary model between safetensors layouts and GGUF codecs, losslessly."""
    from .convert import ConvertOptions
    from .convert import convert as run

    if scale_convention not in (None, "multiply", "divide"):
        raise BitpackError("--scale-convention must be multiply or divide")
    options = ConvertOptions(
        output=out, overwrite=overwrite, params=_tiles_option(params), dialect=dialect,
        source_dialect=source_dialect, embed_dtype=embed_dtype, scale_dtype=scale_dtype,
        linear_class=linear_class, scale_convention=scale_convention,
        allow_scale_rounding=allow_scale_rounding, tile_params=_tiles_option(tile_params) or None,
    )
    with _progress(not json_out) as progress:
        report = run(src, to, options, progress=progress)
    if json_out:
        _emit_json(report)
        return
    stdout.print(f"wrote [bold]{report['output']}[/bold]: {report['format']}, {len(report['tensors'])} tensors, "
                 f"{report['bytes_written']:,} bytes in {report['seconds']} s")
    for line in report["rounded"]:
        stderr.print(f"rounded: {line}", markup=False, highlight=False)
    for line in report["warnings"]:
        stderr.print(f"warning: {line}", markup=False, highlight=False)


@app.command()
def inspect(
    path: str = typer.Argument(..., help="A .gguf file, an HF model directory or a .safetensors file."),
    source_dialect: Optional[str] = typer.Option(None, "--source-dialect", help="Dialect of a GGUF whose type ids are ambiguous."),
    tile_params: Optional[str] = typer.Option(None, "--tile-params", help="Tiles of a foreign TL1/TL2 file."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Show codec, scale and bits per weight of every tensor, the architecture and warnings."""
    from .inspect import inspect as run

    report = run(path, dialect=source_dialect, tile_params=_tiles_option(tile_params) or None)
    if json_out:
        _emit_json(report)
        return
    head = Table(show_header=False, box=None)
    for key in ("path", "container", "layout", "dialect", "architecture", "linear_class", "parameters", "bits_per_weight"):
        if report.get(key) is not None:
            head.add_row(key, str(report[key]))
    head.add_row("hparams", ", ".join(f"{k}={v}" for k, v in report["hparams"].items()))
    stdout.print(head)
    table = Table(title="tensors")
    for column in ("name", "shape", "codec / dtype", "bits/w", "scale", "notes"):
        table.add_column(column)
    for t in report["tensors"]:
        scale = t["scale"]
        scale_text = "" if scale is None else (f"per-block {scale['min']:.4g}..{scale['max']:.4g}" if isinstance(scale, dict) else f"{scale:.6g}")
        notes = " ".join(f"{k}={v}" for k, v in (t.get("params") or {}).items())
        table.add_row(t["name"], "x".join(map(str, t["shape"])), t["codec"] or t["dtype"] or "",
                      "" if t["bits_per_weight"] is None else f"{t['bits_per_weight']:g}", scale_text, notes)
    stdout.print(table)
    for line in report["warnings"]:
        stderr.print(f"warning: {line}", markup=False, highlight=False)


class _progress:
    """A rich progress bar on stderr (tensors and bytes), only for a terminal."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and stderr.is_terminal
        self.bar = None

    def __enter__(self):
        if not self.enabled:
            return None
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TransferSpeedColumn,
        )

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                            TransferSpeedColumn(), console=stderr, transient=True)
        self.bar.start()
        task = self.bar.add_task("converting", total=None)

        def update(name: str, nbytes: int) -> None:
            self.bar.update(task, advance=nbytes, description=name)

        return update

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()


def _render(report: dict[str, Any], json_out: bool) -> None:
    if json_out:
        _emit_json(report)
        return
    table = Table(show_header=False, box=None)
    for key, value in report.items():
        table.add_row(key, json.dumps(value) if isinstance(value, (dict, list)) else str(value))
    stdout.print(table)


def main() -> None:
    try:
        app(standalone_mode=False)
    except BitpackError as err:
        stderr.print(f"bitpack: error: {err}", highlight=False, markup=False, soft_wrap=True)
        sys.exit(err.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        stderr.print("bitpack: interrupted", highlight=False)
        sys.exit(130)
    except typer.Exit as done:
        sys.exit(done.exit_code)
    except Exception as err:  # click usage errors carry their own exit code 2
        from click import ClickException

        if isinstance(err, ClickException):
            err.show()
            sys.exit(2)
        raise


if __name__ == "__main__":
    main()
