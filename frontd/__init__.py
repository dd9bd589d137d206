"""frontd: an HTTP front-end server for static files, CGI, FastCGI, SCGI, uwsgi and HTTP backends."""

__version__ = "0.1.0"
SERVER_SOFTWARE = f"frontd/{__version__}"
