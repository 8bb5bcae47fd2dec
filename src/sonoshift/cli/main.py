"""Entry point of the ``sonoshift`` CLI: collects subcommands and turns SonoshiftError into one line + exit 1."""

from __future__ import annotations

import importlib
import pkgutil

import typer

import sonoshift
from sonoshift.errors import exit_on_error

app = typer.Typer(
    name="sonoshift",
    help="Harmonize fetal ultrasound across scanners and synthesize realistic fetal ultrasound.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},  # sub-commands inherit it
)


def _flags_take_no_value() -> None:
    """typer's help writes a type for every option, so a flag reads ``--force <bool>`` as if it took a value;
    show no type for flags."""
    from typer.core import TyperOption

    typed = TyperOption.display_type_rich

    def display_type_rich(self, ctx):  # noqa: ANN001, ANN202 (typer's signature)
        return None if getattr(self, "is_flag", False) else typed(self, ctx)

    TyperOption.display_type_rich = display_type_rich


_flags_take_no_value()


def _version(value: bool) -> None:
    if value:
        typer.echo(f"sonoshift {sonoshift.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """sonoshift: scanner harmonization and synthesis for fetal ultrasound."""


def _register_all() -> None:
    import sonoshift.cli as pkg

    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        if info.name == "main" or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"sonoshift.cli.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(app)


_register_all()


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; a SonoshiftError becomes ``error: <sentence>`` on stderr and exit status 1."""
    exit_on_error(lambda: app(args=argv))
