"""The package's layers (src/pfs/*/): imports flow one way, with no import circle, lazy imports included; no
package function is longer than 60 lines; rule files hold rules and the shared .smk files hold none.

Each subpackage's __init__ docstring says what it may import; LAYERS below is the same table, checked."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from pfs_testkit import REPO

PACKAGE = REPO / "src" / "pfs"
# subpackage -> the subpackages it may import (the root package pfs itself, which holds only __version__, and its
# own modules are always allowed); top-level modules (cli, __main__) may import everything
LAYERS = {
    "core": set(),
    "models": {"core"},
    "data": {"core"},
    "training": {"data", "core"},
    "method": {"models", "training", "core"},
    "stages": {"method", "training", "data", "models", "core"},
    "results": {"core"},
    "workflow": {"results", "core"},
}
MAX_FUNCTION_LINES = 60


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(name: str) -> str | None:
    """The module of ours that ``name`` (a module, or a name inside one) is: the longest known prefix."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str) -> set[str]:
    """Every module of pfs that ``module`` imports anywhere: at the top, inside functions (lazy imports) and under
    TYPE_CHECKING alike."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, *filter(None, [base])])
            names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        else:
            continue
        found.update(m for m in map(_resolve, names) if m and m != module)
    return found


GRAPH = {module: imports_of(module) for module in MODULES}


def _layer(module: str) -> str | None:
    """The subpackage a module belongs to (None: the root package and its top-level modules)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and (PACKAGE / parts[1]).is_dir() else None


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each a set of modules in a circle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return cycles


def test_the_import_graph_is_read_from_every_kind_of_import():
    # a top-level import, a lazy one inside a function, and a relative one all count
    assert "pfs.core.errors" in GRAPH["pfs.stages.train"]
    assert "pfs.training.loop" in GRAPH["pfs.stages.train"]  # imported inside run_job
    assert GRAPH["pfs.models"] >= {"pfs.models.registry", "pfs.models.vgg"}


def test_import_cycles_finds_a_circle_through_a_lazy_import():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert import_cycles(graph) == [["a", "b", "c"]]
    assert import_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle_in_the_package():
    assert import_cycles(GRAPH) == []


def test_every_subpackage_is_a_layer_with_a_docstring_saying_what_it_may_import():
    subpackages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert subpackages == set(LAYERS)
    for name in subpackages:
        doc = ast.get_docstring(ast.parse((PACKAGE / name / "__init__.py").read_text()))
        assert doc and re.search(r"[Ii]mport", doc), f"pfs.{name}/__init__.py: say what it owns and may import"


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_imports_flow_down_the_layers(layer):
    wrong = sorted(f"{module} imports {target}"
                   for module, targets in GRAPH.items() if _layer(module) == layer
                   for target in targets
                   if _layer(target) not in (None, layer, *LAYERS[layer]) or target in ("pfs.cli", "pfs.__main__"))
    assert wrong == [], f"pfs.{layer} may import only {sorted(LAYERS[layer])} (and pfs.core's root): {wrong}"


def long_functions(path: Path, limit: int = MAX_FUNCTION_LINES) -> list[tuple[str, int]]:
    """``path``'s functions (nested ones included) longer than ``limit`` lines, decorators to last line: (name,
    lines)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            lines = node.end_lineno - min([d.lineno for d in node.decorator_list] + [node.lineno]) + 1
            if lines > limit:
                found.append((node.name, lines))
    return found


def test_long_functions_counts_decorators_and_body(tmp_path):
    path = tmp_path / "m.py"
    path.write_text("@dec\ndef f():\n" + "    x = 1\n" * 3 + "\n\ndef g():\n    def h():\n" + "        y = 2\n" * 5)
    assert long_functions(path, 5) == [("g", 7), ("h", 6)]
    assert long_functions(path, 4) == [("f", 5), ("g", 7), ("h", 6)]


def test_no_package_function_is_longer_than_60_lines():
    too_long = [f"{path.relative_to(REPO)}: {name} ({lines} lines)"
                for path in MODULES.values() for name, lines in long_functions(path)]
    assert too_long == []


def _smk_files() -> list[Path]:
    return sorted((REPO / "rules").glob("*.smk"))


def test_rule_files_hold_rules_only_and_the_shared_files_no_rules():
    for path in _smk_files():
        text = path.read_text()
        rules = re.findall(r"^(?:rule|checkpoint) \w+:", text, re.M)
        defs = re.findall(r"^def \w+", text, re.M)
        assert not (rules and defs), f"{path.name} mixes rules and functions: {rules[:2]} {defs[:2]}"
        if not rules:
            lines = len(text.splitlines())
            assert lines <= 120, f"{path.name}: {lines} lines; split it by job (config, paths, resources)"
