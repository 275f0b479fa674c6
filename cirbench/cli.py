"""The ``cirbench`` command. Thin: options -> library calls. Each area's commands live in
``cirbench/commands/<area>.py`` and register themselves here; heavy libraries load inside them."""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="cirbench",
    help=(
        "Benchmark, evaluation toolkit and baseline zoo for fashion Composed Image Retrieval.\n\n"
        "Example: cirbench demo --quick"
    ),
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)
bench_app = typer.Typer(help="Speed and memory benchmarks, each against a bare baseline measured in the same run.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")

# area -> module; each module defines register(app, bench_app)
COMMAND_MODULES = ["core", "data", "synth", "facap", "train", "experiments", "ablate", "import_weights", "doctor"]

for _area in COMMAND_MODULES:
    importlib.import_module(f"cirbench.commands.{_area}").register(app, bench_app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
