"""Spawned backends: the master's supervisor of the application processes that `spawn` routes run.

A fastcgi, scgi, uwsgi or proxy route with `spawn = [argv...]` has its backend started by frontd.
The master creates the route's listening socket (`route.socket`: a Unix socket in `run_dir` unless
the route names one) and keeps it open for its whole life; the route's `backends` (or `proxy`) is
that one address, so workers connect to it like to any other backend. `route.processes` copies of
the command share the socket, each getting it as an inherited descriptor:

- fastcgi and uwsgi: on fd 0. FastCGI 1.0 §2.2 (FCGI_LISTENSOCK_FILENO = STDIN_FILENO) is what
  flup's WSGIServer without bindAddress, php-cgi and libfcgi look for; uWSGI takes a socket on fd
  0 by itself ("inherited ... fd 0"), while its systemd path (LISTEN_FDS) crashes uWSGI 2.0.
- scgi and proxy: on fd 3 with LISTEN_FDS=1 and LISTEN_PID=<its pid>, systemd's socket
  activation protocol (sd_listen_fds(3): descriptors start at SD_LISTEN_FDS_START = 3).
- Always FRONTD_SOCKET_FD (0 or 3) and FRONTD_SOCKET (the address, "unix:/path" or "host:port");
  `{fd}`, `{socket}` (the path of a Unix socket, else host:port) and `{address}` in argv are
  replaced by the same values, for programs that take them as options.

Since the socket outlives the processes, a connection made while no process is accepting waits in
its backlog instead of being refused: a restarted or reloaded application loses no request.

What happens to the processes:

- They run in a session of their own (setsid), as `route.user`, else the top-level `user` (when
  frontd runs as root; the config loader refuses to run them as root unless told), in
  `route.cwd`, with frontd's environment plus `route.env`. Their stdout and stderr are pipes
  to the master, which logs each line with its source (output.py). They get SIGTERM if the master dies (PR_SET_PDEATHSIG).
- One that dies is started again at once and logged with its exit status; one that keeps dying
  within STABLE_UPTIME of its start waits 0.1s, 0.2s, 0.4s ... up to MAX_RESTART_DELAY first.
- Reload (`apply`) replaces every process. On a Unix socket, the new processes start one at a
  time on a new socket beside the old (`PATH.new`), each after the previous one stayed alive for
  READY_DELAY; then the new socket is renamed over PATH, so that new connections reach the new
  processes only, and DRAIN_DELAY later, once the old processes have accepted what was queued
  for them, those all get SIGTERM at once (SIGKILL after shutdown_timeout), and wake-up
  connections on their old socket every POKE_INTERVAL until each has exited (`_Told`). A new process that dies before
  the switch abandons the reload of that application: the old processes carry on. A TCP socket
  cannot be renamed: its processes are replaced one at a time on the same socket, each old one
  stopped when its successor stayed alive for READY_DELAY. Groups no longer in the file are
  stopped once the old workers, which may still use them, have exited. `prepare` binds the
  sockets before the new workers start; `apply` runs once they all reported ready (master.py),
  so a reload given up there leaves the processes alone.
- Stop: the master calls `stop` once its workers have exited (they may still be waiting on an
  application): SIGTERM, then SIGKILL to the process group after the grace.

The master reaps every child with waitpid(-1) and offers each pid to `reaped` before its worker
accounting: a pid this supervisor started is never mistaken for a worker, and vice versa.

The package: spec.py (what a route runs, argv placeholders), sockets.py (the sockets and
run_dir), child.py (the forked child up to exec), output.py (their lines into the error log),
supervisor.py (the processes' life).
"""

from frontd.server.spawn.spec import AppSpec, SpawnError, app_specs, substitute
from frontd.server.spawn.supervisor import Supervisor

__all__ = ["AppSpec", "SpawnError", "Supervisor", "app_specs", "substitute"]
