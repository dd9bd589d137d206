"""Sans-IO codecs: FastCGI, SCGI, uwsgi and CGI-style responses. Standard library only."""
