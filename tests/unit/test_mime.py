"""frontd.http.mime: Content-Type from a file name."""

from __future__ import annotations

import mimetypes

import pytest

from frontd.http import mime
from frontd.http.mime import DEFAULT_TYPE, content_type

UTF8 = b"; charset=utf-8"

KNOWN = [
    ("index.html", b"text/html" + UTF8),
    ("page.htm", b"text/html" + UTF8),
    ("style.css", b"text/css" + UTF8),
    ("app.js", b"text/javascript" + UTF8),  # RFC 9239
    ("mod.mjs", b"text/javascript" + UTF8),
    ("data.json", b"application/json" + UTF8),
    ("app.js.map", b"application/json" + UTF8),
    ("site.webmanifest", b"application/manifest+json" + UTF8),
    ("readme.txt", b"text/plain" + UTF8),
    ("feed.xml", b"application/xml" + UTF8),
    ("logo.svg", b"image/svg+xml" + UTF8),
    ("README.md", b"text/markdown" + UTF8),
    ("table.csv", b"text/csv" + UTF8),
    ("app.wasm", b"application/wasm"),
    ("font.woff", b"font/woff"),
    ("font.woff2", b"font/woff2"),
    ("font.ttf", b"font/ttf"),
    ("font.otf", b"font/otf"),
    ("photo.webp", b"image/webp"),
    ("photo.avif", b"image/avif"),
    ("photo.jxl", b"image/jxl"),
    ("image.png", b"image/png"),
    ("anim.apng", b"image/apng"),
    ("photo.jpg", b"image/jpeg"),
    ("photo.jpeg", b"image/jpeg"),
    ("anim.gif", b"image/gif"),
    ("favicon.ico", b"image/vnd.microsoft.icon"),
    ("movie.mp4", b"video/mp4"),
    ("movie.webm", b"video/webm"),
    ("song.mp3", b"audio/mpeg"),
    ("song.ogg", b"audio/ogg"),
    ("sound.wav", b"audio/wav"),
    ("doc.pdf", b"application/pdf"),
    ("files.zip", b"application/zip"),
    ("files.tar.gz", b"application/gzip"),
    ("files.tar", b"application/x-tar"),
]


@pytest.mark.parametrize(("name", "expected"), KNOWN)
def test_known(name: str, expected: bytes) -> None:
    assert content_type(name) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("INDEX.HTML", b"text/html" + UTF8),
        ("Photo.JPG", b"image/jpeg"),
        ("/srv/www/a.b/index.Html", b"text/html" + UTF8),
        ("/srv/www/dir.d/", DEFAULT_TYPE),  # the extension of the last segment only
        ("/srv/www.html/file", DEFAULT_TYPE),
    ],
)
def test_case_and_path(name: str, expected: bytes) -> None:
    assert content_type(name) == expected


@pytest.mark.parametrize(
    "name",
    [
        "README",
        ".htaccess",  # a dotfile has no extension
        ".html",
        "file.",
        "file.unknown-extension",
        "file.php",  # served as bytes, never as a page nor executed
        "file.cgi",
        "x.html.bak",
        "",
    ],
)
def test_unknown_is_octet_stream(name: str) -> None:
    assert content_type(name) == b"application/octet-stream"


def test_fallback_to_builtin_table() -> None:
    # Not in the fixed table; Python's built-in defaults know it.
    assert "latex" not in mime.TYPES
    assert content_type("paper.latex") == b"application/x-latex"
    assert content_type("notes.py") == b"text/x-python" + UTF8


def test_independent_of_system_mime_types(monkeypatch: pytest.MonkeyPatch) -> None:
    # A machine whose /etc/mime.types says otherwise changes nothing: the fixed table wins and the
    # fallback holds only Python's built-in defaults.
    monkeypatch.setattr(mime, "_fallback", None)
    mime._for_extension.cache_clear()
    mimetypes.add_type("text/html", ".weird")
    mimetypes.add_type("text/html", ".js")
    try:
        assert content_type("x.weird") == DEFAULT_TYPE
        assert content_type("x.js") == b"text/javascript" + UTF8
    finally:
        mimetypes.init()
        mime._for_extension.cache_clear()


def test_fallback_never_gives_html_for_unknown() -> None:
    for ext in ("shtml", "phtml", "asp", "jsp", "xht", "hta"):
        assert not content_type("x." + ext).startswith(b"text/html")


def test_table_is_lower_case_and_well_formed() -> None:
    for ext, media_type in mime.TYPES.items():
        assert ext == ext.lower() and "." not in ext
        top, _, sub = media_type.partition("/")
        assert top in {"text", "application", "image", "audio", "video", "font"} and sub
