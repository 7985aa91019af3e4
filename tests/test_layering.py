"""The package's shape (STYLE.md, issue 21): imports flow one way and never in a circle.

Layers, lowest first: the top-level helpers (checks, atomic, distributed, run_folder) and lzn/core; then
lzn/models, lzn/data and lzn/viz; then lzn/eval and lzn/training; then lzn/recipes; then lzn/cli and
lzn/serve. A module may import its own layer's package and any layer below, never one above. Every import
counts, also those inside functions (that is where circles hide). Only lzn/distributed.py touches
torch.distributed. Each module must also import on its own in a fresh interpreter."""

from __future__ import annotations

import ast
import subprocess
import sys
import warnings
from pathlib import Path

import lzn

ROOT = Path(lzn.__file__).parent
TOP = ("checks", "atomic", "distributed", "run_folder", "__init__", "__main__")
LAYERS = {"core": 0, "models": 1, "data": 1, "viz": 1, "eval": 2, "training": 2, "recipes": 3, "cli": 4, "serve": 4}
DISTRIBUTED = "lzn.distributed"

# Known violations still being removed (issue 21): each entry is allowed until fixed. An entry that no
# longer occurs is reported as a warning (others fix them in parallel): delete it then, so the list only
# shrinks.
ALLOWED_UPWARD: set[tuple[str, str]] = set()
ALLOWED_CIRCLES: set[frozenset[str]] = set()


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The deepest lzn module a dotted name lies in (a class of lzn.models.network -> lzn.models.network)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str) -> set[str]:
    tree = ast.parse(MODULES[module].read_text())
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for name in names:
            target = _resolve(name) if name.startswith("lzn") else None
            if target and target != module and not module.startswith(target + "."):  # not its own package
                out.add(target)
    return out


def _layer(module: str) -> int:
    parts = module.split(".")
    if len(parts) == 1 or module == "lzn.__main__":
        return -1  # the package (re-exports only) and `python -m lzn` (the CLI's entry point)
    return LAYERS[parts[1]] if parts[1] in LAYERS else 0  # top-level helpers sit with core


GRAPH = {m: _imports(m) for m in MODULES}


def test_every_folder_has_a_layer():
    folders = {p.name for p in ROOT.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert folders <= set(LAYERS), f"give {sorted(folders - set(LAYERS))} a layer in tests/test_layering.py"
    tops = {p.stem for p in ROOT.glob("*.py")}
    assert tops <= set(TOP), f"new top-level module(s) {sorted(tops - set(TOP))}: put them in a layer's folder"


def test_no_upward_import():
    upward = {(m, t) for m, targets in GRAPH.items() for t in targets
              if _layer(m) >= 0 and _layer(t) > _layer(m)}
    sideways = {(m, t) for m, targets in GRAPH.items() for t in targets  # models, data, viz: apart
                if _layer(m) == _layer(t) == 1 and m.split(".")[1] != t.split(".")[1]}
    upward |= sideways
    assert upward - ALLOWED_UPWARD == set(), "imports from a higher layer"
    for entry in ALLOWED_UPWARD - upward:
        warnings.warn(f"fixed: remove {entry} from ALLOWED_UPWARD in tests/test_layering.py", stacklevel=1)


def _circles() -> set[frozenset[str]]:
    """Strongly connected components of more than one module (Tarjan), package __init__ files left out:
    they only re-export, and Python runs them before any of their modules anyway."""
    graph = {m: {t for t in ts if MODULES[t].name != "__init__.py"} for m, ts in GRAPH.items()
             if MODULES[m].name != "__init__.py"}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: set[frozenset[str]] = set()

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.add(frozenset(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_circle():
    circles = _circles()
    assert circles - ALLOWED_CIRCLES == set(), "import circles (each a file with two jobs?)"
    for entry in ALLOWED_CIRCLES - circles:
        warnings.warn(f"fixed: remove {sorted(entry)} from ALLOWED_CIRCLES in tests/test_layering.py", stacklevel=1)


def test_only_distributed_touches_torch_distributed():
    users = []
    for module, path in MODULES.items():
        if module == DISTRIBUTED:
            continue
        text = path.read_text()
        if "torch.distributed" in text or "import distributed as" in text and "from torch" in text:
            users.append(module)
    assert users == [], f"use lzn.distributed instead of torch.distributed in {users}"


def test_every_module_imports_alone_in_a_fresh_interpreter():
    # One interpreter per module would take minutes (torch's import); one interpreter that forgets every
    # lzn module before importing the next gives each module a fresh lzn.
    script = (
        "import importlib, sys, traceback\n"
        "bad = []\n"
        f"for name in {sorted(set(MODULES) - {'lzn.__main__'})!r}:\n"
        "    for m in [m for m in sys.modules if m == 'lzn' or m.startswith('lzn.')]:\n"
        "        del sys.modules[m]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception:\n"
        "        bad.append(name + ': ' + traceback.format_exc().splitlines()[-1])\n"
        "print('\\n'.join(bad))\n"
        "sys.exit(1 if bad else 0)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]


def test_files_stay_small_and_the_runner_never_duck_types_a_recipe():
    """One job per file (at most 400 lines in lzn/), and the runner calls only what every Recipe has."""
    lzn_dir = Path(__file__).resolve().parents[1] / "lzn"
    long = {str(p.relative_to(lzn_dir)): n for p in lzn_dir.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 400}
    assert not long, f"files over 400 lines: {long}"
    duck = [str(p.relative_to(lzn_dir)) for p in lzn_dir.rglob("*.py")
            if "hasattr(rec" in p.read_text() or "getattr(rec" in p.read_text()]
    assert not duck, f"recipes duck-typed in {duck}"
