"""The ``bitpack`` command line: parses, calls the library, renders. No logic of its own.

Exit codes (DESIGN.md): 0 success, 1 a verification found a difference, 2 bad input or usage.
Every BitpackError and every usage error becomes one line on stderr (a usage error adds the usage
and a pointer to --help); anything else is a bug and shows a traceback. A bare ``bitpack`` is a
usage error too: the help goes to stderr and the exit code is 2, so a script that runs
``bitpack $EMPTY`` fails instead of passing.

Output is for people on a terminal and for pipes alike: when stdout/stderr is not a terminal
nothing is wrapped or cut (tables become one aligned line per row), and on a terminal a table is
drawn only when every cell fits.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from enum import Enum
from pathlib import Path
from typing import Any, Optional, Union

import typer
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from ._version import __version__
from .codecs import list_codecs
from .errors import BitpackError
from .pipelines.tensorfile import decode_file, encode_file, formats_table

# typer >= 0.26 vendors its own click (typer._click) and raises that copy's exceptions, not the
# standalone click package's; older typer re-exports click's. typer.BadParameter is defined in
# whichever exceptions module typer raises from, so its module gives the right classes either way.
_click_exceptions = sys.modules[typer.BadParameter.__module__]
UsageError = _click_exceptions.UsageError
ClickException = _click_exceptions.ClickException

app = typer.Typer(
    add_completion=False,
    help="Convert, inspect and verify ternary (BitNet b1.58) model weights.",
    # "--help" first: the usage hint after an error names the first one.
    context_settings={"help_option_names": ["--help", "-h"]},
    # click's plain help: at 80 columns typer's rich panels cut long flag names
    # ("--allow-scale-roundi…") and print <bool> after every flag.
    rich_markup_mode=None,
    # bitpack's own errors are rendered by main(); a bug keeps Python's plain traceback.
    pretty_exceptions_enable=False,
)
# Made again by every main() call: a Console reads COLUMNS and whether its stream is a terminal
# when it is built, and tests run main() many times in one process.
stdout = Console()
stderr = Console(stderr=True)


class ScaleConvention(str, Enum):
    """What a packed source's weight_scale means (a choice, so click refuses anything else)."""

    multiply = "multiply"
    divide = "divide"


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


def _say(console: Console, line: Union[str, Text]) -> None:
    """One line, never wrapped by rich (a pipe gets it whole; a terminal wraps it by itself).
    A str is printed as is: file and tensor names may hold [brackets] that are not markup."""
    console.print(line, soft_wrap=True, markup=False, highlight=False)


Cell = Union[str, Text]


def _show_table(rows: Sequence[Sequence[Cell]], columns: Optional[Sequence[str]] = None,
                title: Optional[str] = None, console: Optional[Console] = None) -> None:
    """A rich table on a terminal wide enough to show every cell whole; otherwise (a pipe, a
    narrow terminal) a title line, a header line and one line per row, columns aligned, nothing
    cut. ``columns`` None: a key/value table without header."""
    console = console or stdout
    table = Table(title=title) if columns is not None else Table(show_header=False, box=None)
    for name in columns or [""] * (len(rows[0]) if rows else 0):
        table.add_column(name, overflow="fold")
    for row in rows:
        table.add_row(*row)
    # measured without the console's width as a cap, which would hide cells that need wrapping
    natural = Measurement.get(console, console.options.update_width(1 << 20), table).maximum
    if console.is_terminal and natural <= console.width:
        console.print(table)
        return
    lines = [[c.plain if isinstance(c, Text) else c for c in row] for row in rows]
    if columns is not None:
        lines.insert(0, list(columns))
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))] if lines else []
    if title:
        _say(console, title)
    for line in lines:
        _say(console, "  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip())


def _params_option(text: Optional[str], option: str = "--params") -> dict[str, int]:
    """'BM=256,BK=96,bm=32' -> {'BM': 256, ...}"""
    if not text:
        return {}
    params = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if not sep or not value.strip().isdigit():
            raise BitpackError(f"{option} expects KEY=INT pairs like BM=256,BK=96,bm=32; got {item!r}")
        params[key.strip()] = int(value)
    return params


def _tiles_option(text: Optional[str], option: str = "--tile-params") -> dict:
    """Tiles of a foreign TL file: KEY=INT pairs, or a kernel_config.ini path (tiles per shape)."""
    if text and "=" not in text:
        from .codecs.tiles import read_kernel_config

        path = Path(text)
        if not path.is_file():
            raise BitpackError(f"{option}: {text} is neither BM=..,BK=..,bm=.. nor a kernel_config.ini file")
        return read_kernel_config(path.read_text())
    return _params_option(text, option)


@app.command()
def formats(json_out: bool = typer.Option(False, "--json", help="Print one JSON document.")) -> None:
    """List the ternary codecs: bits per weight, container, constraints, runtime."""
    rows = formats_table()
    if json_out:
        _emit_json(rows)
        return
    _show_table([(row["name"] + (f" ({', '.join(row['aliases'])})" if row["aliases"] else ""),
                  " or ".join(row["containers"]), row["bits_per_weight_text"], row["constraints"],
                  row["lossless_scale"], row["runtime"])
                 for row in rows],
                ("codec", "container", "bits/weight", "shape constraints", "exact scale", "read by"),
                title="bitpack codecs")


@app.command()
def encode(
    src: Path = typer.Argument(..., metavar="SRC", help="A .npz with 'codes' (int8 M x K of -1/0/+1) and 'scale'."),
    to: str = typer.Option(..., "--to", help="Target codec (see `bitpack formats`)."),
    out: Optional[Path] = typer.Option(None, "-o", "--output", help="Output file (default: SRC.<codec>)."),
    params: Optional[str] = typer.Option(None, "--params", help="Codec parameters, e.g. BM=256,BK=96,bm=32."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output file."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Encode one ternary tensor into a codec's exact bytes (what a runtime reads)."""
    report = encode_file(src, to, out, _params_option(params), overwrite=overwrite)
    _render(report, json_out)


@app.command()
def decode(
    src: Path = typer.Argument(..., metavar="SRC", help="Bytes written by `bitpack encode` (with its .json sidecar)."),
    out: Optional[Path] = typer.Option(None, "-o", "--output", help="Output .npz (default: SRC.npz)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output file."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Decode codec bytes back into 'codes' and 'scale' (.npz), validating every byte."""
    report = decode_file(src, out, overwrite=overwrite)
    _render(report, json_out)


@app.command()
def convert(
    src: str = typer.Argument(..., metavar="SRC", help="HF model directory, .safetensors file (config.json beside it), .gguf file, "
                                         "or a Hub repo id org/name[@revision]."),
    to: str = typer.Option(..., "--to", help="Target format: " + ", ".join(list_codecs()) + "."),
    out: Optional[Path] = typer.Option(None, "-o", "--output", help="Output file (GGUF) or directory (safetensors)."),
    revision: Optional[str] = typer.Option(None, "--revision", help="Hub source: branch, tag or commit (default main)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output."),
    params: Optional[str] = typer.Option(None, "--params", help="Codec parameters, e.g. BM=256,BK=96,bm=32."),
    dialect: Optional[str] = typer.Option(None, "--dialect", help="GGUF dialect to write: mainline, bitnet-cpp-2024 or bitnet-cpp-2026."),
    source_dialect: Optional[str] = typer.Option(None, "--source-dialect", help="Dialect of a GGUF source whose type ids are ambiguous."),
    tile_params: Optional[str] = typer.Option(None, "--tile-params", help="Tiles of a foreign TL1/TL2 source, e.g. BM=256,BK=96,bm=32."),
    embed_dtype: Optional[str] = typer.Option(None, "--embed-dtype", help="f16, bf16 or f32 for the GGUF embedding/output (default: the narrowest exact one)."),
    scale_dtype: str = typer.Option("f32", "--scale-dtype", help="hf_packed weight_scale dtype: f32 (exact) or bf16 (as published)."),
    linear_class: Optional[str] = typer.Option(None, "--linear-class", help="hf_packed: autobitlinear (multiply) or bitlinear (divide)."),
    scale_convention: Optional[ScaleConvention] = typer.Option(None, "--scale-convention", help="Override a packed source's weight_scale meaning."),
    allow_scale_rounding: bool = typer.Option(False, "--allow-scale-rounding", help="Accept scales the target cannot hold exactly; each is listed."),
    allow_degenerate: bool = typer.Option(False, "--allow-degenerate", "--allow-zero-tensors",
                                          help="Convert all-zero projections (or non-positive scales) instead of refusing."),
    receipt: bool = typer.Option(True, "--receipt/--no-receipt", help="Write <output>.receipt.json (default: on)."),
    blocks: Optional[int] = typer.Option(None, "--blocks", help="bitstack: residual blocks per matrix (default 16)."),
    rank: Optional[int] = typer.Option(None, "--rank", help="bitstack: rank of each block's magnitude (default 16)."),
    calibration: Optional[Path] = typer.Option(None, "--calibration", help="bitstack: a text file for activation-aware "
                                               "scaling and the output-error order (default: weight-only)."),
    order: Optional[str] = typer.Option(None, "--order", help="bitstack block order: output, weight, uniform or ppl."),
    svd: str = typer.Option("randomized", "--svd", help="bitstack: randomized (fast) or full (the reference's SVD)."),
    check: bool = typer.Option(False, "--verify", help="Verify the output against the source (exit 1 when they differ)."),
    max_kl: Optional[float] = typer.Option(None, "--max-kl", help="With --verify, bitstack: pass only when KL <= this (nats)."),
    min_top1: Optional[float] = typer.Option(None, "--min-top1", help="With --verify, bitstack: pass only when top-1 agreement >= this."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Convert a ternary model between safetensors layouts and GGUF codecs, losslessly; or pack
    any model into a BitStack stack (--to bitstack) that loads at any memory budget."""
    from .pipelines.convert import ConvertOptions
    from .pipelines.convert import convert as run

    if (max_kl is not None or min_top1 is not None) and not check:
        raise BitpackError("--max-kl and --min-top1 are thresholds of --verify; add --verify")
    options = ConvertOptions(
        output=out, overwrite=overwrite, params=_params_option(params), dialect=dialect,
        source_dialect=source_dialect, embed_dtype=embed_dtype, scale_dtype=scale_dtype,
        linear_class=linear_class, scale_convention=scale_convention and scale_convention.value,
        allow_scale_rounding=allow_scale_rounding, tile_params=_tiles_option(tile_params) or None,
        revision=revision, allow_degenerate=allow_degenerate, receipt=receipt, verify=check,
        show_downloads=not json_out, calibration=calibration, order=order, svd=svd, max_kl=max_kl, min_top1=min_top1,
    )
    options.params.update({k: v for k, v in (("blocks", blocks), ("rank", rank)) if v is not None})
    with _progress(not json_out) as progress:
        report = run(src, to, options, progress=progress)
    failed = report["verify"] is not None and not report["verify"]["passed"]
    if json_out:
        _emit_json(report)
        if failed:
            raise typer.Exit(1)
        return
    origin = report["source"]
    if "repo" in origin:
        _say(stderr, f"source: {origin['repo']} at {origin['revision']} (commit {origin['commit']})")
    checked = report["verify"]
    timing = (f"{report['seconds']} s" if checked is None else  # the report's seconds include the verify pass
              f"{report['seconds'] - checked['seconds']:.3f} s, verified in {checked['seconds']} s")
    _say(stdout, Text.assemble("wrote ", (str(report["output"]), "bold"),
                               f": {report['format']}, {len(report['tensors'])} tensors, "
                               f"{report['bytes_written']:,} bytes in {timing}"))
    if report["receipt"]:
        _say(stdout, f"receipt: {report['receipt']}")
    for line in report["rounded"]:
        _say(stderr, f"rounded: {line}")
    for line in report["warnings"]:
        _say(stderr, f"warning: {line}")
    if report["verify"] is not None:
        _render_verify(report["verify"])
        if failed:
            _say(stderr, "bitpack: verification failed: the output differs from the source (kept for inspection)")
            raise typer.Exit(1)


@app.command()
def inspect(
    path: str = typer.Argument(..., metavar="PATH", help="A .gguf file, an HF model directory or a .safetensors file."),
    source_dialect: Optional[str] = typer.Option(None, "--source-dialect", help="Dialect of a GGUF whose type ids are ambiguous."),
    tile_params: Optional[str] = typer.Option(None, "--tile-params", help="Tiles of a foreign TL1/TL2 file."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Show codec, scale and bits per weight of every tensor, the architecture and warnings."""
    from .pipelines.inspect import inspect as run

    report = run(path, dialect=source_dialect, tile_params=_tiles_option(tile_params) or None)
    if json_out:
        _emit_json(report)
        return
    head = [(key, str(report[key])) for key in (
        "path", "container", "layout", "dialect", "architecture", "linear_class", "parameters", "bits_per_weight",
        "k", "niter", "scaled", "order", "extra_bytes", "min_bytes", "max_bytes") if report.get(key) is not None]
    head.append(("hparams", ", ".join(f"{k}={v}" for k, v in (report["hparams"] or {}).items())))
    _show_table(head)
    rows = []
    for t in report["tensors"]:
        scale = t["scale"]
        scale_text = "" if scale is None else (f"per-block {scale['min']:.4g}..{scale['max']:.4g}" if isinstance(scale, dict) else f"{scale:.6g}")
        notes = " ".join(f"{k}={v}" for k, v in (t.get("params") or {}).items())
        rows.append((t["name"], "x".join(map(str, t["shape"])), t["codec"] or t["dtype"] or "",
                     "" if t["bits_per_weight"] is None else f"{t['bits_per_weight']:g}", scale_text, notes))
    _show_table(rows, ("name", "shape", "codec / dtype", "bits/w", "scale", "notes"), title="tensors")
    if report.get("budget_table"):
        _render_budget_table(report["budget_table"])
    for line in report["warnings"]:
        _say(stderr, f"warning: {line}")


def _render_budget_table(rows: list[dict], shown: int = 12) -> None:
    """A BitStack budget table, thinned to about ``shown`` rows (first and last always)."""
    step = max(1, (len(rows) - 1) // (shown - 1)) if len(rows) > 1 else 1
    picked = sorted({*range(0, len(rows), step), len(rows) - 1})
    _show_table([(str(i), f"{rows[i]['bytes']:,}", f"{rows[i]['bytes'] / 2**20:.2f}",
                  "{min}/{mean:.2f}/{max}".format(**rows[i]["blocks_per_matrix"])) for i in picked],
                ("configuration", "bytes", "MiB", "blocks per matrix (min/mean/max)"),
                title=f"budget table ({len(rows)} configurations)")


def _token_list(text: Optional[str]) -> Optional[list[int]]:
    if text is None:
        return None
    try:
        tokens = [int(t) for t in text.replace(" ", "").split(",") if t]
    except ValueError:
        raise BitpackError(f"--tokens expects comma-separated integers, got {text!r}") from None
    if not tokens:
        raise BitpackError("--tokens is empty")
    return tokens


@app.command()
def verify(
    reference: str = typer.Argument(..., metavar="REFERENCE", help="The model the candidate must equal."),
    candidate: str = typer.Argument(..., metavar="CANDIDATE", help="The converted model."),
    tokens: Optional[str] = typer.Option(None, "--tokens", help="Token ids to run, e.g. 1,2,3."),
    n_tokens: int = typer.Option(16, "--n-tokens", help="Deterministic token ids to run when --tokens is not given."),
    numerics: str = typer.Option("exact", "--numerics", help="exact (default), hf, llamacpp, bitnetcpp or bitnetcpp-seq."),
    atol: Optional[float] = typer.Option(None, "--atol", help="Pass when logits differ by at most this much."),
    budget: Optional[str] = typer.Option(None, "--budget", help="BitStack candidate: load it within this many bytes "
                                         "(e.g. 300MB, 1.5GiB; default all blocks)."),
    stack_blocks: Optional[int] = typer.Option(None, "--blocks", help="BitStack candidate: load this many blocks of every matrix instead of a budget."),
    max_kl: Optional[float] = typer.Option(None, "--max-kl", help="BitStack candidate: pass only when KL <= this (nats)."),
    min_top1: Optional[float] = typer.Option(None, "--min-top1", help="BitStack candidate: pass only when top-1 agreement >= this."),
    reference_tiles: Optional[str] = typer.Option(None, "--reference-tile-params", help="Tiles (or kernel_config.ini) of a foreign TL reference."),
    candidate_tiles: Optional[str] = typer.Option(None, "--tile-params", help="Tiles (or kernel_config.ini) of a foreign TL candidate."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Compare two models tensor by tensor, then their logits. Exit 0 identical, 1 different."""
    from .pipelines.verify import verify as run

    report = run(reference, candidate, tokens=_token_list(tokens), n_tokens=n_tokens, numerics=numerics, atol=atol,
                 budget=budget, blocks=stack_blocks, max_kl=max_kl, min_top1=min_top1,
                 reference_options={"tile_params": _tiles_option(reference_tiles, "--reference-tile-params") or None},
                 candidate_options={"tile_params": _tiles_option(candidate_tiles) or None})
    if json_out:
        _emit_json(report)
    else:
        _render_verify(report)
    raise typer.Exit(0 if report["passed"] else 1)


def _render_verify(report: dict) -> None:
    verdict = Text("identical", "bold green") if report["identical"] else (
        Text("within tolerance", "bold green") if report["passed"] else Text("DIFFERENT", "bold red"))
    rows: list[tuple[str, Cell]] = [("result", verdict)]
    for key in ("max_abs_diff", "max_rel_diff", "top1_agreement", "kl", "budget_bytes", "config_bytes",
                "bytes_loaded", "numerics", "seconds"):
        if report.get(key) is not None:
            rows.append((key, f"{report[key]:.6g}" if isinstance(report[key], float) else str(report[key])))
    rows.append(("tokens", ",".join(map(str, report["tokens"]))))
    _show_table(rows)
    for line in report["metadata_differences"]:
        _say(stderr, f"metadata differs: {line}")
    for t in report["tensor_differences"]:
        _say(stderr, f"tensor differs: {t['name']}: {t['reason']}")


@app.command("run")
def run_model(
    model: str = typer.Argument(..., metavar="MODEL", help="Any model bitpack reads."),
    tokens: Optional[str] = typer.Option(None, "--tokens", help="Token ids, e.g. 1,2,3."),
    prompt: Optional[str] = typer.Option(None, "--prompt", help="Text, tokenized with the model's own tokenizer files (instead of --tokens)."),
    top_k: int = typer.Option(5, "--top-k", help="How many next-token candidates to show."),
    all_positions: bool = typer.Option(False, "--all", help="Show every position, not only the last."),
    save_logits: Optional[Path] = typer.Option(None, "--save-logits", help="Write float32 logits (tokens x vocab) as .npy."),
    numerics: str = typer.Option("exact", "--numerics", help="exact, hf, llamacpp, bitnetcpp or bitnetcpp-seq."),
    tile_params: Optional[str] = typer.Option(None, "--tile-params", help="Tiles (or kernel_config.ini) of a foreign TL file."),
    budget: Optional[str] = typer.Option(None, "--budget", help="BitStack stack: load it within this many bytes (e.g. 300MB)."),
    stack_blocks: Optional[int] = typer.Option(None, "--blocks", help="BitStack stack: load this many blocks of every matrix."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Run the reference executor and show the most likely next tokens."""
    import numpy as np

    from .executor import executor
    from .pipelines.open import open_model

    if tokens is not None and prompt is not None:
        raise BitpackError("--tokens and --prompt cannot be used together; give one of them")
    if tokens is None and prompt is None:
        raise BitpackError("give the input as --tokens 1,2,3 or --prompt TEXT")
    m = open_model(model, tile_params=_tiles_option(tile_params) or None, budget=budget, blocks=stack_blocks)
    if prompt is not None:
        from .models.text import encode_text

        ids = encode_text(m, prompt)
        if not ids:
            raise BitpackError("--prompt gave no tokens")
    else:
        ids = _token_list(tokens)
    logits = executor(m, numerics).forward(ids)
    if save_logits is not None:
        np.save(save_logits, logits)
    rows = range(len(ids)) if all_positions else [len(ids) - 1]
    result = []
    for i in rows:
        top = np.argsort(-logits[i], kind="stable")[:top_k]
        result.append({"position": i, "top": [{"id": int(t), "logit": float(logits[i, t])} for t in top]})
    if json_out:
        _emit_json({"model": model, "tokens": ids, "numerics": numerics, "positions": result,
                    **({"prompt": prompt} if prompt is not None else {}),
                    **({"stack": m.stack.as_dict()} if m.stack is not None else {})})
        return
    if m.stack is not None:
        _say(stderr, f"loaded {m.stack.bytes_loaded:,} bytes (configuration of {m.stack.config_bytes:,} bytes"
             + (f" within a budget of {m.stack.budget_bytes:,}" if m.stack.budget_bytes else "") + ")")
    for row in result:
        _say(stdout, f"position {row['position']}: " + ", ".join(f"{t['id']} ({t['logit']:.4f})" for t in row["top"]))


class _progress:
    """Progress on stderr, only for a terminal. A spinner while the source is read; once the
    conversion is planned, a bar of tensors and bytes against the plan's totals with percentage
    and time left; a spinner again for later stages ("verifying")."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and stderr.is_terminal
        self.live = None
        self.tensors_done, self.tensors_total = 0, None

    def __enter__(self) -> Optional["_progress"]:
        if not self.enabled:
            return None
        self.stage("reading the source")
        return self

    def _show(self, columns: tuple, **task: Any) -> None:
        """Replace what is on screen: one rich Progress per stage, as the columns differ."""
        from rich.progress import Progress

        self.__exit__()
        self.live = Progress(*columns, console=stderr, transient=True)
        self.live.start()
        self.task = self.live.add_task(**task)

    def stage(self, name: str) -> None:
        from rich.progress import SpinnerColumn, TextColumn, TimeElapsedColumn

        self._show((SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn()), description=name, total=None)

    def plan(self, tensors: Optional[int], nbytes: Optional[int]) -> None:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            SpinnerColumn,
            TaskProgressColumn,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self.tensors_total = tensors
        self._show((SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                    TextColumn("{task.fields[tensors]} tensors"), DownloadColumn(), TransferSpeedColumn(),
                    TimeRemainingColumn()), description="converting", total=nbytes, tensors=self._count())

    def _count(self) -> str:
        return f"{self.tensors_done}/{self.tensors_total}" if self.tensors_total else str(self.tensors_done)

    def __call__(self, name: str, nbytes: int) -> None:
        if self.tensors_done == 0 and self.tensors_total is None:  # a writer without a plan (BitStack): no totals
            self.plan(None, None)
        if nbytes:  # BitStack's ppl ordering reports its steps as progress(message, 0): not tensors
            self.tensors_done += 1
        self.live.update(self.task, advance=nbytes, description=name, tensors=self._count())

    def __exit__(self, *exc) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None


def _render(report: dict[str, Any], json_out: bool) -> None:
    if json_out:
        _emit_json(report)
        return
    _show_table([(key, json.dumps(value) if isinstance(value, (dict, list)) else str(value))
                 for key, value in report.items()])


def _error(message: str) -> None:
    _say(stderr, f"bitpack: error: {message}")


def _usage_error(err: "UsageError") -> int:
    """click's message on one line, then the usage and where to find help (click puts them first)."""
    _error(err.format_message())
    if err.ctx is not None:
        _say(stderr, err.ctx.get_usage())
        _say(stderr, f"Try '{err.ctx.command_path} {err.ctx.help_option_names[0]}' for help.")
    return err.exit_code


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The console script and ``python -m bitpack``: run the command line, return the exit code.
    ``argv`` defaults to sys.argv[1:]; tests pass it to run the command line in-process."""
    global stdout, stderr
    stdout, stderr = Console(), Console(stderr=True)
    args = sys.argv[1:] if argv is None else [str(a) for a in argv]
    if not args:
        # A bare `bitpack` is a usage error whatever click version decides (it changed in 8.2).
        command = typer.main.get_command(app)
        with command.make_context("bitpack", ["--help"], resilient_parsing=True) as ctx:
            _say(stderr, command.get_help(ctx))
        return 2
    try:
        # typer.Exit raised by a command (and --help, --version) comes back as its code
        code = app(args=args, prog_name="bitpack", standalone_mode=False)
    except BitpackError as err:
        _error(str(err))
        return err.exit_code
    except UsageError as err:
        return _usage_error(err)
    except ClickException as err:  # e.g. a file argument click could not open
        _error(err.format_message())
        return err.exit_code
    except (typer.Abort, KeyboardInterrupt):
        _say(stderr, "bitpack: interrupted")
        return 130
    except typer.Exit as done:
        return done.exit_code
    if code == 130:  # typer turns Ctrl-C inside a command into Exit(130) before we see it
        _say(stderr, "bitpack: interrupted")
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
