"""HTTP semantics as pure functions: targets, ranges, conditionals, dates, headers."""
