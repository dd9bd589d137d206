"""The status page: counters shared by master and workers (metrics.py) and their views (render.py)."""
