"""The documentation against the code: every key the configuration loader accepts is documented,
with its true default where its table states one as a value; so are every flag of `frontd --help`,
every signal the master handles and every `FRONTD_*` environment variable; and every example
configuration in docs/*.md and README.md loads.

Conventions the docs follow (this module enforces them):

- docs/configuration.md has one section per kind of table in the file, headed as in `SECTIONS`
  below; a section documents its keys in the first column of its Markdown tables
  (`` | `key` | ``, or `` | `allow`, `deny`, `auth` | `` for a row shared by several). A section
  lists exactly the keys the loader accepts there: none missing, none it refuses. A Default cell
  that is one value in backticks (or one per kind of route, `` fastcgi: `0`; proxy: `8` ``) is
  what the loader gives when the key is left out; a default told in words is not checked.
- A ```toml block is checked by what it holds, with the paths it names created first in a
  temporary directory (absolute ones moved under it, relative ones against the file's directory,
  as frontd resolves them; see `Sandbox`):
  * a block with a `[[vhost]]` header is a whole file, which must pass `frontd -t`;
  * a block of one or more `[[vhost.route]]` tables, or of a route's keys (`prefix = ...`), is
    checked as the routes of one default vhost;
  * any other block holds top-level keys or tables (`[limits]`, `listen = ...`), checked followed by
    one default vhost.
  A block preceded by the line `<!-- fragment -->` is only parsed as TOML; that is for the few
  examples that cannot load on a machine without something outside frontd (an optional package).
- In ```sh, ```console, ```ini and untagged blocks, every frontd command given flags (`frontd -t`,
  `.venv/bin/frontd -s reload`, `python -m frontd -c`, `ExecStart=/usr/bin/frontd -c`) parses with
  frontd's own option parser: real flags, real `-s` names.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shlex
import shutil
import signal
import tempfile
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from ipaddress import ip_network
from pathlib import Path
from typing import Any

import pytest
import trustme

from frontd import cli
from frontd.config.access import AUTH_KEYS
from frontd.config.limits import LIMIT_KEYS
from frontd.config.listeners import LISTENER_KEYS
from frontd.config.load import TOP_KEYS, ConfigError, parse_config
from frontd.config.model import ROUTE_KINDS, Config
from frontd.config.routes import ROUTE_KEYS, ROUTE_OPTIONS
from frontd.config.rules import REWRITE_KEYS
from frontd.config.tls import ACME_KEYS, TLS_KEYS
from frontd.config.vhosts import VHOST_KEYS
from frontd.server.master import MASTER_SIGNALS
from frontd.server.pidfile import SIGNALS
from tests.conftest import REPO

DOCS = sorted((REPO / "docs").glob("*.md")) + [REPO / "README.md"]
CONFIGURATION = REPO / "docs" / "configuration.md"
OPERATIONS = REPO / "docs" / "operations.md"
FRAGMENT_MARK = "<!-- fragment -->"

# Heading of a section of docs/configuration.md -> the keys the loader accepts in that table.
SECTIONS: dict[str, tuple[str, ...]] = {
    "Top level": TOP_KEYS,
    "Listener tables": LISTENER_KEYS,
    "`[tls]`": TLS_KEYS,
    "`[acme]`": ACME_KEYS,
    "`[limits]`": LIMIT_KEYS,
    "`[[vhost]]`": VHOST_KEYS,
    "`auth` tables": AUTH_KEYS,
    "`[[vhost.rewrite]]`": REWRITE_KEYS,
    "`[[vhost.route]]`": ROUTE_KEYS,
}

_HEADING_RE = re.compile(r"^#{1,6} (.+?)\s*$", re.MULTILINE)
_ROW_KEYS_RE = re.compile(r"^\| *((?:`[a-z_][a-z0-9_]*`(?:, *)?)+) *\|", re.MULTILINE)
_FENCE_RE = re.compile(r"^( *)```([a-z]*)\n(.*?)^\1```$", re.MULTILINE | re.DOTALL)


# -- keys, flags, signals -----------------------------------------------------------------------


def sections(text: str) -> dict[str, str]:
    """Each heading of a Markdown text -> the text up to the next heading of any level."""
    found = list(_HEADING_RE.finditer(text))
    return {
        match.group(1): text[match.end(): found[i + 1].start() if i + 1 < len(found) else len(text)]
        for i, match in enumerate(found)
    }


def table_keys(section: str) -> set[str]:
    """The backticked names in the first column of a section's tables."""
    return {key for cell in _ROW_KEYS_RE.findall(section) for key in re.findall(r"`([^`]+)`", cell)}


@pytest.mark.parametrize("heading", SECTIONS)
def test_every_key_is_documented_in_its_section(heading: str) -> None:
    found = sections(CONFIGURATION.read_text())
    assert heading in found, f"docs/configuration.md has no section headed {heading!r}"
    documented = table_keys(found[heading])
    accepted = set(SECTIONS[heading])
    assert sorted(accepted - documented) == [], f"accepted but not documented under {heading!r}"
    assert sorted(documented - accepted) == [], f"documented under {heading!r} but refused by the loader"


def test_route_options_name_the_kinds_they_apply_to() -> None:
    """The Kinds column of the route options is the loader's: an option elsewhere is an error."""
    section = sections(CONFIGURATION.read_text())["`[[vhost.route]]`"]
    for line in re.findall(r"^\|.*\|$", section, re.MULTILINE):
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if len(cells) != 5 or not cells[0].startswith("`"):
            continue
        if cells[3].startswith("all"):
            documented = set(ROUTE_KINDS)
        elif cells[3] == "with `spawn`":
            documented = set(ROUTE_OPTIONS["spawn"])
        else:
            documented = {word for word in re.findall(r"[a-z]+", cells[3]) if word in ROUTE_KINDS}
        for key in re.findall(r"`([a-z_]+)`", cells[0]):
            assert documented == set(ROUTE_OPTIONS.get(key, ROUTE_KINDS)), f"route option {key}: kinds {cells[3]!r}"


def default_rows(section: str) -> Iterator[tuple[str, Any, str, dict[str, bool]]]:
    """(key, value, kinds, needed) for each row of a section's key tables whose Default is one TOML
    value (`` `"16KiB"` ``, `` `1024` ``, `` `false` ``) or one per kind of route (`` fastcgi: `0`;
    proxy: `8` ``), with the boolean keys that its meaning says it "Needs" set true. Defaults told in
    words are not checked."""
    lines = re.findall(r"^\|.*\|$", section, re.MULTILINE)
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]
    booleans = {cells[0].strip("`") for cells in rows if len(cells) > 3 and cells[1].startswith("boolean")}
    for cells in rows:
        key = re.fullmatch(r"`([a-z_0-9]+)`", cells[0])
        if key is None or len(cells) < 4:
            continue
        needed = {name: True for name in re.findall(r"Needs `([a-z_]+)`", cells[-1]) if name in booleans}
        kinds = cells[3] if len(cells) > 4 else ""
        if re.fullmatch(r"`[^`]+`", cells[2]):
            defaults = [(kinds, cells[2].strip("`"))]
        elif re.fullmatch(r"[a-z]+: `[^`]+`(?:; [a-z]+: `[^`]+`)+", cells[2]):
            defaults = re.findall(r"([a-z]+): `([^`]+)`", cells[2])
        else:
            continue
        for kind, text in defaults:
            try:
                value = tomllib.loads(f"value = {text}")["value"]
            except tomllib.TOMLDecodeError:
                continue  # a word in backticks, not a value
            yield key.group(1), value, kind, needed


# A route of each kind, for the defaults of route options.
ROUTE_TARGETS: dict[str, object] = {
    "static": "www", "cgi": "www", "fastcgi": "127.0.0.1:9000", "scgi": "127.0.0.1:4000",
    "uwsgi": "127.0.0.1:3031", "proxy": "http://127.0.0.1:8081", "redirect": "/elsewhere/",
}


def with_keys(heading: str, entry: dict[str, Any], kinds: str) -> dict[str, Any]:
    """A minimal file with `entry`'s keys in the table of `heading` (a route of one of `kinds`)."""
    vhost: dict[str, Any] = {"root": "www"}  # the first vhost takes every request
    data: dict[str, Any] = {"vhost": [vhost], "limits": {}, "tls": {}, "acme": {}}
    if heading == "Top level":
        data.update(entry)
    elif heading == "Listener tables":
        data["listen"] = [{"address": "127.0.0.1:8080", **entry}]
    elif heading == "`[[vhost]]`":
        vhost.update(entry)
    elif heading == "`[[vhost.route]]`":
        kind = next(word for word in re.findall(r"[a-z]+", kinds) if word in ROUTE_TARGETS or word == "all")
        kind = "proxy" if kind == "all" else kind
        vhost["route"] = [{"prefix": "/r/", kind: ROUTE_TARGETS[kind], **entry}]
    elif heading in ("`[tls]`", "`[acme]`", "`[limits]`"):
        data[heading.strip("`[]")].update(entry)
    else:
        pytest.fail(f"with_keys() cannot yet place a key of {heading!r}: teach it")
    return data


def canonical(config: Config) -> Config:
    """`config` with networks written one way: the built-in `status_allow` is ("127.0.0.1", "::1"),
    the same list read from a file ("127.0.0.1/32", "::1/128")."""
    vhosts = tuple(replace(vhost, status_allow=tuple(str(ip_network(net)) for net in vhost.status_allow))
                   for vhost in config.vhosts)
    return replace(config, vhosts=vhosts)


@pytest.mark.parametrize("heading", SECTIONS)
def test_documented_defaults_are_the_defaults(heading: str, tmp_path: Path) -> None:
    """A key set to the default its row states loads as the same configuration as the key left out."""
    (tmp_path / "www").mkdir()
    path = str(tmp_path / "frontd.conf")
    for key, value, kinds, needed in default_rows(sections(CONFIGURATION.read_text())[heading]):
        if kinds.startswith("with `spawn`"):
            continue  # only with a command to run
        try:
            given = parse_config(with_keys(heading, {**needed, key: value}, kinds), path)
        except ConfigError as exc:
            pytest.fail(f"{heading} {key} = {value!r}, its documented default, is refused: {exc}")
        left_out = parse_config(with_keys(heading, needed, kinds), path)
        assert canonical(given) == canonical(left_out), f"{heading}: {key} = {value!r} is documented as the default"


_TABLE_KEYS = {"limits": LIMIT_KEYS, "tls": TLS_KEYS, "acme": ACME_KEYS}


def test_keys_named_with_their_table_exist() -> None:
    """`[limits] send_timeout` or `limits.send_timeout` in the prose names a key of that table."""
    for path in DOCS:
        for table, key in re.findall(r"`\[?(limits|tls|acme)(?:\] |\.)([a-z_0-9]+)`", path.read_text()):
            assert key in _TABLE_KEYS[table], f"{path.relative_to(REPO)}: [{table}] has no key {key!r}"


def test_key_tables_of_other_pages_name_real_keys() -> None:
    """The tables headed "Key" on the topical pages (spawn.md's, rules.md's) name keys that exist."""
    known = {key for keys in SECTIONS.values() for key in keys}
    for path in DOCS:
        for table in re.findall(r"^\| Key \|.*\n\|[-|]+\|\n((?:\|.*\n)+)", path.read_text(), re.MULTILINE):
            for key in re.findall(r"^\| `([a-z_0-9]+)`", table, re.MULTILINE):
                assert key in known, f"{path.relative_to(REPO)}: no such key {key!r}"


def help_text(capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


def code_text(path: Path) -> str:
    """Everything in code: fenced blocks and inline `spans`, where commands are written."""
    text = path.read_text()
    blocks = [match.group(3) for match in _FENCE_RE.finditer(text)]
    spans = re.findall(r"`([^`\n]+)`", _FENCE_RE.sub("", text))
    return "\n".join(blocks + spans)


def test_every_flag_of_help_is_documented(capsys: pytest.CaptureFixture[str]) -> None:
    text = help_text(capsys)
    flags = set(re.findall(r"(?<![\w-])(--?[a-z][a-z-]*)", text.split("options:", 1)[1]))
    assert {"-c", "--config", "-t", "--test", "-s", "--signal"} <= flags, text
    documented = "\n".join(code_text(path) for path in DOCS)
    missing = [flag for flag in sorted(flags) if not re.search(rf"(?<![\w-]){flag}(?![\w-])", documented)]
    assert missing == [], "flags of frontd --help that no doc shows in code"
    names = re.search(r"--signal \{([a-z,]+)\}", text)
    assert names is not None, text
    assert set(names.group(1).split(",")) == set(SIGNALS)


def signal_rows() -> dict[str, str]:
    """docs/operations.md's table of signals: each signal name in a row's first column -> the row."""
    table = sections(OPERATIONS.read_text())["Signals and `frontd -s`"]
    rows: dict[str, str] = {}
    for row in re.findall(r"^\|.*\|$", table, re.MULTILINE):
        first = row.split("|")[1]
        for name in re.findall(r"`([A-Z0-9]+)`", first):
            rows[name] = row
    return rows


def test_every_signal_of_the_master_is_documented() -> None:
    rows = signal_rows()
    handled = {signal.Signals(signum).name.removeprefix("SIG") for signum in MASTER_SIGNALS}
    handled.discard("CHLD")  # its own workers' exits, not a command
    assert sorted(handled - set(rows)) == [], "signals the master handles missing from docs/operations.md"
    for name, signum in SIGNALS.items():
        cells = rows.get(signum.name.removeprefix("SIG"), "").split("|")
        assert len(cells) > 2 and f"`{name}`" in cells[2], f"frontd -s {name} is not shown beside {signum.name}"


def test_every_environment_variable_is_documented() -> None:
    sources = "\n".join(path.read_text() for path in (REPO / "frontd").rglob("*.py"))
    used = set(re.findall(r"\bFRONTD_[A-Z_]+\b", sources))
    documented = "\n".join(path.read_text() for path in DOCS)
    assert used, "no FRONTD_ variables found: the pattern is stale"
    assert sorted(name for name in used if f"`{name}" not in documented) == []


def slug(heading: str) -> str:
    """A heading's anchor as GitHub makes it: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def test_links_between_pages_reach_a_heading() -> None:
    anchors = {path.name: {slug(h) for h in _HEADING_RE.findall(_FENCE_RE.sub("", path.read_text()))} for path in DOCS}
    for path in DOCS:
        text = _FENCE_RE.sub("", path.read_text())
        for target, anchor in re.findall(r"\]\(((?:docs/)?[a-z0-9]+\.md)?#([^)\s]+)\)", text):
            page = Path(target).name if target else path.name
            assert page in anchors, f"{path.relative_to(REPO)}: link to missing page {target}"
            assert anchor in anchors[page], f"{path.relative_to(REPO)}: no heading for {target}#{anchor}"


# -- examples -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    path: Path
    line: int
    lang: str
    text: str
    fragment: bool

    def __str__(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}"


def blocks(*langs: str) -> list[Block]:
    found: list[Block] = []
    for path in DOCS:
        text = path.read_text()
        for match in _FENCE_RE.finditer(text):
            if match.group(2) not in langs:
                continue
            indent = len(match.group(1))
            body = "".join(line[indent:] for line in match.group(3).splitlines(keepends=True))
            before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1].strip()
            found.append(Block(path, text.count("\n", 0, match.start()) + 1, match.group(2), body,
                               before == FRAGMENT_MARK))
    return found


TOML_BLOCKS = blocks("toml")
MINIMAL_VHOST = '[[vhost]]\nnames = ["localhost"]\ndefault = true\nroot = "www"\n'
# A spawned backend needs a user to run as when frontd runs as root, as the tests may: a file
# without one gets this line first.
AS_ROOT = 'user = "nobody"\n' if os.geteuid() == 0 else ""


def as_whole_file(block: Block) -> str:
    """The block as a complete configuration file (see the module's docstring)."""
    text = block.text
    data = tomllib.loads(text)
    if not re.search(r"^\s*\[\[vhost\]\]", text, re.MULTILINE):
        if "prefix" in data:
            text = f"{MINIMAL_VHOST}\n[[vhost.route]]\n{text}"
        elif set(data) == {"vhost"}:
            text = f"{MINIMAL_VHOST}\n{text}"
        else:
            tls = any(isinstance(entry, dict) and entry.get("tls") for entry in _listeners(data))
            text = f"{text}\n{MINIMAL_VHOST}" + ('tls = "internal"\n' if tls else "")
    return text if "user" in data else AS_ROOT + text


def _listeners(data: dict[str, Any]) -> list[Any]:
    listen = data.get("listen", [])
    return listen if isinstance(listen, list) else [listen]


class Sandbox:
    """A temporary tree in which an example's paths exist: the config file is conf/frontd.conf,
    an absolute path /x/y becomes fs/x/y (rewritten in the text), and each path is created as
    what its key wants (a directory, a file's directory, an htpasswd file, a certificate)."""

    def __init__(self, root: Path) -> None:
        # Searchable by all, as a deployment's directories are: the checks of workers' `user`
        # reach every path from /.
        root.chmod(0o755)
        self.root = root
        self.conf = root / "conf" / "frontd.conf"
        self.conf.parent.mkdir()
        (self.conf.parent / "www").mkdir()  # MINIMAL_VHOST's root
        self.moved: dict[str, str] = {}
        self.ca = trustme.CA()
        self.issued: dict[tuple[str, ...], trustme.LeafCert] = {}

    def write(self, text: str) -> Path:
        data = tomllib.loads(text)
        for kind, value, names in _fs_values(data):
            self.create(kind, value, names)
        for old, new in self.moved.items():
            text = text.replace(f'"{old}"', f'"{new}"').replace(f'"unix:{old}"', f'"unix:{new}"')
        self.conf.write_text(text)
        return self.conf

    def create(self, kind: str, value: str, names: tuple[str, ...]) -> None:
        real = value
        if os.path.isabs(value):
            if kind in ("program", "cgi") and os.path.isfile(value) and os.access(value, os.X_OK):
                return  # a program of this machine, as /usr/bin/perl
            real = str(self.root / "fs" / value.lstrip("/"))
            self.moved[value] = real
        target = Path(os.path.normpath(self.conf.parent / real))
        if kind in ("dir", "cgi"):
            target.mkdir(parents=True, exist_ok=True)
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        if kind == "program":
            target.write_text("#!/bin/sh\n")
            target.chmod(0o755)
        elif kind == "htpasswd":
            digest = base64.b64encode(hashlib.sha1(b"secret").digest()).decode()
            target.write_text(f"staff:{{SHA}}{digest}\n")
        elif kind in ("certificate", "key"):
            names = names or ("localhost",)
            leaf = self.issued.setdefault(names, self.ca.issue_cert(*names))
            pem = leaf.cert_chain_pems[0] if kind == "certificate" else leaf.private_key_pem
            pem.write_to_path(str(target))
        elif kind == "pem":
            self.ca.cert_pem.write_to_path(str(target))


Found = Iterator[tuple[str, str, tuple[str, ...]]]


def _fs_values(data: dict[str, Any]) -> Found:
    """(what to create, path, vhost names) for every file-system path of a parsed config."""
    for key in ("pid_file", "error_log", "access_log"):
        yield from _file(data.get(key))
    if "run_dir" in data:
        yield "file", data["run_dir"], ()  # frontd creates it; its parent must exist
    for entry in _listeners(data):
        address = entry["address"] if isinstance(entry, dict) else entry
        if address.startswith("unix:"):
            yield "file", address.removeprefix("unix:"), ()
    acme = data.get("acme", {})
    if "storage" in acme:
        yield "file", acme["storage"], ()
    if "ca_bundle" in acme:
        yield "pem", acme["ca_bundle"], ()
    for vhost in data.get("vhost", []):
        names = tuple(vhost.get("names", ()))
        yield from _file(vhost.get("access_log"))
        for table in (vhost, *vhost.get("route", [])):
            yield from _table_paths(table, names)


def _file(value: str | None) -> Found:
    if value is not None and value not in ("-", "off"):
        yield "file", value, ()


def _table_paths(table: dict[str, Any], names: tuple[str, ...]) -> Found:
    for key in ("root", "static", "cwd"):
        if key in table:
            yield "dir", table[key], names
    if isinstance(table.get("cgi"), str):
        yield "cgi", table["cgi"], names
    sendfile = table.get("x_sendfile", [])
    for directory in [sendfile] if isinstance(sendfile, str) else sendfile:
        yield "dir", directory, names
    if table.get("socket", "").startswith("unix:"):
        yield "file", table["socket"].removeprefix("unix:"), names
    for program in table.get("interpreters", {}).values():
        if "/" in program:
            yield "program", program, names
    if isinstance(table.get("auth"), dict):
        yield "htpasswd", table["auth"]["htpasswd"], names
    for key, kind in (("tls_certificate", "certificate"), ("tls_key", "key")):
        if key in table:
            yield kind, table[key], names


@pytest.fixture
def open_tmp() -> Iterator[Path]:
    """A temporary directory with no private directory above it (pytest's tmp_path is below one
    that only its user may enter)."""
    path = Path(tempfile.mkdtemp(prefix="frontd-docs-"))
    try:
        yield path
    finally:
        shutil.rmtree(path)


@pytest.mark.parametrize("block", TOML_BLOCKS, ids=str)
def test_toml_example_loads(
    block: Block, open_tmp: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Bare program names (spawn = ["python3", ...]) are found as on a server, not in a developer's
    # own PATH, which the spawned processes' user may not be able to enter.
    monkeypatch.setenv("PATH", "/usr/local/bin:/usr/bin:/bin")
    try:
        tomllib.loads(block.text)
    except tomllib.TOMLDecodeError as exc:
        pytest.fail(f"{block}: not TOML: {exc}")
    if block.fragment:
        return
    conf = Sandbox(open_tmp).write(as_whole_file(block))
    status = cli.main(["-t", "-c", str(conf)])
    out, err = capsys.readouterr()
    assert status == 0, f"{block}: frontd -t failed:\n{err}\n{conf.read_text()}"
    assert "configuration ok" in out


_COMMAND_RE = re.compile(r"(?:^|[\s=/;&|(])(?:frontd|python3? -m frontd)((?: +[^\s;&|)]+)*)")


def frontd_commands(block: Block) -> Iterator[list[str]]:
    """The arguments of each frontd command given flags in a shell, console or unit-file block."""
    for line in block.text.splitlines():
        if block.lang == "console":
            if not line.startswith("$ "):
                continue  # output
            line = line[2:]
        line = re.sub(r"(^|\s)#.*", "", line)
        for match in _COMMAND_RE.finditer(line):
            args = shlex.split(match.group(1))
            if args and args[0].startswith("-"):
                yield args


COMMAND_BLOCKS = [block for block in blocks("sh", "console", "ini", "") if any(frontd_commands(block))]


@pytest.mark.parametrize("block", COMMAND_BLOCKS, ids=str)
def test_shell_example_uses_real_flags(block: Block, capsys: pytest.CaptureFixture[str]) -> None:
    for args in frontd_commands(block):
        try:
            cli._parser().parse_args(args)
        except SystemExit as exc:
            assert exc.code == 0, f"{block}: frontd {shlex.join(args)}: {capsys.readouterr().err}"
