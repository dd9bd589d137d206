# The module uWSGI loads (--wsgi-file): the interop app, found beside this file.
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from wsgi_app import application  # noqa: E402,F401
