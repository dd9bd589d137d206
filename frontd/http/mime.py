"""Content-Type of a static file from its name: a fixed table of the web's types first.

The fixed table decides every common extension, so a response does not depend on the host's
/etc/mime.types. Only for an extension the table lacks is Python's built-in `mimetypes` table
consulted: a `MimeTypes()` instance answers from the built-in defaults only (creating it makes
the `mimetypes` module read the system files once, but their types never reach this instance).
Anything still unknown is application/octet-stream: a browser then downloads it rather than
rendering it, never text/html.
"""

from __future__ import annotations

import mimetypes
from functools import lru_cache

DEFAULT_TYPE = b"application/octet-stream"

# Extension (lower case, no dot) -> media type, as registered with IANA where there is a
# registration; the RFC is cited where the choice is not obvious.
TYPES: dict[str, str] = {
    # Documents and code
    "html": "text/html",
    "htm": "text/html",
    "xhtml": "application/xhtml+xml",
    "css": "text/css",
    "js": "text/javascript",  # RFC 9239 §6: text/javascript, application/javascript obsolete
    "mjs": "text/javascript",
    "cjs": "text/javascript",
    "json": "application/json",  # RFC 8259 §11
    "map": "application/json",  # source maps
    "jsonld": "application/ld+json",
    "webmanifest": "application/manifest+json",
    "xml": "application/xml",  # RFC 7303 §4.1
    "xsl": "application/xml",
    "xslt": "application/xslt+xml",
    "rss": "application/rss+xml",
    "atom": "application/atom+xml",  # RFC 4287 §7
    "txt": "text/plain",
    "text": "text/plain",
    "log": "text/plain",
    "md": "text/markdown",  # RFC 7763
    "markdown": "text/markdown",
    "csv": "text/csv",  # RFC 4180
    "tsv": "text/tab-separated-values",
    "ics": "text/calendar",  # RFC 5545
    "vtt": "text/vtt",
    "yaml": "application/yaml",  # RFC 9512
    "yml": "application/yaml",
    "toml": "application/toml",
    "wasm": "application/wasm",
    "pdf": "application/pdf",
    "rtf": "application/rtf",
    "epub": "application/epub+zip",
    # Images
    "png": "image/png",
    "apng": "image/apng",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "jpe": "image/jpeg",
    "gif": "image/gif",
    "webp": "image/webp",
    "avif": "image/avif",
    "jxl": "image/jxl",
    "svg": "image/svg+xml",
    "ico": "image/vnd.microsoft.icon",
    "bmp": "image/bmp",
    "tif": "image/tiff",
    "tiff": "image/tiff",
    "heic": "image/heic",
    "heif": "image/heif",
    # Fonts (RFC 8081)
    "woff": "font/woff",
    "woff2": "font/woff2",
    "ttf": "font/ttf",
    "otf": "font/otf",
    "eot": "application/vnd.ms-fontobject",
    # Audio and video
    "mp4": "video/mp4",
    "m4v": "video/mp4",
    "webm": "video/webm",
    "ogv": "video/ogg",
    "mov": "video/quicktime",
    "mkv": "video/x-matroska",
    "ts": "video/mp2t",
    "m3u8": "application/vnd.apple.mpegurl",
    "mpd": "application/dash+xml",
    "mp3": "audio/mpeg",
    "ogg": "audio/ogg",  # RFC 5334 §10.1
    "oga": "audio/ogg",
    "opus": "audio/ogg",  # RFC 7845 §9: Ogg Opus files
    "wav": "audio/wav",
    "flac": "audio/flac",
    "m4a": "audio/mp4",
    "aac": "audio/aac",
    "weba": "audio/webm",
    # Archives
    "zip": "application/zip",
    "gz": "application/gzip",  # RFC 6713
    "tgz": "application/gzip",
    "tar": "application/x-tar",
    "bz2": "application/x-bzip2",
    "xz": "application/x-xz",
    "zst": "application/zstd",  # RFC 8878
    "7z": "application/x-7z-compressed",
    "rar": "application/vnd.rar",
    "jar": "application/java-archive",
    # Office documents
    "doc": "application/msword",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "xls": "application/vnd.ms-excel",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "ppt": "application/vnd.ms-powerpoint",
    "pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "odt": "application/vnd.oasis.opendocument.text",
    "ods": "application/vnd.oasis.opendocument.spreadsheet",
    "odp": "application/vnd.oasis.opendocument.presentation",
}

# Textual types outside text/* that get a charset too. The files are assumed UTF-8, as nearly
# all web content is; text/* without one would fall back to US-ASCII (RFC 6657 §4) or sniffing.
_CHARSET_TYPES = frozenset({
    "application/javascript", "application/json", "application/ld+json",
    "application/manifest+json", "application/xml", "application/xhtml+xml",
    "application/rss+xml", "application/atom+xml", "application/yaml", "application/toml",
    "image/svg+xml",
})

_fallback: mimetypes.MimeTypes | None = None


def content_type(path: str) -> bytes:
    """The Content-Type value for a file name or path, e.g. b"text/html; charset=utf-8".

    The extension is what follows the last "." of the last segment, case-insensitive; a name
    without one (or a dotfile such as ".htaccess") is application/octet-stream.
    """
    name = path.rpartition("/")[2]
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem:
        return DEFAULT_TYPE
    return _for_extension(ext.lower())


@lru_cache(maxsize=1024)
def _for_extension(ext: str) -> bytes:
    media_type = TYPES.get(ext) or _guess(ext)
    if media_type is None:
        return DEFAULT_TYPE
    if media_type.startswith("text/") or media_type in _CHARSET_TYPES:
        return (media_type + "; charset=utf-8").encode("ascii")
    return media_type.encode("ascii")


def _guess(ext: str) -> str | None:
    """Python's built-in table, for extensions missing from TYPES."""
    global _fallback
    if _fallback is None:
        _fallback = mimetypes.MimeTypes()
    media_type, encoding = _fallback.guess_type("x." + ext, strict=True)
    if encoding is not None:
        return None  # e.g. ".Z": a content-coding, not a type of its own
    return media_type
