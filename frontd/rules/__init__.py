"""Site rules: what runs before a handler (rewrites, access) and around its output (headers, compression)."""
