"""Flood accounting of one HTTP/2 connection: the frames that cost a server more than a client.

A client that resets streams as soon as it opens them (Rapid Reset, CVE-2023-44487) or sends
floods of SETTINGS, PING, PRIORITY or empty DATA frames is told GOAWAY ENHANCE_YOUR_CALM by
H2Protocol when `FloodGuard` says so; this module only counts.
"""

from __future__ import annotations

import time

# Rapid Reset: once the client has reset this many streams, and more than it let finish, the
# connection gets GOAWAY ENHANCE_YOUR_CALM (a browser cancels a few streams, not hundreds).
MAX_RESETS = 100
# SETTINGS, PING, PRIORITY and empty DATA frames cost a reply or a wake-up and carry nothing:
# a bucket of this many, refilled at CONTROL_RATE per second; past it, GOAWAY ENHANCE_YOUR_CALM.
CONTROL_BURST = 1000
CONTROL_RATE = 100.0


class FloodGuard:
    """Counts streams reset by the client against those completed, and control frames in a bucket."""

    __slots__ = ("resets", "completed", "_control", "_control_at")

    def __init__(self) -> None:
        self.resets = 0
        self.completed = 0  # streams whose handler finished and answered
        self._control = 0.0
        self._control_at = time.monotonic()

    def stream_reset(self) -> bool:
        """Count a stream the client reset; True when that makes it a Rapid Reset."""
        self.resets += 1
        return self.resets > MAX_RESETS and self.resets > self.completed

    def control_frame(self) -> bool:
        """Count a frame that carries nothing (or a refused stream); True past the bucket."""
        now = time.monotonic()
        self._control = max(0.0, self._control - (now - self._control_at) * CONTROL_RATE) + 1
        self._control_at = now
        return self._control > CONTROL_BURST
