"""`[limits]`: sizes, timeouts, connections and the per-client limits."""

from __future__ import annotations

import math
from dataclasses import fields
from typing import Any

from frontd.config.model import Limits
from frontd.config.units import parse_rate
from frontd.config.values import ValueReader

LIMIT_KEYS: tuple[str, ...] = tuple(f.name for f in fields(Limits))


class LimitsSection(ValueReader):
    """`[limits]`."""

    def limits(self, value: object) -> Limits:
        table = self.table(value, "limits")
        self.check_keys(table, LIMIT_KEYS, "limits")
        values: dict[str, Any] = {}
        for name, item in table.items():
            key = f"limits.{name}"
            if name in ("client_connections", "client_rate", "client_burst"):
                continue  # client_limits() below
            if name in ("max_connections", "http2_max_streams"):
                values[name] = self.integer(item, key, 1)
            elif name in ("max_body_size", "file_cache_size"):
                values[name] = self.size(item, key, positive=False)
            elif name.startswith("max_"):
                values[name] = self.size(item, key, positive=True)
            else:  # keepalive_timeout = 0 turns keep-alive off, as in nginx
                values[name] = self.duration(item, key, positive=name != "keepalive_timeout")
        values.update(self.client_limits(table))
        return Limits(**values)

    def client_limits(self, table: dict[str, object]) -> dict[str, Any]:
        """`client_connections`, `client_rate` and `client_burst` of `[limits]`."""
        values: dict[str, Any] = {}
        if "client_connections" in table:
            values["client_connections"] = self.integer(table["client_connections"], "limits.client_connections", 1)
        if "client_rate" in table:
            rate = parse_rate(table["client_rate"], self.where("limits.client_rate"))
            values["client_rate"] = rate
            values["client_burst"] = max(1, math.ceil(rate))  # one second's worth
        if "client_burst" in table:
            if "client_rate" not in table:
                self.fail("limits.client_burst", 'only with "client_rate" (the bucket refills at that rate)')
            values["client_burst"] = self.integer(table["client_burst"], "limits.client_burst", 1)
        return values
