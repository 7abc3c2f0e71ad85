"""Every module, file and attribute the docs name in backticks exists in this tree, so a move or a rename
cannot leave a stale reference behind (as the layout change did: `runrules.py`, `producer.enqueue`, ...).

Read from genqueue's docstrings and comments and from ARCHITECTURE.md, statically (nothing is imported):
- a path, `backend/keys.py`, `dlq/lua/add.lua`, `worker/`, a bare `keys.py`, or `backend/queues.SERIALIZER`
  (a module's path, then an attribute), resolves from the repository, genqueue/ or the naming file's package;
- a dotted module path, `genqueue.jobs.enqueue.enqueue` or `jobs.enqueue.enqueue` (genqueue's packages are
  named without `genqueue.`), resolves to a module and then to attributes of it (a class's own or inherited
  names; a lazy module's exports);
- in ARCHITECTURE.md, which names modules by their short name, `scripts.registered` or `errors.GenqueueError`
  resolves in some genqueue module of that name;
- `Class.attr`, for a class genqueue defines, names an attribute of that class.
Structlog event names (`dlq.replayed`) are not references. The check reads the tree it runs on: modules
added or moved by other changes are found as they are.
"""

from __future__ import annotations

import ast
import importlib.util
import io
import re
import tokenize
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PKG = ROOT / "genqueue"
DOCS = [ROOT / "ARCHITECTURE.md"]
# Modules that existed before the layout change: any reference to them is stale.
FORMER = {"producer", "jobretry", "jobmeta", "runrules", "luascripts"}
SPAN = re.compile(r"`([^`\n]+)`")
NAME = re.compile(r"[A-Za-z_]\w*")
FILE_SUFFIXES = (".py", ".lua", ".html", ".css", ".js", ".md", ".toml", ".json")


def modules() -> dict[str, Path]:
    """Dotted name (without `genqueue.`) -> file, for every module and package of genqueue."""
    found = {}
    for path in PKG.rglob("*.py"):
        parts = path.relative_to(PKG).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


@cache
def module_index() -> dict[str, Path]:
    return modules()


@cache
def tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text())


def names_in(body: list[ast.stmt]) -> set[str]:
    names: set[str] = set()
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                names |= {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, ast.If | ast.Try):  # `if TYPE_CHECKING:` imports, optional imports
            names |= names_in(node.body) | names_in(getattr(node, "orelse", []))
            for handler in getattr(node, "handlers", []):
                names |= names_in(handler.body)
    return names


@cache
def module_names(path: Path) -> frozenset[str]:
    """What `module.NAME` can be: top-level definitions, imports, and a lazy module's names (the keys of
    `_EXPORTS`, the strings its `__getattr__` compares with)."""
    body = tree(path).body
    names = names_in(body)
    for node in body:
        lazy = isinstance(node, ast.FunctionDef) and node.name == "__getattr__"
        exports = isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "_EXPORTS" for t in node.targets)
        if lazy or exports:
            names |= {c.value for c in ast.walk(node) if isinstance(c, ast.Constant) and isinstance(c.value, str)}
    if path.name == "__init__.py":  # a package's submodules are its attributes too
        names |= {p.stem for p in path.parent.glob("*.py")} | {p.name for p in path.parent.iterdir() if p.is_dir()}
    return frozenset(names)


@cache
def classes() -> dict[str, list[ast.ClassDef]]:
    found: dict[str, list[ast.ClassDef]] = {}
    for path in module_index().values():
        for node in ast.walk(tree(path)):
            if isinstance(node, ast.ClassDef):
                found.setdefault(node.name, []).append(node)
    return found


def class_has(cls: ast.ClassDef, attr: str, seen: frozenset[str] = frozenset()) -> bool:
    """`attr` is defined in the class body (methods, attributes, `self.attr = ...` anywhere in it), or may be
    inherited: from a genqueue base that has it, or from a base genqueue does not define (RQ's, FastAPI's)."""
    if attr in names_in(cls.body):
        return True
    for node in ast.walk(cls):
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) and node.attr == attr:
            return True
    for base in cls.bases:
        base_name = base.attr if isinstance(base, ast.Attribute) else getattr(base, "id", None)
        if base_name is None or base_name in seen:
            continue
        if base_name not in classes():
            if base_name not in ("object", "Exception", "Generic", "Protocol"):
                return True  # a third-party base: its names are not read here
            continue
        if any(class_has(b, attr, seen | {cls.name}) for b in classes()[base_name]):
            return True
    return False


def attributes_exist(path: Path, attrs: list[str]) -> bool:
    """module.attrs[0].attrs[1]...: the first is a module name; the rest, when the first is one of the
    module's classes, are checked on that class (one level)."""
    if not attrs:
        return True
    first = attrs[0]
    if first not in module_names(path):
        return False
    if len(attrs) == 1:
        return True
    local = [n for n in ast.walk(tree(path)) if isinstance(n, ast.ClassDef) and n.name == first]
    if local:
        return class_has(local[0], attrs[1])
    return True  # an attribute of a value (a constant's field, an instance's): not read statically


def resolve_dotted(dotted: str) -> bool | None:
    """True/False: a genqueue module path (with or without `genqueue.`) that does / does not resolve;
    None: not a genqueue module path."""
    parts = dotted.split(".")
    lowest = 1  # `jobs.x`: a genqueue package, named without `genqueue.`
    if parts[0] == "genqueue":
        parts, lowest = parts[1:], 0  # `genqueue.Settings`: a name of genqueue itself
    elif parts[0] not in {p.split(".")[0] for p in module_index() if p}:
        return None
    for cut in range(len(parts), lowest - 1, -1):
        path = module_index().get(".".join(parts[:cut]))
        if path is not None:
            return attributes_exist(path, parts[cut:])
    return False


def resolve_path(span: str, source: Path) -> bool:
    """A file or directory path, maybe followed by `.attr` after a module's path (`backend/queues.X`).
    A code file names paths from the repository, genqueue/ or its own package; a doc also from any genqueue
    package (ARCHITECTURE.md's paragraph on limits/ names `lua/limits.lua`). Another project's path
    (`rq/worker/base.py`) is not read."""
    first = span.split("/")[0]
    if "/" in span and first not in ("genqueue", "tests", "bench") and importlib.util.find_spec(first) is not None:
        return True
    bases = [ROOT, PKG]
    if source.is_relative_to(PKG):
        bases += [p for p in source.parents if p.is_relative_to(PKG)]
    else:
        bases += [p for p in PKG.rglob("*") if p.is_dir() and (p / "__init__.py").is_file()]
    if span.endswith("/"):
        return any((b / span).is_dir() for b in bases)
    if span.endswith(FILE_SUFFIXES):
        if "/" not in span:  # a bare file name: the naming file's neighbour, or any file of that name
            return any((b / span).is_file() for b in bases) or any(
                p.name == span for top in ("genqueue", "tests", "bench") for p in (ROOT / top).rglob(span)
            )
        return any((b / span).is_file() for b in bases)
    head, _, tail = span.rpartition("/")
    stem, *attrs = tail.split(".")
    for base in bases:
        path = base / head / f"{stem}.py"
        if path.is_file():
            return attributes_exist(path, attrs) if path.is_relative_to(PKG) else attrs[0] in names_in(tree(path).body)
    return False


@cache
def log_events() -> frozenset[str]:
    """structlog event names: the first argument of every log call (`log.warning("dlq.alert", ...)`)."""
    events = set()
    for path in module_index().values():
        for node in ast.walk(tree(path)):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("debug", "info", "warning", "error", "exception", "msg")
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                events.add(node.args[0].value)
    return frozenset(events)


def check(span: str, source: Path, *, short_names: bool) -> str | None:
    """Why `span` is a stale reference, or None (resolves, or is not a reference)."""
    span = span.strip()
    if not re.fullmatch(r"[\w./:-]+", span) or "://" in span or span.startswith(".") or span in log_events():
        return None
    module, colon, attr = span.partition(":")  # `genqueue.api.server:app` (not a key, `genqueue:workers`)
    if colon and "." in module and re.fullmatch(r"[\w.]+", module) and NAME.fullmatch(attr):
        ok = resolve_dotted(module)
        return None if ok is None or (ok and attributes_exist(*_module_path(module), [attr])) else "no such name"
    if "/" in span or span.endswith(FILE_SUFFIXES):
        return None if resolve_path(span, source) else "no such file"
    parts = span.split(".")
    if len(parts) < 2 or not all(NAME.fullmatch(p) for p in parts):
        return None
    if parts[0] in FORMER:
        return "a module that moved in the layout change"
    ok = resolve_dotted(span)
    if ok is not None:
        return None if ok else "no such module or name"
    if parts[0] in classes():  # `RetryManager.decide`
        return None if any(class_has(c, parts[1]) for c in classes()[parts[0]]) else "no such class attribute"
    if short_names:  # `scripts.registered`: a module by its short name
        paths = [p for name, p in module_index().items() if name.split(".")[-1] == parts[0]]
        if paths and not any(attributes_exist(p, parts[1:]) for p in paths):
            return "no such name in any module of that name"
    return None


def _module_path(dotted: str) -> tuple[Path]:
    name = dotted.removeprefix("genqueue").removeprefix(".")
    return (module_index()[name],)


def doc_texts(path: Path) -> list[tuple[int, str]]:
    """(line, text) of every docstring and comment of a module."""
    source = path.read_text()
    texts = []
    for node in ast.walk(tree(path)):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                if isinstance(first.value.value, str):
                    texts.append((first.lineno, first.value.value))
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            texts.append((tok.start[0], tok.string))
    return texts


def stale_references() -> list[str]:
    found = []
    former = re.compile(r"\b(?:" + "|".join(sorted(FORMER)) + r")\.(?!py\b)\w+")
    for path in sorted(PKG.rglob("*.py")):
        for start, text in doc_texts(path):

            def where(m: re.Match[str], path: Path = path, start: int = start, text: str = text) -> str:
                return f"{path.relative_to(ROOT)}:{start + text[: m.start()].count(chr(10))}"

            for m in SPAN.finditer(text):
                why = check(m.group(1), path, short_names=False)
                if why:
                    found.append(f"{where(m)}: `{m.group(1)}`: {why}")
            unquoted = SPAN.sub(lambda m: " " * len(m.group()), text)  # paths and old names outside backticks too
            for m in re.finditer(r"(?<![\w/.-])[\w/]+\.py\b", unquoted):
                if not resolve_path(m.group(), path):
                    found.append(f"{where(m)}: {m.group()}: no such file")
            for m in former.finditer(unquoted):
                found.append(f"{where(m)}: {m.group()}: a module that moved in the layout change")
    for doc in DOCS:
        for number, line in enumerate(doc.read_text().splitlines(), 1):
            for span in SPAN.findall(line):
                why = check(span, doc, short_names=True)
                if why:
                    found.append(f"{doc.name}:{number}: `{span}`: {why}")
    return found


def test_every_module_path_named_in_the_docs_resolves():
    assert stale_references() == []


@pytest.mark.parametrize(
    ("span", "stale"),
    [
        ("genqueue.jobs.enqueue.enqueue", False),
        ("jobs.enqueue.enqueue_many", False),
        ("jobs.enqueue.no_such_function", True),
        ("genqueue.no_such_module", True),
        ("genqueue.Settings", False),  # a lazily loaded name
        ("genqueue.NoSuchName", True),
        ("genqueue.api.server:app", False),
        ("genqueue.api.server:nothing", True),
        ("worker/transition.py", False),
        ("worker/no_such_module.py", True),
        ("store.py", False),  # a bare file name: the naming file's neighbour
        ("runrules.py", True),
        ("producer.enqueue", True),
        ("backend/queues.SERIALIZER", False),
        ("backend/queues.NO_SUCH_NAME", True),
        ("dlq/lua/", False),
        ("dlq/no_such_dir/", True),
        ("RetryManager.decide", False),
        ("RetryManager.no_such_method", True),
        ("retry.scheduled", False),  # a log event, not a module path
        ("retry.no_such_event", True),
        ("job.meta", False),  # a value's attribute, not a module path
        ("os.system", False),
    ],
)
def test_the_check_tells_stale_from_live(span, stale):
    assert (check(span, PKG / "dlq" / "store.py", short_names=False) is not None) is stale


@pytest.mark.parametrize(("span", "stale"), [("scripts.registered", False), ("scripts.no_such_function", True)])
def test_a_module_s_short_name_resolves_in_architecture_md(span, stale):
    assert (check(span, DOCS[0], short_names=True) is not None) is stale
