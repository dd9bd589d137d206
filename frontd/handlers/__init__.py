"""Request handlers: static files, gateways, proxy, error pages."""
