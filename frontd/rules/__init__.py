"""Site rules: what runs before a handler (rewrites, redirects, try_files) and around it (error pages)."""
