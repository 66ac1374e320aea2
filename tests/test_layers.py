"""The package's layering: no import cycle between modules, and no module importing a higher layer.

Every import counts, those inside functions too (a lazy import is still a dependency). The
layers, lowest first, are in ``LAYERS``; modules of one layer may import each other, as long as
that makes no cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import graftkit

PACKAGE = Path(graftkit.__file__).resolve().parent

# Lowest first. A module belongs to the layer of the longest prefix naming it.
LAYERS = [
    ("errors/log/settings/files/runfolder",
     ["graftkit.errors", "graftkit.log", "graftkit.settings", "graftkit.files", "graftkit.runfolder"]),
    ("model", ["graftkit.model"]),
    ("bases", ["graftkit.bases"]),
    ("data", ["graftkit.data"]),
    ("features", ["graftkit.features"]),
    ("results", ["graftkit.results"]),
    ("config", ["graftkit.config"]),
    ("training", ["graftkit.training"]),
    ("api/cli/advice/demo", ["graftkit.api", "graftkit.cli", "graftkit.advice", "graftkit.demo", "graftkit"]),
]


def package_sources(root: Path = PACKAGE) -> dict[str, tuple[str, str]]:
    """``{module name: (file shown in messages, source)}`` for every ``.py`` file under ``root``."""
    sources = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        sources[name] = (str(path.relative_to(root.parent)), path.read_text(encoding="utf-8"))
    return sources


def imports_of(name: str, source: str, known: set[str]) -> list[tuple[int, str]]:
    """``(line, module)`` for every import of a module in ``known`` anywhere in ``source``, functions included.

    ``from pkg import sub`` counts as an import of ``pkg.sub`` when that is a module, else of ``pkg``.
    """
    is_package = name in known and any(k.startswith(name + ".") for k in known)
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                module = ".".join(anchor + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            targets = [f"{module}.{alias.name}" if f"{module}.{alias.name}" in known else module
                       for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # ``import graftkit.model.cut.x`` -> the module it names
                target = target.rpartition(".")[0]
            if target:
                found.append((node.lineno, target))
    return found


def layer_of(module: str) -> int | None:
    """Index in ``LAYERS`` of ``module``'s layer, or None if no layer names it."""
    best, index = -1, None
    for i, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, index = len(prefix), i
    return index


def layer_violations(sources: dict[str, tuple[str, str]]) -> list[str]:
    """One line per import of a higher layer, per module that no layer names, and per layer prefix naming
    no module (a renamed package would otherwise leave its layer empty and its modules unchecked)."""
    known = set(sources)
    problems = [f"tests/test_layers.py LAYERS: {prefix} names no module of the package"
                for _, prefixes in LAYERS for prefix in prefixes
                if not any(m == prefix or m.startswith(prefix + ".") for m in known)]
    for name, (file, source) in sorted(sources.items()):
        own = layer_of(name)
        if own is None:
            problems.append(f"{file}: module {name} is in no layer of tests/test_layers.py LAYERS")
            continue
        for line, target in imports_of(name, source, known):
            theirs = layer_of(target)
            if theirs is not None and theirs > own:
                problems.append(f"{file}:{line} imports {target} (layer {LAYERS[theirs][0]}) from the lower "
                                f"layer {LAYERS[own][0]}")
    return problems


def import_cycles(sources: dict[str, tuple[str, str]]) -> list[str]:
    """One line per import cycle between modules, naming each import in it (``file:line imports module``)."""
    known = set(sources)
    edges: dict[str, dict[str, int]] = {name: {} for name in sources}
    for name, (_, source) in sources.items():
        for line, target in imports_of(name, source, known):
            if target != name:
                edges[name].setdefault(target, line)
    cycles, done = [], set()
    for start in sorted(edges):
        # The shortest way back to ``start`` (breadth first), if any: each cycle reported once.
        previous, frontier = {start: None}, [start]
        while frontier and start not in done:
            following = []
            for module in frontier:
                for target in sorted(edges[module]):
                    if target == start:
                        chain = [module]
                        while previous[chain[-1]] is not None:
                            chain.append(previous[chain[-1]])
                        chain.reverse()
                        if not done & set(chain):
                            links = [f"{sources[a][0]}:{edges[a][b]} imports {b}"
                                     for a, b in zip(chain, chain[1:] + [start])]
                            cycles.append("cycle: " + " -> ".join(links))
                        done.add(start)
                        break
                    if target not in previous:
                        previous[target] = module
                        following.append(target)
                if start in done:
                    break
            frontier = following
    return cycles


def test_no_module_imports_a_higher_layer():
    problems = layer_violations(package_sources())
    assert not problems, "\n".join(problems)


def test_no_import_cycles():
    cycles = import_cycles(package_sources())
    assert not cycles, "\n".join(cycles)


@pytest.fixture()
def package_copy():
    """The package's sources, to be edited in memory, and the problems they have as they are."""
    sources = package_sources()
    return dict(sources), set(layer_violations(sources)), set(import_cycles(sources))


def _add(sources, module, code) -> int:
    """Append ``code`` to ``module``'s source; the line number of its last line."""
    file, source = sources[module]
    sources[module] = (file, source + "\n\n" + code)
    return len(sources[module][1].splitlines())


def test_a_lazy_import_of_a_higher_layer_is_found(package_copy):
    sources, before, _ = package_copy
    end = _add(sources, "graftkit.data.pipeline",
               "def later():\n    from graftkit.training.stages import StageResult\n    return StageResult")
    expected = (f"graftkit/data/pipeline.py:{end - 1} imports graftkit.training.stages (layer training) "
                "from the lower layer data")
    assert set(layer_violations(sources)) - before == {expected}


@pytest.mark.parametrize("code, target", [
    ("import graftkit.results.report", "graftkit.results.report"),
    ("from graftkit.results import report", "graftkit.results.report"),
    ("from ..results import report as r", "graftkit.results.report"),
    ("from . import extract, key\nfrom ..results.report import write_run_report", "graftkit.results.report"),
    ("from graftkit import cli", "graftkit.cli"),
    ("import graftkit", "graftkit"),
])
def test_every_form_of_import_is_resolved(package_copy, code, target):
    sources, before, _ = package_copy
    _add(sources, "graftkit.features.store", code)
    new = set(layer_violations(sources)) - before
    assert len(new) == 1 and f" imports {target} (" in new.pop(), new


def test_a_cycle_is_found_and_named(package_copy):
    sources, violations, before = package_copy
    errors_line = _add(sources, "graftkit.errors", "def f():\n    from graftkit import log")
    log_line = _add(sources, "graftkit.log", "def g():\n    from graftkit.errors import GraftError")
    new = set(import_cycles(sources)) - before
    expected = (f"cycle: graftkit/errors.py:{errors_line} imports graftkit.log -> "
                f"graftkit/log.py:{log_line} imports graftkit.errors")
    assert new == {expected}
    assert set(layer_violations(sources)) == violations  # one layer: allowed, but not in a cycle


def test_a_layer_naming_no_module_is_reported(package_copy):
    sources, before, _ = package_copy
    del sources["graftkit.demo"]  # as if demo.py were renamed: its entry in LAYERS would check nothing
    assert set(layer_violations(sources)) - before == {
        "tests/test_layers.py LAYERS: graftkit.demo names no module of the package"}
