"""The dependency direction, drawn in one line and enforced on every import in the source:

    base -> data & contracts -> models, evaluation, training -> applications -> commands

(README, ARCHITECTURE). Every module of ``cirbench/`` and ``baselines/`` is parsed (no import is
run), its imports collected wherever they are written (module level, inside functions, under
TYPE_CHECKING), and each is checked: a module imports only from its own layer or the layers
below, and the packages of one layer never import each other in a circle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# (layer, module-name prefixes); a module belongs to the layer of its longest matching prefix
LAYERS = [
    ("base", ["cirbench", "cirbench.registry", "cirbench.errors", "cirbench.files", "cirbench.progress",
              "cirbench.http_client", "cirbench.compat", "cirbench.devices", "cirbench.config"]),
    ("data & contracts", ["cirbench.data", "cirbench.scorers", "cirbench.interface", "cirbench.losses",
                          "cirbench.distributed", "cirbench.model_folder", "cirbench.baselines.options"]),
    ("models, evaluation, training", ["cirbench.backbones", "cirbench.baselines", "cirbench.importers",
                                      "cirbench.eval", "cirbench.train", "cirbench.results"]),
    ("applications", ["cirbench.facap", "cirbench.synth", "cirbench.experiments", "cirbench.report",
                      "cirbench.doctor"]),
    ("commands", ["cirbench.commands", "cirbench.cli", "cirbench.__main__"]),
]
RANK = {prefix: rank for rank, (_, prefixes) in enumerate(LAYERS) for prefix in prefixes}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[0] == "baselines":  # installs as cirbench.baselines (setup.py)
        parts = ["cirbench", *parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for root in ("cirbench", "baselines") for p in (REPO / root).rglob("*.py")}


def layer_of(module: str) -> int:
    matches = [prefix for prefix in RANK if module == prefix or module.startswith(prefix + ".")]
    assert matches, f"{module} is in no layer: add it to LAYERS in {__file__}"
    return RANK[max(matches, key=len)]


def imports_of(module: str) -> list[tuple[int, str]]:
    """(line, imported cirbench module) for every import statement of ``module``, wherever it is."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, *([node.module] if node.module else [])])
            # "from package import module" imports the module; "from module import name" the module
            found += [(node.lineno, f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
                      for alias in node.names]
    return [(line, _known(name)) for line, name in found if name == "cirbench" or name.startswith("cirbench.")]


def _known(name: str) -> str:
    while name not in MODULES and "." in name:
        name = name.rpartition(".")[0]
    return name


def _unit(module: str) -> str:
    """The package a module belongs to for the cycle check (cirbench.train, cirbench.scorers, ...)."""
    return ".".join(module.split(".")[:3] if module.startswith("cirbench.baselines.") else module.split(".")[:2])


def test_every_module_is_in_a_layer():
    for module in MODULES:
        layer_of(module)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_imports_a_higher_layer(module):
    own = layer_of(module)
    upward = [f"line {line}: {name} ({LAYERS[layer_of(name)][0]})" for line, name in imports_of(module)
              if layer_of(name) > own]
    assert not upward, f"{module} ({LAYERS[own][0]}) imports upward: {'; '.join(upward)}"


def test_no_two_packages_import_each_other_even_through_others():
    graph: dict[str, set[str]] = {}
    for module in MODULES:
        for _, name in imports_of(module):
            if _unit(name) != _unit(module):
                graph.setdefault(_unit(module), set()).add(_unit(name))
    cycles = []
    for start in graph:
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for nxt in graph.get(node, ()):
                if nxt == start:
                    cycles.append(" -> ".join([*path, start]))
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*path, nxt]))
    assert not cycles, "import cycles between packages:\n" + "\n".join(sorted(set(cycles)))


def test_the_check_sees_function_level_imports():
    """The direction holds for lazy imports too: this one is inside a function of commands/core.py."""
    assert (layer_of("cirbench.commands.core"), "cirbench.eval.evaluator") in {
        (layer_of("cirbench.commands.core"), name) for _, name in imports_of("cirbench.commands.core")}
