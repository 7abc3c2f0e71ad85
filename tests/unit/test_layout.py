"""The layout's rules, read from the source (ARCHITECTURE.md): packages import downwards only.

Every `genqueue.*` import of every module is resolved (relative ones included, lazy ones inside functions
too) and mapped to its package; each package imports only the layers below it, so the package graph has no
cycle and nothing below imports a face (api/ and cli/ are the top).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "genqueue"

# Higher layers may import lower ones, never the reverse. The top-level modules (settings, errors) are the
# floor every package stands on.
LAYERS: list[set[str]] = [
    {"errors"},
    {"settings"},
    {"support"},
    {"backend"},
    {"retry", "tenants", "limits"},
    {"usage"},
    {"tasks"},
    {"webhooks"},  # the delivery task, the relay (below dlq: the worker and jobs use it)
    {"dlq"},
    {"worker"},
    {"jobs"},
    {"runs"},
    {"api", "cli"},
]
FACES = {"api", "cli"}
# The two imports that break the rule on purpose, each lazy and documented where it is made.
ALLOWED = {
    ("settings", "retry"),  # Settings parses GENQUEUE_POLICY with retry.policy's pure parser, on first use
    ("cli", "api"),  # `genqueue api` starts the HTTP face and mints its tokens
}
TOP_LEVEL = {"__init__.py", "__main__.py", "settings.py", "errors.py"}


def layer_of(package: str) -> int:
    return next(i for i, layer in enumerate(LAYERS) if package in layer)


def package_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "genqueue" and len(parts) > 1 else None


def imports_of(path: Path) -> set[str]:
    rel = path.relative_to(PKG.parent).with_suffix("")
    module_parts = list(rel.parts)
    package_parts = module_parts[:-1] if module_parts[-1] != "__init__" else module_parts[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package_parts[: len(package_parts) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [f"{target}.{a.name}" for a in node.names] if node.module is None else [target]
            found.update(n for n in names if n.startswith("genqueue"))
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("genqueue"))
    return found


def package_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG)
        src = rel.parts[0].removesuffix(".py") if len(rel.parts) > 1 else rel.stem
        if src in ("__init__", "__main__"):
            continue  # the front door imports everything lazily by design
        for target in imports_of(path):
            dst = package_of(target)
            if dst and dst != src:
                graph.setdefault(src, set()).add(dst)
    return graph


def test_top_level_is_the_front_door_only():
    entries = {p.name for p in PKG.iterdir() if not p.name.startswith(("_", ".")) or p.name in TOP_LEVEL}
    modules = {e for e in entries if e.endswith(".py")}
    assert modules <= TOP_LEVEL, modules - TOP_LEVEL
    for package in (p for p in PKG.iterdir() if p.is_dir() and not p.name.startswith("__")):
        doc = ast.get_docstring(ast.parse((package / "__init__.py").read_text()))
        assert doc, f"genqueue/{package.name}/__init__.py needs a one-line docstring saying what it owns"


def test_every_package_has_a_layer():
    packages = {p.name for p in PKG.iterdir() if p.is_dir() and not p.name.startswith("__")}
    known = set().union(*LAYERS)
    assert packages <= known, f"add {packages - known} to LAYERS (and to ARCHITECTURE.md)"


def test_imports_point_down():
    upward = [
        (src, dst)
        for src, dsts in package_graph().items()
        for dst in dsts
        if (src, dst) not in ALLOWED and layer_of(dst) >= layer_of(src)
    ]
    assert not upward, f"imports that climb (or cross a layer): {sorted(upward)}"


@pytest.mark.parametrize("face", sorted(FACES))
def test_no_module_cycle_inside_a_face(face):
    """Within cli/ (and api/), modules form no cycle: cli/dlq.py and cli/dlq_bulk.py used to import each other."""
    graph: dict[str, set[str]] = {}
    for path in (PKG / face).rglob("*.py"):
        name = ".".join(path.relative_to(PKG.parent).with_suffix("").parts).removesuffix(".__init__")
        graph[name] = {t for t in imports_of(path) if t.startswith(f"genqueue.{face}.") and t != name}
    seen: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        seen[node] = 1
        for nxt in graph.get(node, ()):
            if nxt not in graph:
                continue
            assert seen.get(nxt) != 1, f"import cycle: {' -> '.join(stack + [node, nxt])}"
            if nxt not in seen:
                visit(nxt, stack + [node])
        seen[node] = 2

    for node in graph:
        if node not in seen:
            visit(node, [])


def test_the_lua_spells_the_parked_key_as_keys_py_does():
    from genqueue.backend import keys

    lua = (PKG / "limits" / "lua" / "limits.lua").read_text()
    assert f"local PARKED = '{keys.PARKED}'" in lua
