"""Files that README.md quotes whole are quoted as shipped (issue 12, item 9: the hello.sh shown
differed from cgi-bin/hello.sh)."""

from __future__ import annotations

import re

from tests.conftest import REPO


def quoted_after(label: str) -> str:
    """The fenced block that follows `label` in README.md."""
    readme = (REPO / "README.md").read_text()
    match = re.search(re.escape(label) + r"[^\n]*\n\n```[a-z]*\n(.*?)```\n", readme, re.DOTALL)
    assert match, f"README.md quotes no block after {label!r}"
    return match.group(1)


def test_hello_sh_is_quoted_as_shipped() -> None:
    assert quoted_after("`cgi-bin/hello.sh`") == (REPO / "cgi-bin" / "hello.sh").read_text()
