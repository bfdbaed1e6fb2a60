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

from ._version import __version__
from .codecs import list_codecs
from .errors import BitpackError
from .pipelines.tensorfile import decode_file, encode_file, formats_table

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
    table = Table(title="bitpack codecs", show_lines=False)
    for column in ("codec", "container", "bits/weight", "shape constraints", "exact scale", "read by"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(
            row["name"] + (f" ({', '.join(row['aliases'])})" if row["aliases"] else ""),
            " or ".join(row["containers"]),
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
    report = encode_file(src, to, out, _params_option(params), overwrite=overwrite)
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
    src: str = typer.Argument(..., help="HF model directory, .safetensors file (config.json beside it), .gguf file, "
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
    scale_convention: Optional[str] = typer.Option(None, "--scale-convention", help="Override a packed source's weight_scale meaning: multiply or divide."),
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

    if scale_convention not in (None, "multiply", "divide"):
        raise BitpackError("--scale-convention must be multiply or divide")
    if (max_kl is not None or min_top1 is not None) and not check:
        raise BitpackError("--max-kl and --min-top1 are thresholds of --verify; add --verify")
    options = ConvertOptions(
        output=out, overwrite=overwrite, params=_params_option(params), dialect=dialect,
        source_dialect=source_dialect, embed_dtype=embed_dtype, scale_dtype=scale_dtype,
        linear_class=linear_class, scale_convention=scale_convention,
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
        stderr.print(f"source: {origin['repo']} at {origin['revision']} (commit {origin['commit']})",
                     markup=False, highlight=False)
    stdout.print(f"wrote [bold]{report['output']}[/bold]: {report['format']}, {len(report['tensors'])} tensors, "
                 f"{report['bytes_written']:,} bytes in {report['seconds']} s")
    if report["receipt"]:
        stdout.print(f"receipt: {report['receipt']}", markup=False, highlight=False)
    for line in report["rounded"]:
        stderr.print(f"rounded: {line}", markup=False, highlight=False)
    for line in report["warnings"]:
        stderr.print(f"warning: {line}", markup=False, highlight=False)
    if report["verify"] is not None:
        _render_verify(report["verify"])
        if failed:
            stderr.print("bitpack: verification failed: the output differs from the source (kept for inspection)",
                         markup=False, highlight=False)
            raise typer.Exit(1)


@app.command()
def inspect(
    path: str = typer.Argument(..., help="A .gguf file, an HF model directory or a .safetensors file."),
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
    head = Table(show_header=False, box=None)
    for key in ("path", "container", "layout", "dialect", "architecture", "linear_class", "parameters", "bits_per_weight",
                "k", "niter", "scaled", "order", "extra_bytes", "min_bytes", "max_bytes"):
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
    if report.get("budget_table"):
        _render_budget_table(report["budget_table"])
    for line in report["warnings"]:
        stderr.print(f"warning: {line}", markup=False, highlight=False)


def _render_budget_table(rows: list[dict], shown: int = 12) -> None:
    """A BitStack budget table, thinned to about ``shown`` rows (first and last always)."""
    table = Table(title=f"budget table ({len(rows)} configurations)")
    for column in ("configuration", "bytes", "MiB", "blocks per matrix (min/mean/max)"):
        table.add_column(column)
    step = max(1, (len(rows) - 1) // (shown - 1)) if len(rows) > 1 else 1
    picked = sorted({*range(0, len(rows), step), len(rows) - 1})
    for i in picked:
        b = rows[i]["blocks_per_matrix"]
        table.add_row(str(i), f"{rows[i]['bytes']:,}", f"{rows[i]['bytes'] / 2**20:.2f}",
                      f"{b['min']}/{b['mean']:.2f}/{b['max']}")
    stdout.print(table)


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
    reference: str = typer.Argument(..., help="The model the candidate must equal."),
    candidate: str = typer.Argument(..., help="The converted model."),
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
    table = Table(show_header=False, box=None)
    verdict = "[bold green]identical[/]" if report["identical"] else (
        "[bold green]within tolerance[/]" if report["passed"] else "[bold red]DIFFERENT[/]")
    table.add_row("result", verdict)
    for key in ("max_abs_diff", "max_rel_diff", "top1_agreement", "kl", "budget_bytes", "config_bytes",
                "bytes_loaded", "numerics", "seconds"):
        if report.get(key) is not None:
            table.add_row(key, f"{report[key]:.6g}" if isinstance(report[key], float) else str(report[key]))
    table.add_row("tokens", ",".join(map(str, report["tokens"])))
    stdout.print(table)
    for line in report["metadata_differences"]:
        stderr.print(f"metadata differs: {line}", markup=False, highlight=False)
    for t in report["tensor_differences"]:
        stderr.print(f"tensor differs: {t['name']}: {t['reason']}", markup=False, highlight=False)


@app.command("run")
def run_model(
    model: str = typer.Argument(..., help="Any model bitpack reads."),
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
        stderr.print(f"loaded {m.stack.bytes_loaded:,} bytes (configuration of {m.stack.config_bytes:,} bytes"
                     + (f" within a budget of {m.stack.budget_bytes:,}" if m.stack.budget_bytes else "") + ")",
                     markup=False, highlight=False)
    for row in result:
        stdout.print(f"position {row['position']}: " + ", ".join(f"{t['id']} ({t['logit']:.4f})" for t in row["top"]))


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
        code = app(standalone_mode=False)  # returns the code of a typer.Exit raised by a command
        if isinstance(code, int) and code:
            sys.exit(code)
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
