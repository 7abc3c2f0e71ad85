"""The documentation keeps up with the code, without mkdocs installed: every GENQUEUE_* variable the code
reads is in the configuration reference, the CLI reference is generated from the root click group (so every
command and subcommand is on it), the HTTP API page renders the schema the build hook generates, and the
README stays a first screen: short, no issue numbers, links that resolve."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
README_MAX_LINES = 250

ENV_NAME = re.compile(r"GENQUEUE_[A-Z_]+")
# "issue 21", "issues 21, 22", "(issue 19)", "issue #3", "#21": ticket numbers mean nothing to a user.
ISSUE_NUMBER = re.compile(r"\bissues?\s+#?\d+|(?<![\w&/#])#\d+\b", re.IGNORECASE)
MD_LINK = re.compile(r"\]\(([^)\s]+)\)")


def _names_in(text: str) -> set[str]:
    return set(ENV_NAME.findall(text))


def _code_env_names() -> set[str]:
    names: set[str] = set()
    for path in (ROOT / "genqueue").rglob("*.py"):
        names |= _names_in(path.read_text())
    return names


def _user_pages() -> list[Path]:
    return sorted(p for p in DOCS.rglob("*.md"))


def _walk(command: click.Command, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [path]
    if isinstance(command, click.Group):
        ctx = click.Context(command)
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            assert sub is not None, name
            found += _walk(sub, (*path, name))
    return found


def test_every_env_variable_the_code_reads_is_in_the_configuration_reference():
    code = _code_env_names()
    assert len(code) > 20, code  # the scan found the settings at all
    documented = _names_in((DOCS / "reference" / "configuration.md").read_text())
    missing = sorted(code - documented)
    assert not missing, f"add these to docs/reference/configuration.md: {missing}"


def test_the_cli_reference_is_generated_from_the_root_group_that_main_runs():
    from genqueue import cli as cli_module

    page = (DOCS / "reference" / "cli.md").read_text()
    directive = re.search(r"^::: mkdocs-click\n((?:    :\w+: .*\n)+)", page, re.MULTILINE)
    assert directive, "docs/reference/cli.md must use the mkdocs-click directive"
    options = dict(re.findall(r":(\w+): (.*)", directive.group(1)))
    assert options["module"] == "genqueue.cli" and options["prog_name"] == "genqueue"
    root = getattr(cli_module, options["command"])
    assert root is cli_module.cli and isinstance(root, click.Group)  # the group genqueue.cli:main runs
    assert "list_subcommands" in options and "depth" in options  # subcommands are rendered, not only listed
    # The group the directive names is the one `genqueue` (cli:main) dispatches to: its commands are all there.
    commands = _walk(root)
    assert ("worker",) in commands and ("dlq", "retry") in commands and ("api", "token") in commands, commands
    no_help = [" ".join(p) for p in commands[1:] if not _command_at(root, p).help]
    assert not no_help, f"commands without help text render as empty sections: {no_help}"


def _command_at(root: click.Command, path: tuple[str, ...]) -> click.Command:
    command = root
    for name in path:
        assert isinstance(command, click.Group)
        sub = command.get_command(click.Context(command), name)
        assert sub is not None
        command = sub
    return command


def test_the_http_api_page_renders_the_schema_the_build_hook_generates():
    page = (DOCS / "reference" / "http-api.md").read_text()
    assert '<swagger-ui src="openapi.json"/>' in page
    hook = (DOCS / "_hooks" / "openapi.py").read_text()
    assert 'SCHEMA_PATH = "reference/openapi.json"' in hook and "create_app" in hook
    assert not (DOCS / "reference" / "openapi.json").exists(), "the schema is generated, never committed"


def test_the_readme_is_a_first_screen():
    text = README.read_text()
    lines = text.count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines (at most {README_MAX_LINES}): move text to docs/"
    assert "make demo" in text and "make test" in text
    assert not ISSUE_NUMBER.findall(text), ISSUE_NUMBER.findall(text)


@pytest.mark.parametrize(
    "page", [README, ROOT / "ARCHITECTURE.md", *_user_pages()], ids=lambda p: str(p.relative_to(ROOT))
)
def test_no_issue_numbers_in_user_documentation(page):
    found = [m.group(0) for m in ISSUE_NUMBER.finditer(page.read_text())]
    assert not found, f"{page.relative_to(ROOT)} names issue numbers: {found}"


def test_the_readmes_relative_links_resolve():
    # mkdocs checks the site's own links; the README is not part of the site, so its links are checked here.
    broken = []
    for target in MD_LINK.findall(README.read_text()):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        if not (ROOT / target.split("#")[0]).exists():
            broken.append(target)
    assert not broken, broken


def test_the_issue_number_pattern_catches_what_it_must():
    for bad in ("(issue 19)", "issues 21, 22", "see #21", "Issue 14;"):
        assert ISSUE_NUMBER.search(bad), bad
    for fine in ("HTTP 503", "`{<queue>}`", "[x](#anchor-1)", "&#8203;", "rq/rq/issues/2191"):
        assert not ISSUE_NUMBER.search(fine), fine
