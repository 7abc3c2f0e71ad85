"""What a user's type checker sees of genqueue's public API: mypy (strict) run on a small user module.

genqueue loads its public names lazily (PEP 562 `__getattr__`), which a type checker cannot follow: the
`if TYPE_CHECKING:` imports in genqueue/__init__.py are what it reads instead. Without them (or with a
`py.typed` missing) `@genqueue.task`, `Task.enqueue_with` and `genqueue.current()` are all `Any`.
"""

from __future__ import annotations

import ast
import importlib
import importlib.resources
import inspect
import re
import typing
from pathlib import Path

import pytest
from mypy import api as mypy_api

import genqueue
from genqueue.jobs import task as task_module
from genqueue.tasks.registry import OPTIONS

ROOT = Path(genqueue.__file__).resolve().parents[1]

USER_CODE = """\
from datetime import timedelta

import genqueue


@genqueue.task(max_retries=3, timeout=120)
def make_image(prompt: str, size: str = "1024x1024") -> dict[str, str]:
    ctx = genqueue.current()
    reveal_type(ctx)
    if ctx is not None:
        reveal_type(ctx.attempt)
    return {"prompt": prompt, "size": size}


@genqueue.task
def count(n: int) -> int:
    return n


reveal_type(make_image)
reveal_type(make_image("a fox"))
reveal_type(count(2))
reveal_type(make_image.enqueue_with(kwargs={"prompt": "a fox"}, job_id="fox-1", in_=timedelta(minutes=5)))
reveal_type(count.enqueue(n=2))
reveal_type(genqueue.Settings.from_env())
"""

EXPECTED = [  # (line of USER_CODE, revealed type)
    (9, "genqueue.tasks.context.TaskContext | None"),
    (11, "int"),
    (20, "genqueue.jobs.task.Task[[prompt: str, size: str =], dict[str, str]]"),
    (21, "dict[str, str]"),
    (22, "int"),
    (23, "genqueue.jobs.enqueue.EnqueueResult"),
    (24, "genqueue.jobs.enqueue.EnqueueResult"),
    (25, "genqueue.settings.Settings"),
]


def run_mypy(tmp_path: Path, code: str) -> tuple[str, int]:
    """mypy --strict on `code` as a user's module; genqueue read as an installed package is (its own errors
    are not the user's: follow_imports=silent), from this checkout."""
    (tmp_path / "user_code.py").write_text(code)
    (tmp_path / "mypy.ini").write_text(
        f"[mypy]\nstrict = True\nmypy_path = {ROOT}\n\n[mypy-genqueue.*]\nfollow_imports = silent\n"
    )
    stdout, stderr, status = mypy_api.run(
        [
            "--config-file",
            str(tmp_path / "mypy.ini"),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--no-error-summary",
            str(tmp_path / "user_code.py"),
        ]
    )
    assert not stderr, stderr
    return stdout, status


def test_the_public_api_has_real_types_for_a_type_checker(tmp_path):
    stdout, status = run_mypy(tmp_path, USER_CODE)
    revealed = re.findall(r"user_code\.py:(\d+): note: Revealed type is \"(.*)\"", stdout)
    assert [(int(line), shown) for line, shown in revealed] == EXPECTED, stdout
    assert "error" not in stdout and status == 0, stdout
    assert not any("Any" in shown for _, shown in revealed)


def test_a_wrong_call_of_a_task_is_a_type_error(tmp_path):
    code = USER_CODE + 'make_image(3)\ncount.enqueue_with(kwargs={"n": 1}, in_=5)\n'
    stdout, status = run_mypy(tmp_path, code)
    errors = [line for line in stdout.splitlines() if ": error:" in line]
    assert status == 1 and len(errors) == 2, stdout
    assert "user_code.py:26: error: Argument 1 to" in errors[0] and '"int"; expected "str"' in errors[0]
    assert "user_code.py:27: error: Argument" in errors[1] and '"in_"' in errors[1]


def test_py_typed_is_shipped():
    assert importlib.resources.files("genqueue").joinpath("py.typed").is_file()


def test_every_lazy_public_name_is_imported_for_type_checkers():
    """The TYPE_CHECKING imports in genqueue/__init__.py name exactly the lazily loaded names, from the same
    module (a new public name cannot be left `Any`), and `__all__` lists them all."""
    tree = ast.parse((ROOT / "genqueue" / "__init__.py").read_text())
    [block] = [node for node in tree.body if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"]
    seen = {}
    for node in block.body:
        assert isinstance(node, ast.ImportFrom) and node.level == 1, ast.unparse(node)
        for alias in node.names:
            seen[alias.asname or alias.name] = (f"genqueue.{node.module}", alias.name)
    expected = {name: (module, genqueue._ALIASES.get(name, name)) for name, module in genqueue._EXPORTS.items()}
    assert seen == expected
    assert sorted(genqueue.__all__) == sorted(genqueue._EXPORTS)


@pytest.mark.parametrize("module", ["genqueue", "genqueue.retry"])
def test_all_is_the_lazy_exports(module):
    mod = importlib.import_module(module)
    assert sorted(mod.__all__) == sorted(mod._EXPORTS)
    assert all(getattr(mod, name) is not None for name in mod.__all__)


def test_the_task_decorator_s_typed_options_are_the_registry_s():
    """`@genqueue.task(...)`'s keyword options, as its overload declares them for a type checker, are the
    options `declare` accepts at run time."""
    overloads = typing.get_overloads(task_module.task)
    with_options = [f for f in overloads if "queue" in inspect.signature(f).parameters]
    assert len(overloads) == 2 and len(with_options) == 1
    params = inspect.signature(with_options[0]).parameters
    keywords = [n for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY]
    assert sorted(keywords) == sorted(("name", *OPTIONS))
