"""Site rules: what runs before a handler (rewrites, access, redirects, try_files) and around it
(error pages)."""
