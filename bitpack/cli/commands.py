"""The commands: each parses its options, calls the library and hands the report to render.

No logic of its own beyond option combinations the library cannot see (--max-kl without
--verify, --tokens with --prompt).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..codecs import list_codecs
from ..containers.gguf_types import DIALECTS
from ..errors import BitpackError
from ..pipelines.tensorfile import decode_file, encode_file, formats_table
from . import render
from .options import (
    Architecture,
    Dialect,
    EmbedDtype,
    LinearClass,
    Numerics,
    Order,
    ScaleConvention,
    ScaleDtype,
    Svd,
    WrittenDialect,
    params_option,
    tiles_option,
    token_list,
    value,
)
from .root import app

SCALE_CONVENTION_HELP = ("What a packed HF source's weight_scale means: multiply (autobitlinear) or divide "
                         "(bitlinear); overrides config.json.")
ARCHITECTURE_HELP = "The graph of a source whose config names an architecture bitpack does not know."


@app.command()
def formats(json_out: bool = typer.Option(False, "--json", help="Print one JSON document.")) -> None:
    """List the ternary codecs: bits per weight, container, constraints, runtime."""
    rows = formats_table()
    if json_out:
        render.emit_json(rows)
        return
    render.show_table([(row["name"] + (f" ({', '.join(row['aliases'])})" if row["aliases"] else ""),
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
    params: Optional[str] = typer.Option(None, "--params", help="Codec parameters KEY=VALUE, e.g. BM=256,BK=96,bm=32 (TL tiles) or scale_mode=separate (TQ)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output file."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Encode one ternary tensor into a codec's exact bytes (what a runtime reads)."""
    report = encode_file(src, to, out, params_option(params), overwrite=overwrite)
    render.render_report(report, json_out)


@app.command()
def decode(
    src: Path = typer.Argument(..., metavar="SRC", help="Bytes written by `bitpack encode` (with its .json sidecar)."),
    out: Optional[Path] = typer.Option(None, "-o", "--output", help="Output .npz (default: SRC.npz)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output file."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Decode codec bytes back into 'codes' and 'scale' (.npz), validating every byte."""
    report = decode_file(src, out, overwrite=overwrite)
    render.render_report(report, json_out)


# Long only in its signature: typer declares every option as a parameter.
@app.command()
def convert(
    src: str = typer.Argument(..., metavar="SRC", help="HF model directory, .safetensors file (config.json beside it), .gguf file, "
                                         "or a Hub repo id org/name[@revision]."),
    to: str = typer.Option(..., "--to", help="Target format: " + ", ".join(list_codecs()) + "."),
    out: Optional[Path] = typer.Option(None, "-o", "--output", help="Output file (GGUF) or directory (safetensors)."),
    revision: Optional[str] = typer.Option(None, "--revision", help="Hub source: branch, tag or commit (default main)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output file, or an output "
                                   "directory bitpack wrote (its receipt or metadata); any other directory is refused."),
    params: Optional[str] = typer.Option(None, "--params", help="Codec parameters KEY=VALUE, e.g. BM=256,BK=96,bm=32 (TL tiles) or scale_mode=separate (TQ)."),
    dialect: Optional[WrittenDialect] = typer.Option(None, "--dialect", help="GGUF dialect to write."),
    source_dialect: Optional[Dialect] = typer.Option(
        None, "--source-dialect", metavar="DIALECT",
        help=f"Dialect of a GGUF source whose type ids are ambiguous: {', '.join(DIALECTS)}."),
    tile_params: Optional[str] = typer.Option(None, "--tile-params", help="Tiles of a foreign TL1/TL2 source, e.g. BM=256,BK=96,bm=32."),
    embed_dtype: Optional[EmbedDtype] = typer.Option(None, "--embed-dtype", help="The GGUF embedding/output dtype (default: the narrowest exact one)."),
    scale_dtype: Optional[ScaleDtype] = typer.Option(None, "--scale-dtype", help="hf_packed weight_scale dtype: f32 (exact, default) or bf16 (as published)."),
    linear_class: Optional[LinearClass] = typer.Option(None, "--linear-class", help="hf_packed: autobitlinear (multiply) or bitlinear (divide)."),
    scale_convention: Optional[ScaleConvention] = typer.Option(None, "--scale-convention", help=SCALE_CONVENTION_HELP),
    allow_scale_rounding: bool = typer.Option(False, "--allow-scale-rounding", help="Accept scales the target cannot hold exactly; each is listed."),
    allow_scale_merge: bool = typer.Option(False, "--allow-scale-merge", help="Merge differing scales into a coarser target's groups (lossy); each tensor and its error is listed."),
    allow_rotated: bool = typer.Option(False, "--allow-rotated", help="Write Hadamard-rotated weights (prism.hadamard.*) for a runtime that does not undo the rotation."),
    architecture: Optional[Architecture] = typer.Option(None, "--architecture", help=ARCHITECTURE_HELP),
    allow_degenerate: bool = typer.Option(False, "--allow-degenerate", "--allow-zero-tensors",
                                          help="Convert all-zero projections (or non-positive scales) instead of refusing."),
    receipt: bool = typer.Option(True, "--receipt/--no-receipt", help="Write <output>.receipt.json (default: on)."),
    blocks: Optional[int] = typer.Option(None, "--blocks", help="bitstack: residual blocks per matrix (default 16)."),
    rank: Optional[int] = typer.Option(None, "--rank", help="bitstack: rank of each block's magnitude (default 16)."),
    calibration: Optional[Path] = typer.Option(None, "--calibration", help="bitstack: a text file for activation-aware "
                                               "scaling and the output-error order (default: weight-only)."),
    order: Optional[Order] = typer.Option(None, "--order", help="bitstack block order (residual-norm = weight, average = ppl)."),
    svd: Optional[Svd] = typer.Option(None, "--svd", help="bitstack: randomized (fast, default) or full (the reference's SVD)."),
    check: bool = typer.Option(False, "--verify", help="Verify the output against the source (exit 1 when they differ)."),
    max_kl: Optional[float] = typer.Option(None, "--max-kl", help="With --verify, bitstack: pass only when KL <= this (nats)."),
    min_top1: Optional[float] = typer.Option(None, "--min-top1", help="With --verify, bitstack: pass only when top-1 agreement >= this."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Convert a ternary model between safetensors layouts and GGUF codecs, losslessly; or pack
    any model into a BitStack stack (--to bitstack) that loads at any memory budget."""
    from ..pipelines.convert import ConvertOptions
    from ..pipelines.convert import convert as run

    if (max_kl is not None or min_top1 is not None) and not check:
        raise BitpackError("--max-kl and --min-top1 are thresholds of --verify; add --verify")
    options = ConvertOptions(
        output=out, overwrite=overwrite, params=params_option(params), dialect=value(dialect),
        source_dialect=value(source_dialect), embed_dtype=value(embed_dtype), scale_dtype=value(scale_dtype),
        linear_class=value(linear_class), scale_convention=value(scale_convention),
        allow_scale_rounding=allow_scale_rounding, allow_scale_merge=allow_scale_merge, allow_rotated=allow_rotated,
        architecture=value(architecture),
        tile_params=tiles_option(tile_params) or None,
        revision=revision, allow_degenerate=allow_degenerate, receipt=receipt, verify=check,
        show_downloads=not json_out, calibration=calibration, order=value(order), svd=value(svd),
        max_kl=max_kl, min_top1=min_top1, blocks=blocks, rank=rank,
    )
    with render.ProgressDisplay(not json_out) as progress:
        report = run(src, to, options, progress=progress)
    if json_out:
        render.emit_json(report)
    else:
        render.render_convert(report)
    if report["verify"] is not None and not report["verify"]["passed"]:
        if not json_out:
            missed = report["verify"].get("missed_thresholds")
            why = "; ".join(missed) if missed else "the output differs from the source"
            render.say(render.stderr, f"bitpack: verification failed: {why} (output kept for inspection)")
        raise typer.Exit(1)


@app.command()
def inspect(
    path: str = typer.Argument(..., metavar="PATH", help="A .gguf file, an HF model directory or a .safetensors file."),
    source_dialect: Optional[Dialect] = typer.Option(
        None, "--source-dialect", metavar="DIALECT",
        help=f"Dialect of a GGUF whose type ids are ambiguous: {', '.join(DIALECTS)}."),
    tile_params: Optional[str] = typer.Option(None, "--tile-params", help="Tiles of a foreign TL1/TL2 file."),
    scale_convention: Optional[ScaleConvention] = typer.Option(None, "--scale-convention", help=SCALE_CONVENTION_HELP),
    architecture: Optional[Architecture] = typer.Option(None, "--architecture", help=ARCHITECTURE_HELP),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Show codec, scale and bits per weight of every tensor, the architecture and warnings."""
    from ..pipelines.inspect import inspect as run

    report = run(path, dialect=value(source_dialect), tile_params=tiles_option(tile_params) or None,
                 scale_convention=value(scale_convention), architecture=value(architecture))
    if json_out:
        render.emit_json(report)
        return
    head = [(key, str(report[key])) for key in (
        "path", "container", "layout", "dialect", "read_by", "architecture", "linear_class", "parameters", "bits_per_weight",
        "k", "niter", "scaled", "order", "extra_bytes", "min_bytes", "max_bytes") if report.get(key) is not None]
    head.append(("hparams", ", ".join(f"{k}={v}" for k, v in (report["hparams"] or {}).items() if v is not None)))
    render.show_table(head)
    rows = []
    for t in report["tensors"]:
        scale = t["scale"]
        scale_text = "" if scale is None else (
            f"per {scale.get('granularity', 'block')} {scale['min']:.4g}..{scale['max']:.4g}"
            if isinstance(scale, dict) else f"{scale:.6g}")
        notes = " ".join(f"{k}={v}" for k, v in (t.get("params") or {}).items())
        rows.append((t["name"], "x".join(map(str, t["shape"])), t["codec"] or t["dtype"] or "",
                     "" if t["bits_per_weight"] is None else f"{t['bits_per_weight']:g}", scale_text, notes))
    render.show_table(rows, ("name", "shape", "codec / dtype", "bits/w", "scale", "notes"), title="tensors")
    if report.get("budget_table"):
        render.render_budget_table(report["budget_table"])
    for line in report["warnings"]:
        render.say(render.stderr, f"warning: {line}")


@app.command()
def verify(
    reference: str = typer.Argument(..., metavar="REFERENCE", help="The model the candidate must equal."),
    candidate: str = typer.Argument(..., metavar="CANDIDATE", help="The converted model."),
    tokens: Optional[str] = typer.Option(None, "--tokens", help="Token ids to run, e.g. 1,2,3."),
    n_tokens: int = typer.Option(16, "--n-tokens", help="Deterministic token ids to run when --tokens is not given."),
    numerics: Numerics = typer.Option(Numerics("exact"), "--numerics", help="The logits' rounding rules (default exact)."),
    atol: Optional[float] = typer.Option(None, "--atol", help="Pass when logits differ by at most this much."),
    budget: Optional[str] = typer.Option(None, "--budget", help="BitStack candidate: load it within this many bytes "
                                         "(e.g. 300MB, 1.5GiB; default all blocks)."),
    stack_blocks: Optional[int] = typer.Option(None, "--blocks", help="BitStack candidate: load this many blocks of every matrix instead of a budget."),
    max_kl: Optional[float] = typer.Option(None, "--max-kl", help="BitStack candidate: pass only when KL <= this (nats)."),
    min_top1: Optional[float] = typer.Option(None, "--min-top1", help="BitStack candidate: pass only when top-1 agreement >= this."),
    reference_tiles: Optional[str] = typer.Option(None, "--reference-tile-params", help="Tiles (or kernel_config.ini) of a foreign TL reference."),
    candidate_tiles: Optional[str] = typer.Option(None, "--tile-params", help="Tiles (or kernel_config.ini) of a foreign TL candidate."),
    scale_convention: Optional[ScaleConvention] = typer.Option(None, "--scale-convention", help=SCALE_CONVENTION_HELP + " Both sides."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Compare two models tensor by tensor, then their logits. Exit 0 identical, 1 different."""
    from ..pipelines.verify import verify as run

    report = run(reference, candidate, tokens=token_list(tokens), n_tokens=n_tokens, numerics=value(numerics), atol=atol,
                 budget=budget, blocks=stack_blocks, max_kl=max_kl, min_top1=min_top1,
                 reference_options={"tile_params": tiles_option(reference_tiles, "--reference-tile-params") or None,
                                    "scale_convention": value(scale_convention)},
                 candidate_options={"tile_params": tiles_option(candidate_tiles) or None,
                                    "scale_convention": value(scale_convention)})
    if json_out:
        render.emit_json(report)
    else:
        render.render_verify(report)
        if report.get("missed_thresholds"):
            render.say(render.stderr, "bitpack: verification failed: " + "; ".join(report["missed_thresholds"]))
    raise typer.Exit(0 if report["passed"] else 1)


# Long only in its signature: typer declares every option as a parameter.
@app.command("run")
def run_model(
    model: str = typer.Argument(..., metavar="MODEL", help="Any model bitpack reads."),
    tokens: Optional[str] = typer.Option(None, "--tokens", help="Token ids, e.g. 1,2,3."),
    prompt: Optional[str] = typer.Option(None, "--prompt", help="Text, tokenized with the model's own tokenizer files (instead of --tokens)."),
    top_k: int = typer.Option(5, "--top-k", help="How many next-token candidates to show."),
    max_new_tokens: int = typer.Option(0, "--max-new-tokens", min=0, help="Continue greedily for up to N tokens (each step re-runs the prefix), printing the text and the time taken."),
    all_positions: bool = typer.Option(False, "--all", help="Show every position, not only the last."),
    save_logits: Optional[Path] = typer.Option(None, "--save-logits", help="Write float32 logits (tokens x vocab) to this .npy file."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --save-logits file."),
    numerics: Numerics = typer.Option(Numerics("exact"), "--numerics", help="The logits' rounding rules."),
    tile_params: Optional[str] = typer.Option(None, "--tile-params", help="Tiles (or kernel_config.ini) of a foreign TL file."),
    budget: Optional[str] = typer.Option(None, "--budget", help="BitStack stack: load it within this many bytes (e.g. 300MB)."),
    stack_blocks: Optional[int] = typer.Option(None, "--blocks", help="BitStack stack: load this many blocks of every matrix."),
    scale_convention: Optional[ScaleConvention] = typer.Option(None, "--scale-convention", help=SCALE_CONVENTION_HELP),
    architecture: Optional[Architecture] = typer.Option(None, "--architecture", help=ARCHITECTURE_HELP),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Run the reference executor and show the most likely next tokens."""
    from ..executor import executor
    from ..models.text import decode_text, encode_text, token_texts
    from ..pipelines.open import open_model
    from ..pipelines.run import (
        check_logits_path,
        greedy_continuation,
        keep_for_continuation,
        top_tokens,
    )
    from ..pipelines.run import save_logits as write_logits

    if tokens is not None and prompt is not None:
        raise BitpackError("--tokens and --prompt cannot be used together; give one of them")
    if tokens is None and prompt is None:
        raise BitpackError("give the input as --tokens 1,2,3 or --prompt TEXT")
    m = open_model(model, tile_params=tiles_option(tile_params) or None, budget=budget, blocks=stack_blocks,
                   scale_convention=value(scale_convention), architecture=value(architecture))
    for line in m.warnings:
        render.say(render.stderr, f"warning: {line}")
    if save_logits is not None:  # refused before the forward pass, not after it
        check_logits_path(save_logits, overwrite=overwrite, inputs=[Path(f) for f in m.files])
    if prompt is not None:

        ids = encode_text(m, prompt)
        if not ids:
            raise BitpackError("--prompt gave no tokens")
    else:
        ids = token_list(tokens)
    kept = keep_for_continuation(m, max_new_tokens)
    run = executor(m, value(numerics), keep_codes=kept)
    logits = run.forward(ids)
    if save_logits is not None:
        write_logits(save_logits, logits, overwrite=overwrite)
    result = top_tokens(logits, list(range(len(ids))) if all_positions else [len(ids) - 1], top_k)
    texts = token_texts(m, sorted({t["id"] for row in result for t in row["top"]} | set(ids)))
    if texts is not None:  # the model carries a tokenizer: every id gets its text
        by_id = dict(zip(sorted({t["id"] for row in result for t in row["top"]} | set(ids)), texts))
        for row in result:
            row["input"] = by_id[ids[row["position"]]]
            for t in row["top"]:
                t["text"] = by_id[t["id"]]
    generated = None
    if max_new_tokens:
        new, seconds = greedy_continuation(run.forward, ids, logits[-1], max_new_tokens,
                                           m.hparams.eos_token_id)
        generated = {"tokens": new, "text": decode_text(m, new), "seconds": round(seconds, 3), "codes_kept": kept}
    if json_out:
        render.emit_json({"model": model, "tokens": ids, "numerics": value(numerics), "positions": result,
                    **({"generated": generated} if generated is not None else {}),
                    **({"prompt": prompt} if prompt is not None else {}),
                    **({"stack": m.stack.as_dict()} if m.stack is not None else {})})
        return
    if m.stack is not None:
        render.say(render.stderr, f"loaded {m.stack.bytes_loaded:,} bytes (configuration of {m.stack.config_bytes:,} bytes"
             + (f" within a budget of {m.stack.budget_bytes:,}" if m.stack.budget_bytes else "") + ")")
    render.say(render.stdout, f"top {top_k} next tokens: id" + (" 'text'" if texts is not None else "")
               + " logit (probability, softmax over all logits)")
    for row in result:
        after = f" after {row['input']!r}" if "input" in row else ""
        render.say(render.stdout, f"position {row['position']}{after}: " + ", ".join(
            f"{t['id']}" + (f" {t['text']!r}" if "text" in t else "") + f" {t['logit']:.4f} ({t['prob']:.3f})"
            for t in row["top"]))
    if generated is not None:
        shown = repr(generated["text"]) if generated["text"] is not None else ",".join(map(str, generated["tokens"]))
        render.say(render.stdout, f"continuation ({len(generated['tokens'])} tokens, greedy, "
                   f"{generated['seconds']:.3f} s{', decoded codes kept' if kept else ''}): {shown}")
