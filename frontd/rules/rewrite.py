"""`[[vhost.rewrite]]` rules, compiled once per worker; per request the rules are searched in
order and the first match wins. The syntax, its checks and the ReDoS guard are in
frontd/http/patterns.py."""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass

from frontd.config.model import RewriteRule
from frontd.errors import URITooLong
from frontd.http.patterns import (
    MAX_REWRITE_INPUT,
    PATH_SAFE,
    QUERY_SAFE,
    Part,
    parse_to,
)


@dataclass(frozen=True, slots=True)
class Compiled:
    rule: RewriteRule
    pattern: re.Pattern[str]
    parts: tuple[Part, ...]

    def expand(self, m: re.Match[str], query: str) -> str:
        """The target ("/path?query") for a match, with the client's query merged in."""
        out: list[str] = []
        for text, ref, in_query in self.parts:
            if ref is None:
                out.append(text)
                continue
            value = m.group(ref) or ""
            out.append(urllib.parse.quote(value, safe=QUERY_SAFE if in_query else PATH_SAFE))
        target = "".join(out)
        if target.endswith("?"):
            return target[:-1]  # nginx: a trailing "?" drops the client's query
        if query:
            target += ("&" if "?" in target else "?") + query
        return target


class Rewrites:
    """A vhost's rules, compiled once; `apply` per request."""

    __slots__ = ("rules",)

    def __init__(self, rules: tuple[RewriteRule, ...]) -> None:
        # Checked at load (check_rule); not probed again here, where a busy machine's timing
        # must not fail a worker's start.
        self.rules = tuple(Compiled(rule, pattern, parse_to(rule.to, pattern, external=rule.status is not None))
                           for rule in rules for pattern in (re.compile(rule.match),))

    def apply(self, path: str, query: str) -> tuple[RewriteRule, str] | None:
        """The first rule matching `path` and its target, or None."""
        if len(path) > MAX_REWRITE_INPUT:
            raise URITooLong(f"path of {len(path)} characters: rewrite rules match at most {MAX_REWRITE_INPUT}")
        for compiled in self.rules:
            m = compiled.pattern.search(path)
            if m is not None:
                target = compiled.expand(m, query)
                if compiled.rule.status is not None and target.startswith("/"):
                    # A group at the start ("/$1" with "/evil.test") must not make the
                    # scheme-relative "//evil.test": one leading slash, always.
                    target = "/" + target.lstrip("/")
                return compiled.rule, target
        return None
