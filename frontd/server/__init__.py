"""Processes, listeners, connections and logs."""
