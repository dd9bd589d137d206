"""Site and output rules (docs/rules.md): rewrite, try_files, error_pages, headers and compress."""

from __future__ import annotations

import importlib.util
import re
from typing import Any

from frontd.config.model import (
    COMPRESS_ENCODINGS,
    COMPRESS_TYPES,
    REDIRECT_STATUSES,
    Compression,
    ErrorPages,
    RewriteRule,
)
from frontd.config.units import show
from frontd.config.values import ValueReader
from frontd.http.patterns import RuleError, check_rule

REWRITE_KEYS: tuple[str, ...] = ("match", "to", "status")
_TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 §5.6.2
_FIELD_VALUE_RE = re.compile(r"[^\x00-\x08\x0a-\x1f\x7f]*")  # RFC 9110 §5.5: no CTL but HTAB
_MEDIA_PATTERN_RE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]*/(?:\*|\*\+[a-z0-9!#$&^_.+-]+|[a-z0-9][a-z0-9!#$&^_.+-]*)")
# Response fields `headers` cannot set: framing and hop-by-hop fields (RFC 9110 §7.6.1), the
# representation's encoding and range (their bytes are not the configuration's), and the two
# fields the connection always writes itself.
UNSETTABLE_HEADERS = frozenset({
    "connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade",
    "content-length", "content-encoding", "content-range", "date", "server",
})
_CODING_LIBRARIES = {"zstd": "zstandard", "br": "brotli"}


def _coding_available(coding: str) -> bool:
    """gzip is zlib (standard library); zstd and br need their optional package."""
    library = _CODING_LIBRARIES.get(coding)
    return library is None or importlib.util.find_spec(library) is not None


class RulesSection(ValueReader):
    """The rule keys of a vhost or route: rewrite, try_files, error_pages, headers, compress."""

    def output_keys(self, table: dict[str, object], path: str) -> dict[str, Any]:
        """The output-rule keys a vhost or route table sets (headers, compress, compress_types,
        compress_min_size, precompressed), checked; keys it does not set are absent."""
        out: dict[str, Any] = {}
        if "headers" in table:
            out["headers"] = self.response_headers(table["headers"], f"{path}.headers")
        if "compress" in table:
            out["compress"] = self.compress_encodings(table["compress"], f"{path}.compress")
        if "compress_types" in table:
            out["compress_types"] = self.media_patterns(table["compress_types"], f"{path}.compress_types")
        if "compress_min_size" in table:
            out["compress_min_size"] = self.size(table["compress_min_size"], f"{path}.compress_min_size",
                                                 positive=False)
        if "precompressed" in table:
            out["precompressed"] = self.boolean(table["precompressed"], f"{path}.precompressed")
        return out

    def resolve_output(self, outer: dict[str, Any], inner: dict[str, Any], path: str, *,
                       files: bool = True) -> dict[str, Any]:
        """The output-rule fields of a Route (or VHost): `inner`'s keys over `outer`'s (the
        vhost's), `headers` field by field. `files`: whether it serves static files (static
        routes, script-mode gateway routes), the only ones `precompressed` concerns."""
        headers = {**outer.get("headers", {}), **inner.get("headers", {})}
        values: dict[str, Any] = {"headers": tuple(headers.items())}
        merged = {**outer, **inner}
        encodings = merged.get("compress", ())
        for option in ("compress_types", "compress_min_size"):
            if option in inner and not encodings:
                self.fail(f"{path}.{option}", "only applies with compress")
        if encodings:
            values["compress"] = Compression(encodings, merged.get("compress_types", COMPRESS_TYPES),
                                             merged.get("compress_min_size", 1024))
        if files and merged.get("precompressed"):
            values["precompressed"] = True
        return values

    def response_headers(self, value: object, key: str) -> dict[bytes, bytes]:
        """`headers = { "Name" = "value" }`: lower-case name -> value; "" removes the field."""
        table = self.table(value, key)
        fields: dict[bytes, bytes] = {}
        for name, text in table.items():
            field_key = f"{key}.{show(name)}"
            if not _TOKEN_RE.fullmatch(name):
                self.fail(field_key, f"{show(name)} is not a header field name")
            lower = name.lower()
            if lower in UNSETTABLE_HEADERS:
                self.fail(field_key, f"{show(name)} cannot be set: frontd writes it (framing, hop-by-hop "
                          "or representation field)")
            if not isinstance(text, str):
                self.fail(field_key, f'expected a string ("" removes the field), got {show(text)}')
            if not _FIELD_VALUE_RE.fullmatch(text) or text != text.strip(" \t"):
                self.fail(field_key, "a value has no CR, LF, NUL or other control characters, nor "
                          "leading or trailing spaces")
            try:
                data = text.encode("latin-1")
            except UnicodeEncodeError:
                self.fail(field_key, f"{show(text)}: a value must be Latin-1 (ASCII, in practice)")
            if lower.encode() in fields:
                self.fail(field_key, f"{show(name)} is set twice (names are case-insensitive)")
            fields[lower.encode()] = data
        return fields

    def compress_encodings(self, value: object, key: str) -> tuple[str, ...]:
        """`compress = true` (every coding available, zstd first), false, or a list in order."""
        if isinstance(value, bool):
            return tuple(c for c in COMPRESS_ENCODINGS if _coding_available(c)) if value else ()
        if not isinstance(value, list) or not value:
            self.fail(key, f'expected true, false or a list such as ["zstd", "br", "gzip"], got {show(value)}')
        codings: list[str] = []
        for i, item in enumerate(value):
            coding = self.choice(item, f"{key}[{i}]", COMPRESS_ENCODINGS)
            if not _coding_available(coding):
                self.fail(f"{key}[{i}]", f"{show(coding)} needs the {_CODING_LIBRARIES[coding]} package, which is not "
                          "installed (pip install 'frontd[compress]')")
            if coding in codings:
                self.fail(f"{key}[{i}]", f"{show(coding)} is listed twice")
            codings.append(coding)
        return tuple(codings)

    def media_patterns(self, value: object, key: str) -> tuple[str, ...]:
        """Media types such as "text/css", "text/*" or "application/*+json", lower case."""
        if not isinstance(value, list) or not value:
            self.fail(key, f'expected a list of media types such as ["text/*", "application/json"], got {show(value)}')
        patterns: list[str] = []
        for i, item in enumerate(value):
            text = self.string(item, f"{key}[{i}]", "a media type").lower()
            if not _MEDIA_PATTERN_RE.fullmatch(text):
                self.fail(f"{key}[{i}]", f'expected a media type such as "text/css", "text/*" or '
                          f'"application/*+json", got {show(item)}')
            patterns.append(text)
        return tuple(patterns)

    def vhost_rules(self, table: dict[str, object], path: str, root: str | None) -> dict[str, Any]:
        """A vhost's `rewrite` rules, `try_files` (for its root) and `error_pages`."""
        values: dict[str, Any] = {}
        if "rewrite" in table:
            values["rewrites"] = tuple(
                self.rewrite_rule(item, f"{path}.rewrite[{i}]")
                for i, item in enumerate(self.tables(table["rewrite"], f"{path}.rewrite", "vhost.rewrite")))
        if "try_files" in table:
            if root is None:
                self.fail(f"{path}.try_files", "only applies with root (the files it tries are under it); "
                          "set it on a static or script-mode route instead")
            values["try_files"] = self.try_files(table["try_files"], f"{path}.try_files")
        if "error_pages" in table:
            values["error_pages"] = self.error_pages(table["error_pages"], f"{path}.error_pages")
        return values

    def rewrite_rule(self, table: dict[str, object], key: str) -> RewriteRule:
        """One `[[vhost.rewrite]]`: its regex compiled and its replacement checked now."""
        self.check_keys(table, REWRITE_KEYS, key)
        for name in ("match", "to"):
            if name not in table:
                self.fail(key, f'missing key "{name}"')
        match = self.string(table["match"], f"{key}.match", "a regular expression")
        to = self.string(table["to"], f"{key}.to", 'a path such as "/index.php?p=$1"')
        if not to.isascii():
            self.fail(f"{key}.to", f"write it percent-encoded (ASCII only), got {show(to)}")
        status = self.redirect_status(table["status"], f"{key}.status") if "status" in table else None
        rule = RewriteRule(match=match, to=to, status=status, key=key)
        try:
            check_rule(rule.match, rule.to, external=rule.status is not None)
        except RuleError as exc:
            self.fail(key, str(exc))
        return rule

    def redirect_status(self, value: object, key: str) -> int:
        if value not in REDIRECT_STATUSES or isinstance(value, bool):
            self.fail(key, f"expected one of {', '.join(map(str, REDIRECT_STATUSES))}, got {show(value)}")
        return int(value)  # type: ignore[call-overload]

    def redirect_url(self, value: object, key: str) -> str:
        """A redirect route's target: a path or an http(s) URL, written out (only `$host` varies)."""
        url = self.string(value, key, 'a URL such as "https://example.com/new/" or a path such as "/new/"')
        if not url.isascii() or any(c.isspace() or ord(c) < 0x20 or c in "\x7f#?\\" for c in url):
            self.fail(key, f"a URL without spaces, control characters, backslashes, query or fragment "
                      f"(the client's query is appended), got {show(url)}")
        if "$" in url.replace("$host", ""):
            self.fail(key, f"the only variable is $host, got {show(url)}")
        if url.startswith("/"):
            if url.startswith("//"):
                self.fail(key, f'a path starts with one "/" (//host is another site), got {show(url)}')
        elif not re.match(r"https?://[^/]+", url):
            self.fail(key, f'expected a path ("/new/") or an http:// or https:// URL, got {show(url)}')
        return url

    def try_files(self, value: object, key: str) -> tuple[str, ...]:
        """["$uri", "$uri/", "/index.php?$query"]: paths tried in turn, then a URI or "=404"."""
        if not isinstance(value, list) or len(value) < 2:
            self.fail(key, 'expected an array of two or more entries such as ["$uri", "$uri/", "/index.php?$query"], '
                      f"got {show(value)}")
        entries = [self.string(item, f"{key}[{i}]", "a path") for i, item in enumerate(value)]
        for i, entry in enumerate(entries):
            item_key = f"{key}[{i}]"
            if not entry.isascii() or any(c.isspace() or ord(c) < 0x20 or c in "\x7f#\\" for c in entry):
                self.fail(item_key, f"no spaces, control characters, backslashes or fragment, got {show(entry)}")
            last = i == len(entries) - 1
            if last and entry.startswith("="):
                if not re.fullmatch(r"=[45][0-9][0-9]", entry):
                    self.fail(item_key, f'expected "=" and an error status such as "=404", got {show(entry)}')
                continue
            variables = ("$uri", "$query") if last else ("$uri",)
            rest = entry
            for variable in variables:
                rest = rest.replace(variable, "")
            if "$" in rest:
                self.fail(item_key, f"the variables are {' and '.join(variables)}, got {show(entry)}")
            if not last and "?" in entry:
                self.fail(item_key, f"a file to try has no query (only the last entry is a URI), got {show(entry)}")
            if not entry.startswith(("/", "$uri")):
                self.fail(item_key, f'must start with "/" or "$uri", got {show(entry)}')
            if any(s in (".", "..") for s in entry.partition("?")[0].split("/")):
                self.fail(item_key, f'must not contain "." or ".." segments, got {show(entry)}')
        return tuple(entries)

    def error_pages(self, value: object, key: str) -> ErrorPages:
        """{ 404 = "/errors/404.html" }: error status to a page's path (routed internally)."""
        table = self.table(value, key)
        pages: dict[int, str] = {}
        for name, page in table.items():
            if not re.fullmatch(r"[45][0-9][0-9]", name):
                self.fail(f"{key}.{name}", "expected an error status (400 to 599) as the key")
            pages[int(name)] = self.status_path(page, f"{key}.{name}")
        return tuple(sorted(pages.items()))
