"""What the command line prints: one-line messages, tables, JSON documents, the progress bar.

Output is for people on a terminal and for pipes alike: when stdout/stderr is not a terminal
nothing is wrapped or cut (tables become one aligned line per row), and on a terminal a table is
drawn only when every cell fits.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any, Optional, Union

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

# Made again by every main() call (reset_consoles): a Console reads COLUMNS and whether its
# stream is a terminal when it is built, and tests run main() many times in one process.
# Read them as ``render.stdout`` at call time, never ``from .render import stdout``.
stdout = Console()
stderr = Console(stderr=True)


def reset_consoles() -> None:
    global stdout, stderr
    stdout, stderr = Console(), Console(stderr=True)


def emit_json(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, indent=2) + "\n")


def say(console: Console, line: Union[str, Text]) -> None:
    """One line, never wrapped by rich (a pipe gets it whole; a terminal wraps it by itself).
    A str is printed as is: file and tensor names may hold [brackets] that are not markup."""
    console.print(line, soft_wrap=True, markup=False, highlight=False)


def error(message: str) -> None:
    say(stderr, f"bitpack: error: {message}")


Cell = Union[str, Text]


def show_table(rows: Sequence[Sequence[Cell]], columns: Optional[Sequence[str]] = None,
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
        say(console, title)
    for line in lines:
        say(console, "  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip())


def render_report(report: dict[str, Any], json_out: bool) -> None:
    if json_out:
        emit_json(report)
        return
    show_table([(key, json.dumps(value) if isinstance(value, (dict, list)) else str(value))
                 for key, value in report.items()])


def render_convert(report: dict) -> None:
    """A conversion's report for people: what was written, where it came from, what was rounded."""
    origin = report["source"]
    if "repo" in origin:
        say(stderr, f"source: {origin['repo']} at {origin['revision']} (commit {origin['commit']})")
    checked = report["verify"]
    timing = (f"{report['seconds']} s" if checked is None else  # the report's seconds include the verify pass
              f"{report['seconds'] - checked['seconds']:.3f} s, verified in {checked['seconds']} s")
    say(stdout, Text.assemble("wrote ", (str(report["output"]), "bold"),
                              f": {report['format']}, {len(report['tensors'])} tensors, "
                              f"{report['bytes_written']:,} bytes in {timing}"))
    if report["receipt"]:
        say(stdout, f"receipt: {report['receipt']}")
    for line in report["rounded"]:
        say(stderr, f"rounded: {line}")
    for line in report["warnings"]:
        say(stderr, f"warning: {line}")
    if checked is not None:
        render_verify(checked)


def render_verify(report: dict) -> None:
    verdict = report["verdict"]
    style = "bold green" if verdict in ("identical", "within tolerance") else \
        "bold yellow" if report["passed"] else "bold red"
    rows: list[tuple[str, Cell]] = [("result", Text(verdict.upper() if verdict == "different" else verdict, style))]
    if verdict == "measured, no threshold":  # a lossy stack: nothing was asked of it, so nothing failed
        rows.append(("note", "a BitStack stack is lossy; pass --max-kl and/or --min-top1 to make this a gate"))
    for line in report.get("missed_thresholds") or []:
        rows.append(("missed", line))
    for key in ("max_abs_diff", "max_rel_diff", "top1_agreement", "kl", "budget_bytes", "config_bytes",
                "bytes_loaded", "numerics", "seconds"):
        if report.get(key) is not None:
            rows.append((key, f"{report[key]:.6g}" if isinstance(report[key], float) else str(report[key])))
    if report["tokens"]:
        rows.append(("tokens", ",".join(map(str, report["tokens"]))))
    if report.get("note"):  # e.g. logits not compared for an architecture bitpack does not run
        rows.append(("note", report["note"]))
    show_table(rows)
    for line in report["metadata_differences"]:
        say(stderr, f"metadata differs: {line}")
    for t in report["tensor_differences"]:
        say(stderr, f"tensor differs: {t['name']}: {t['reason']}")
    for line in report.get("warnings") or []:
        say(stderr, f"warning: {line}")


def render_budget_table(rows: list[dict], shown: int = 12) -> None:
    """A BitStack budget table, thinned to about ``shown`` rows (first and last always)."""
    step = max(1, (len(rows) - 1) // (shown - 1)) if len(rows) > 1 else 1
    picked = sorted({*range(0, len(rows), step), len(rows) - 1})
    show_table([(str(i), f"{rows[i]['bytes']:,}", f"{rows[i]['bytes'] / 2**20:.2f}",
                  "{min}/{mean:.2f}/{max}".format(**rows[i]["blocks_per_matrix"])) for i in picked],
                ("configuration", "bytes", "MiB", "blocks per matrix (min/mean/max)"),
                title=f"budget table ({len(rows)} configurations)")


class ProgressDisplay:
    """Progress on stderr, only for a terminal. A spinner while the source is read; once the
    conversion is planned, a bar of tensors and bytes against the plan's totals with percentage
    and time left; a spinner again for later stages ("verifying")."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and stderr.is_terminal
        self.live = None
        self.tensors_done, self.tensors_total = 0, None

    def __enter__(self) -> Optional["ProgressDisplay"]:
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
