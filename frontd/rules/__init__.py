"""What runs before a handler (access, rewrites, limits) and after it (headers, compression)."""
