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
