"""`try_files`: existing files first, else an internal redirect (a front controller) or an error.

Every entry but the last is a path (`$uri` is the request's decoded path) tried under the
directory of the route (a static route's directory, a script-mode route's `root`, the vhost's
`root`): an entry ending in "/" must be a directory holding one of the index files, any other
must be a regular file. The first that exists is served as that path would be, by the same route
and with all of its checks (a script is run by a script-mode route and never sent as a file: the
static handler refuses script sources from any root). When none exists, the last entry is an
internal redirect to a URI (`$uri` percent-encoded, `$query` the client's query), or `=404`
(any `=4xx`/`=5xx`) an error with that status.

The existence check only looks: whatever it finds still goes through the handler's walk, which
keeps every request inside its directory; hidden names (dot files) never count as found.
"""

from __future__ import annotations

import os
import stat
import urllib.parse
from dataclasses import dataclass

from frontd.errors import error_for_status
from frontd.request import Request

URI = "$uri"
QUERY = "$query"
_URL_SAFE = "/!$&'()*+,;=:@-._~"


@dataclass(frozen=True, slots=True)
class TryFiles:
    """The `try_files` of one route (or of a vhost's root), with where its files are."""

    entries: tuple[str, ...]  # all but the last: file paths; the last: a URI or "=CODE"
    directory: str
    prefix: str  # "/" for the vhost root
    index: tuple[str, ...]

    def resolve(self, request: Request) -> str | None:
        """None when an entry exists (the request's path now names it); else the URI of the
        internal redirect. Raises the HTTPError of a last entry "=CODE"."""
        if not request.path.startswith("/"):
            return None  # "OPTIONS *" names no file
        for entry in self.entries[:-1]:
            found = self._existing(entry.replace(URI, request.path))
            if found is not None:
                if found != request.path:
                    request.path = found
                    request.raw_path = urllib.parse.quote(found, safe=_URL_SAFE)
                return None
        last = self.entries[-1]
        if last.startswith("="):
            raise error_for_status(int(last[1:]), f"try_files: none of {' '.join(self.entries[:-1])} "
                                   f"exists for {request.path!r}")
        target = last.replace(URI, urllib.parse.quote(request.path, safe=_URL_SAFE))
        if QUERY in target:
            target = target.replace(QUERY, request.query)
        elif request.query:
            target += ("&" if "?" in target else "?") + request.query
        return target

    def _existing(self, candidate: str) -> str | None:
        """The normalised path of `candidate` when it exists under the directory, else None."""
        segments = [segment for segment in candidate.split("/") if segment]
        is_dir = candidate.endswith("/")
        path = "/" + "/".join(segments) + ("/" if is_dir and segments else "")
        if not path.startswith(self.prefix) and path != self.prefix[:-1]:
            return None  # another route's path: that route's files are not ours to look at
        if any(segment.startswith(".") for segment in segments):
            return None
        rel = path[len(self.prefix):].strip("/")
        fs_path = os.path.join(self.directory, rel) if rel else self.directory
        try:
            st = os.stat(fs_path)
        except (OSError, ValueError):
            return None
        if not is_dir:
            return path if stat.S_ISREG(st.st_mode) else None
        if not stat.S_ISDIR(st.st_mode):
            return None
        for name in self.index:
            try:
                if stat.S_ISREG(os.stat(os.path.join(fs_path, name)).st_mode):
                    return path if path.endswith("/") else path + "/"
            except (OSError, ValueError):
                continue
        return None
