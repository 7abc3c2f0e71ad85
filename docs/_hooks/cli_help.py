"""MkDocs hook: two fixes to what mkdocs-click renders from the commands' help on the CLI reference page.

- click's `\\b` blocks ("Examples:" followed by indented command lines) come out as one run-on paragraph:
  they are turned back into a code block, line for line.
- A flag declared without a default shows click's internal `Sentinel.UNSET`: a boolean flag's default is
  off, so it is shown as `False` (anything else as no default).
"""

from __future__ import annotations

import re

EXAMPLES = re.compile(r"<p>(Examples?:)\n((?:  .*(?:\n|(?=</p>)))+)</p>")
UNSET_ROW = re.compile(r"(<td>(\w+)</td>\s*<td>.*?</td>\s*)<td><code>Sentinel\.UNSET</code></td>", re.DOTALL)


def _examples(match: re.Match[str]) -> str:
    lines = [line[2:] for line in match.group(2).rstrip("\n").split("\n")]
    return f"<p>{match.group(1)}</p>\n<pre><code>" + "\n".join(lines) + "</code></pre>"


def _unset(match: re.Match[str]) -> str:
    shown = "<code>False</code>" if match.group(2) == "boolean" else ""
    return f"{match.group(1)}<td>{shown}</td>"


def on_page_content(html: str, page, config, files) -> str:
    if page.file.src_uri != "reference/cli.md":
        return html
    return UNSET_ROW.sub(_unset, EXAMPLES.sub(_examples, html))
