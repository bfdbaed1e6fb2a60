"""The ``bitpack`` Typer application and its root options; the commands register on it."""

from __future__ import annotations

import typer

from .._version import __version__

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
