"""The one gateway core shared by CGI, FastCGI, SCGI and uwsgi, and their transports."""
