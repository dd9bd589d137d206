"""The syntax of rewrite rules: a regex on the decoded path and a replacement, checked at load.

Pure functions: config/rules.py checks each rule with `check_rule` (a bad regex or an unknown group
is a `-t` error naming the rule); frontd/rules/rewrite.py compiles the rules once per worker and
runs them per request.

The replacement `to` takes `$1`..`$9`, `${name}` (a named group, or `${12}`) and `$$` for a
dollar. A substituted group is percent-encoded again for the part of the URL it lands in (a group
is decoded text: a "?" or "%" in it must not start a query or an escape). When `to` has a query,
the client's query is appended after it with "&" (nginx's behaviour); without one, the client's
query is kept; a `to` that ends in "?" drops it.

ReDoS guard, in three parts, all but the last at load:
- a pattern in which a repeated part itself holds a repetition (`(a+)+`, `(\\w*)*`,
  `(?:x|y+){2,}`), the shape behind exponential backtracking, is refused;
- a path is matched only when it is at most `MAX_REWRITE_INPUT` characters long (longer ones are
  a 414 on a vhost with rewrite rules);
- what is left is polynomial backtracking (`(.*)(.*)(.*)x` is cubic: 7.5 s on a 2048-character
  path), so each pattern is timed on probe paths of 64 and 128 characters (its leading literal
  text, then one character repeated: letters, digits, "/" and the pattern's own literals), and
  refused when the growth between the two, carried to `MAX_REWRITE_INPUT`, exceeds
  `MAX_MATCH_COST` seconds. This is a measurement, not a proof: it catches the usual shapes.
"""

from __future__ import annotations

import math
import re
import re._parser as sre_parse  # the stdlib's own parser: what `re.compile` would build
import time

MAX_REWRITE_INPUT = 2048  # characters of decoded path a rewrite regex ever sees
MAX_MATCH_COST = 0.05  # seconds one search may be expected to take at MAX_REWRITE_INPUT
_PROBE_LENGTHS = (64, 128)
_PROBE_CHARS = "a0/.-_"
_TIMER_FLOOR = 0.0002  # below this a probe's time is noise, and far within budget
_REF = re.compile(r"\$(?:([1-9])|\{([A-Za-z_][A-Za-z0-9_]*|[0-9]+)\}|(\$))")
# What a substituted group may keep as it is, in a path and in a query ("&", "=", "+" and "#" are
# encoded in a query so that a group is one value, never a new parameter).
PATH_SAFE = "/!$&'()*+,;=:@-._~"
QUERY_SAFE = "/!$'()*,;:@-._~"
_ABSOLUTE = re.compile(r"https?://[^/?#$]+(?=[/?]|$)")
_REPEATS = (sre_parse.MAX_REPEAT, sre_parse.MIN_REPEAT, getattr(sre_parse, "POSSESSIVE_REPEAT", None))

# A parsed replacement: literal text, or a group (number or name) and whether it lands in the query.
Part = tuple[str, "int | str | None", bool]


class RuleError(ValueError):
    """What is wrong with a rule, for config/rules.py to report with the rule's key."""


def _nested_repeat(items: sre_parse.SubPattern | list[tuple[object, object]], inside: bool) -> bool:
    """Whether a repetition (of more than one) holds another repetition, at any depth."""
    for op, arg in items:
        if op in _REPEATS:
            low, high, sub = arg  # type: ignore[misc]
            repeats = high is sre_parse.MAXREPEAT or high > 1
            if repeats and inside:
                return True
            if _nested_repeat(sub, inside or repeats):
                return True
        elif op is sre_parse.SUBPATTERN:
            if _nested_repeat(arg[-1], inside):  # type: ignore[index]
                return True
        elif op is sre_parse.BRANCH:
            if any(_nested_repeat(branch, inside) for branch in arg[1]):  # type: ignore[index]
                return True
        elif op in (sre_parse.ASSERT, sre_parse.ASSERT_NOT):
            if _nested_repeat(arg[1], inside):  # type: ignore[index]
                return True
        elif op is sre_parse.GROUPREF_EXISTS:
            if any(b is not None and _nested_repeat(b, inside) for b in arg[1:]):  # type: ignore[index]
                return True
    return False


def _literals(items: sre_parse.SubPattern) -> tuple[str, str]:
    """The pattern's leading literal text (after "^"), and every literal character in it."""
    lead: list[str] = []
    leading = True
    found: set[str] = set()
    for op, arg in items:
        if op is sre_parse.LITERAL:
            found.add(chr(arg))  # type: ignore[arg-type]
            if leading:
                lead.append(chr(arg))  # type: ignore[arg-type]
        elif not (op is sre_parse.AT and leading):
            leading = False
    return "".join(lead), "".join(sorted(found))


def _probe(pattern: re.Pattern[str], parsed: sre_parse.SubPattern) -> float:
    """The cost one search is expected to have at MAX_REWRITE_INPUT, from two probe lengths."""
    lead, literals = _literals(parsed)
    worst = 0.0
    for char in dict.fromkeys(_PROBE_CHARS + literals):
        costs: list[float] = []
        for length in _PROBE_LENGTHS:
            subject = lead + char * (length - len(lead))
            best = math.inf
            for _ in range(2):  # the faster of two runs: less noise from a busy machine
                started = time.perf_counter()
                pattern.search(subject)
                best = min(best, time.perf_counter() - started)
            costs.append(best)
            if costs[-1] > MAX_MATCH_COST:
                return costs[-1]  # already too slow on a short path: no need to go on
        short, long = costs
        if long < _TIMER_FLOOR:
            continue
        # Per doubling of the length: at least linear (2), at most quartic (16).
        growth = min(max(long / max(short, _TIMER_FLOOR / 4), 2.0), 16.0)
        steps = math.log2(MAX_REWRITE_INPUT / _PROBE_LENGTHS[1])
        worst = max(worst, long * growth ** steps)
    return worst


def compile_pattern(text: str) -> re.Pattern[str]:
    """Compile a rule's `match`; RuleError for a bad regex, a nested repetition, or a pattern
    whose probes say a search may take more than MAX_MATCH_COST."""
    try:
        pattern = re.compile(text)
    except re.error as exc:
        raise RuleError(f"bad regex {text!r}: {exc}") from None
    parsed = sre_parse.parse(text)
    if _nested_repeat(parsed, False):
        raise RuleError(f"regex {text!r} repeats a part that itself repeats (such as (a+)+): it can "
                        "backtrack for ever on some paths; write it without the nested repetition")
    cost = _probe(pattern, parsed)
    if cost > MAX_MATCH_COST:
        raise RuleError(f"regex {text!r} backtracks too much: a {MAX_REWRITE_INPUT}-character path may take "
                        f"up to about {cost:.2g}s (limit {MAX_MATCH_COST:g}s); anchor it, or make its repeated "
                        "parts unable to match the same characters (\"[^/]*\" rather than \".*\")")
    return pattern


def parse_to(to: str, pattern: re.Pattern[str], *, external: bool) -> tuple[Part, ...]:
    """Split a replacement into literal text and group references, checked against the pattern."""
    parts: list[Part] = []
    in_query = False
    pos = 0
    if external:
        if not (to.startswith("/") or _ABSOLUTE.match(to)):
            raise RuleError(f"to = {to!r}: a redirect goes to a path (\"/...\") or an http(s) URL "
                            "whose host is written out (no $ before the path)")
    elif not to.startswith("/"):
        raise RuleError(f'to = {to!r}: an internal rewrite goes to a path starting with "/"')
    if any(c in to for c in "\r\n\0 #\\"):
        raise RuleError(f"to = {to!r}: no spaces, control characters, backslashes or fragment")
    if "$" in _REF.sub("", to):
        raise RuleError(f"to = {to!r}: a $ must be $1..$9, ${{name}} or $$")

    def literal(text: str) -> None:
        nonlocal in_query
        if text:
            parts.append((text, None, in_query))
            in_query = in_query or "?" in text

    for m in _REF.finditer(to):
        literal(to[pos:m.start()])
        pos = m.end()
        number, name, dollar = m.groups()
        if dollar:
            literal("$")
            continue
        ref: int | str = int(number) if number else (int(name) if name.isdigit() else name)
        if isinstance(ref, int) and ref > pattern.groups:
            raise RuleError(f"to = {to!r}: ${ref} but the regex has {pattern.groups} group(s)")
        if isinstance(ref, str) and ref not in pattern.groupindex:
            raise RuleError(f"to = {to!r}: no group named {ref!r} in the regex")
        parts.append(("", ref, in_query))
    literal(to[pos:])
    return tuple(parts)


def check_rule(match: str, to: str, *, external: bool) -> None:
    """RuleError when a rule cannot be compiled or its replacement does not fit its regex."""
    parse_to(to, compile_pattern(match), external=external)
