"""The CGI transport: a script fork-exec'd in a session of its own, talked to through pipes.

RFC 3875 §7 (UNIX): the meta-variables are the environment, the body is stdin, the response
is stdout, the current directory is the script's. Everything else here is about keeping the
process bounded and accounted for:

- spawned by `os.posix_spawn` (glibc's clone(CLONE_VM | CLONE_VFORK) + exec: the worker's
  memory is not copied, and the parent's side costs about half of `subprocess.Popen`'s), in a
  session of its own (setsid), so the script and whatever it starts form one process group that
  can be signalled as a whole; its stdin, stdout and stderr are the pipes, and every other fd of
  the worker is close-on-exec (Python opens them so); SIGPIPE and SIGXFSZ are back to their
  defaults; argv is the script alone (never words of the query string, CVE-2012-1823); only our
  environment reaches it, never frontd's;
- stdout is read, stdin written, as the core asks (backpressure both ways); stderr is drained
  as it comes, whatever the core is doing, into the error log, line by line and tagged with the
  script and the client (a script that fills its stderr pipe first must not deadlock);
- output ends at the end of stdout, unless a signal killed the script (SIGKILL, a crash): its
  output was cut, and the client's response must look cut too (issue 13 §3);
- the script is reaped as soon as the exchange is done with it and it has exited; one still
  running then is watched through a pidfd in the event loop (no thread, no SIGCHLD) and reaped
  when it exits: no zombies;
- the group dies with the script: once the exchange is done with a script that has exited,
  whatever it left running gets SIGKILL. When the exchange is aborted (timeout, client gone,
  error) while the script runs, the group gets SIGTERM, then SIGKILL after `KILL_GRACE`
  seconds if the script is still there; a script that keeps running after its output ended
  is given `timeout` seconds, then the same. The leader is reaped only after the group was
  signalled: until then its pid, which is the group id, cannot be reused, so the signal
  cannot reach a stranger;
- `ProcessSlots` counts the processes of a route in this worker until they are reaped
  (`max_processes`: beyond it, 503).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
from collections.abc import Mapping, Sequence
from typing import Final

from frontd.errors import BadGateway, Forbidden, ServiceUnavailable
from frontd.gateway.exchange import Transport

log = logging.getLogger("frontd")

KILL_GRACE: Final = 1.0  # seconds between SIGTERM and SIGKILL for the script's group
READ_SIZE: Final = 65536
MAX_STDERR_LINE: Final = 4096  # longer stderr lines are logged in pieces of this size
# After the script is reaped, its stderr is read this long more, then closed: a job it left
# in a session of its own (setsid) may hold the pipe for hours (issue 13 §4).
STDERR_DRAIN: Final = 1.0
# At the end of the output, how long a script still running is waited for, to learn whether a
# signal killed it (the exit status follows the pipe's end at once).
EXIT_WAIT: Final = 0.5
_CONTROL: Final = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")

# Signals a script gets with their default action, whatever the worker did with them (Python
# ignores SIGPIPE and SIGXFSZ; an ignored signal stays ignored across exec).
_DEFAULT_SIGNALS: Final = tuple(getattr(signal, name) for name in ("SIGPIPE", "SIGXFSZ") if hasattr(signal, name))

_dev_null = -1
_home = -1


def _stdin_for_no_body() -> int:
    """/dev/null, opened once per worker: the input of a request without a body."""
    global _dev_null
    if _dev_null < 0:
        _dev_null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    return _dev_null


def spawn(argv: Sequence[str], cwd: str, env: Mapping[bytes, bytes], stdin: int, stdout: int, stderr: int) -> int:
    """Start `argv` in `cwd` with exactly `env` and these three fds, in a new session; its pid.

    os.posix_spawn offers no working-directory action, so the worker changes its own directory
    around the call and returns to it at once. Nothing else
    runs on the event loop meanwhile, and the worker's other threads (password hashing, name
    lookups) use no relative path. Raises OSError (the exec's errno, as `cannot execute`)."""
    global _home
    if _home < 0:
        _home = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    os.chdir(cwd)
    try:
        return os.posix_spawn(
            argv[0], argv, env,
            file_actions=[(os.POSIX_SPAWN_DUP2, stdin, 0), (os.POSIX_SPAWN_DUP2, stdout, 1),
                          (os.POSIX_SPAWN_DUP2, stderr, 2)],
            setsid=True, setsigdef=_DEFAULT_SIGNALS,
        )
    finally:
        os.fchdir(_home)


def _printable(line: bytes) -> str:
    """A stderr line as one log line: undecodable bytes and controls escaped, never raw."""
    text = line.decode("utf-8", "backslashreplace")
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _signal_name(signum: int) -> str:
    try:
        return f"{signum} ({signal.Signals(signum).name})"
    except ValueError:
        return str(signum)


class ProcessSlots:
    """How many CGI processes of one route live in this worker, against `max_processes`."""

    __slots__ = ("limit", "used")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    @property
    def full(self) -> bool:
        return self.used >= self.limit

    def acquire(self) -> bool:
        if self.used >= self.limit:
            return False
        self.used += 1
        return True

    def release(self) -> None:
        self.used -= 1


class _Readiness:
    """Waits until a non-blocking pipe end is readable (or writable).

    The loop registration is kept between waits and dropped lazily, when the pipe turns ready
    with nobody waiting: a stream of reads costs no epoll_ctl per chunk.
    """

    __slots__ = ("loop", "fd", "writable", "registered", "waiter")

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int, writable: bool) -> None:
        self.loop = loop
        self.fd = fd
        self.writable = writable
        self.registered = False
        self.waiter: asyncio.Future[None] | None = None

    async def wait(self) -> None:
        waiter = self.loop.create_future()
        self.waiter = waiter
        if not self.registered:
            if self.writable:
                self.loop.add_writer(self.fd, self._ready)
            else:
                self.loop.add_reader(self.fd, self._ready)
            self.registered = True
        try:
            await waiter
        finally:
            self.waiter = None

    def _ready(self) -> None:
        waiter = self.waiter
        if waiter is None:
            self._unregister()
        elif not waiter.done():
            waiter.set_result(None)

    def _unregister(self) -> None:
        if self.registered:
            self.registered = False
            if self.writable:
                self.loop.remove_writer(self.fd)
            else:
                self.loop.remove_reader(self.fd)

    def close(self) -> None:
        """Before the fd is closed: unregister, and wake a waiter (it finds the fd gone)."""
        self._unregister()
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class CGITransport(Transport):
    """One run of one CGI script (RFC 3875 §7.2)."""

    def __init__(self, argv: list[str], cwd: str, *, script: str, slots: ProcessSlots,
                 log_context: str, timeout: float, grace: float = KILL_GRACE) -> None:
        self.name = f"cgi {script}"
        self.argv = argv
        self.cwd = cwd
        self.script = script
        self.slots = slots
        self.log_context = log_context  # ", client: ..., request: ..." for stderr lines
        self.timeout = timeout
        self.grace = grace
        self.pid = 0  # the script's, once spawned; its process group's id too
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stdin = -1
        self._stdout = -1
        self._stderr = -1
        self._pidfd = -1
        self._stdin_ready: _Readiness | None = None
        self._stdout_ready: _Readiness | None = None
        self._stderr_partial = b""
        self._unread = b""  # output that `output_ended` found and `read` has not returned yet
        self._stdout_eof = False  # `output_ended` saw the end of the output; `read` reports it
        self._stderr_timer: asyncio.TimerHandle | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._exited = False  # the leader has exited (not reaped yet)
        self._released = False  # close() or abort(): the exchange is done with the process
        self._terminating = False  # SIGTERM sent to the group, SIGKILL on its way
        self._reaped = False
        self._watching = False  # `_on_exit` will be called when the leader exits
        self._exit_waiter: asyncio.Future[None] | None = None  # set by `_on_exit`

    # -- spawning ---------------------------------------------------------------------------

    async def open(self, environ: Mapping[bytes, bytes], content_length: int | None) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        if not self.slots.acquire():
            raise ServiceUnavailable(f"{self.name}: max_processes ({self.slots.limit}) reached")
        child_fds: list[int] = []
        parent_fds: list[int] = []
        try:
            if content_length:
                stdin_r, stdin_w = os.pipe2(os.O_CLOEXEC)
                child_fds.append(stdin_r)
                parent_fds.append(stdin_w)
            else:
                stdin_r, stdin_w = _stdin_for_no_body(), -1
            stdout_r, stdout_w = os.pipe2(os.O_CLOEXEC)
            child_fds.append(stdout_w)
            parent_fds.append(stdout_r)
            stderr_r, stderr_w = os.pipe2(os.O_CLOEXEC)
            child_fds.append(stderr_w)
            parent_fds.append(stderr_r)
            self.pid = spawn(self.argv, self.cwd, environ, stdin_r, stdout_w, stderr_w)
        except (OSError, ValueError) as exc:
            for fd in parent_fds:
                os.close(fd)
            self.slots.release()
            if isinstance(exc, PermissionError):
                raise Forbidden(f"{self.name}: cannot execute: {exc.strerror}") from None
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise BadGateway(f"{self.name}: cannot execute: {reason}") from None
        finally:
            for fd in child_fds:
                os.close(fd)
        self._stdin = stdin_w
        self._stdout = stdout_r
        self._stderr = stderr_r
        if stdin_w >= 0:
            os.set_blocking(stdin_w, False)  # our end only: the script's end stays blocking
            self._stdin_ready = _Readiness(loop, stdin_w, writable=True)
        os.set_blocking(stdout_r, False)
        self._stdout_ready = _Readiness(loop, stdout_r, writable=False)
        os.set_blocking(stderr_r, False)
        loop.add_reader(stderr_r, self._on_stderr)

    def _watch_exit(self) -> None:
        """Call `_on_exit` when the leader exits, without reaping it.

        Only needed once the exchange is done with a script that is still running: most have
        exited by the time their output ends, and are reaped without a watch.
        """
        loop = self._loop
        assert loop is not None
        if self._watching:
            return
        self._watching = True
        try:
            self._pidfd = os.pidfd_open(self.pid)
        except (AttributeError, OSError):
            # No pidfd (not Linux, or before 5.3): a thread waits, leaving the zombie to us.
            future = loop.run_in_executor(None, os.waitid, os.P_PID, self.pid, os.WEXITED | os.WNOWAIT)
            future.add_done_callback(lambda _: None if self._reaped else self._on_exit())
            return
        loop.add_reader(self._pidfd, self._on_exit)

    # -- Transport ---------------------------------------------------------------------------

    async def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            fd = self._stdin
            if fd < 0:
                raise BrokenPipeError(f"{self.name}: input closed")
            try:
                written = os.write(fd, view)
            except BlockingIOError:
                assert self._stdin_ready is not None
                await self._stdin_ready.wait()
                continue
            except BrokenPipeError:
                self._close_stdin()  # the script closed its input or exited
                raise
            view = view[written:]

    async def end_body(self) -> None:
        self._close_stdin()

    async def read(self) -> bytes:
        if self._unread:
            data, self._unread = self._unread, b""
            return data
        while True:
            fd = self._stdout
            if fd < 0:
                return b""
            if self._stdout_eof:
                self._close_stdout()
                await self._check_not_killed()
                return b""
            try:
                data = os.read(fd, READ_SIZE)
            except BlockingIOError:
                assert self._stdout_ready is not None
                await self._stdout_ready.wait()
                continue
            except OSError:
                data = b""
            if not data:
                self._close_stdout()
                await self._check_not_killed()
            return data

    def output_ended(self) -> bool:
        """A small script has often written everything and exited by the time its first output
        is read: one more read that finds the end of the pipe, and an exit status that says the
        script exited of its own accord (not killed, issue 13 §3), tell so without waiting."""
        fd = self._stdout
        if fd < 0 or self._unread or not self.pid:
            return False
        if not self._stdout_eof:
            try:
                data = os.read(fd, READ_SIZE)
            except OSError:  # BlockingIOError: more may come; anything else: `read` reports it
                return False
            if data:
                self._unread = data
                return False
            self._stdout_eof = True
        try:
            info = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return False
        if info is None or info.si_code != os.CLD_EXITED:
            return False  # still running, or killed: `read` finds out as it always did
        self._exited = True  # `close` reaps it without asking again
        self._stdout_eof = False
        self._close_stdout()
        return True

    async def close(self) -> None:
        """The output ended: reap the script once it exits, allowing it `timeout` to do so."""
        if self._released:
            return
        self._released = True
        self._close_stdin()
        self._close_stdout()
        if not self.pid:
            return
        if self._exited or self._has_exited():
            self._reap()
        else:
            assert self._loop is not None
            self._watch_exit()
            self._timer = self._loop.call_later(self.timeout, self._overstayed)

    def abort(self) -> None:
        """Kill the group: SIGTERM now, SIGKILL after the grace; reap when the leader exits.

        A script that has already exited is reaped at once (what it left running is killed
        with it, as after a complete response). When the request's task is being cancelled
        (the worker is stopping), the event loop may not live through a grace period: the
        group gets SIGKILL at once.
        """
        self._close_stdin()
        self._close_stdout()
        self._released = True
        if not self.pid or self._reaped:
            return
        if self._exited or self._has_exited():
            self._reap()
            return
        self._watch_exit()
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            self._kill()
        elif not self._terminating:
            self._terminate()

    # -- the process's end -------------------------------------------------------------------

    async def _check_not_killed(self) -> None:
        """At the end of the output: raise BadGateway if a signal killed the script.

        A script killed mid-output (SIGKILL, the OOM killer, a crash) closes its stdout just as
        one that finished does; a body without a Content-Length would end as complete (issue 13
        §3). Its exit status tells: the output is taken as whole only from a script that is
        still running (it closed its stdout and goes on) or exited of its own accord. Once the
        pipe's end is seen, the exit status follows within microseconds; a script still running
        is given `EXIT_WAIT` seconds to report it.
        """
        if not self.pid or self._reaped:
            return
        try:
            info = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            if info is None:
                assert self._loop is not None
                exited = self._loop.create_future()
                self._exit_waiter = exited
                self._watch_exit()
                try:
                    await asyncio.wait_for(exited, EXIT_WAIT)
                except TimeoutError:
                    return  # still running: it closed its stdout, its output is whole
                finally:
                    self._exit_waiter = None
                info = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return
        if info is not None and info.si_code in (os.CLD_KILLED, os.CLD_DUMPED):
            raise BadGateway(f"{self.name}: killed by signal {_signal_name(info.si_status)} "
                             "before its output ended")

    def _has_exited(self) -> bool:
        try:
            return os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
        except ChildProcessError:
            return True

    def _overstayed(self) -> None:
        self._timer = None
        log.warning("%s still running %gs after its output ended; terminating its process group%s",
                    self.name, self.timeout, self.log_context)
        self._terminate()

    def _terminate(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._terminating = True
        self._signal(signal.SIGTERM)
        assert self._loop is not None
        self._timer = self._loop.call_later(self.grace, self._kill)

    def _kill(self) -> None:
        # The leader dies of it too, and `_on_exit` reaps it.
        self._timer = None
        self._signal(signal.SIGKILL)

    def _signal(self, signum: int) -> None:
        # Safe while the leader is unreaped: its pid is the group id and is not reused.
        try:
            os.killpg(self.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass

    def _on_exit(self) -> None:
        if self._pidfd >= 0:
            assert self._loop is not None
            self._loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = -1
        self._exited = True
        waiter = self._exit_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if self._released:
            self._reap()
        # else: the exchange still reads the output (a background child may hold stdout open);
        # `close` or `abort` reaps.

    def _reap(self) -> None:
        if self._reaped:
            return
        self._reaped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._pidfd >= 0:
            assert self._loop is not None
            self._loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = -1
        # What the script left running dies with it: no orphans outlive a request. The leader
        # is a zombie until `poll` below, so the group id still names this group alone.
        self._signal(signal.SIGKILL)
        try:
            _, wait_status = os.waitpid(self.pid, os.WNOHANG)  # it has exited: no wait
            status = os.waitstatus_to_exitcode(wait_status) if wait_status else 0
        except ChildProcessError:
            status = 0
        self.slots.release()
        if status:
            how = f"signal {-status}" if status < 0 else f"status {status}"
            log.info("%s exited with %s%s", self.name, how, self.log_context)
        if self._stderr >= 0 and self._stderr_timer is None:
            # Whatever still holds the pipe is outside the group just killed (setsid): what it
            # writes soon is logged, then the pipe and its loop reader go.
            assert self._loop is not None
            self._stderr_timer = self._loop.call_later(STDERR_DRAIN, self._close_stderr)

    # -- pipes ----------------------------------------------------------------------------------

    def _close_stdin(self) -> None:
        if self._stdin >= 0:
            if self._stdin_ready is not None:
                self._stdin_ready.close()
            os.close(self._stdin)
            self._stdin = -1

    def _close_stdout(self) -> None:
        if self._stdout >= 0:
            if self._stdout_ready is not None:
                self._stdout_ready.close()
            os.close(self._stdout)
            self._stdout = -1

    def _on_stderr(self) -> None:
        fd = self._stderr
        try:
            data = os.read(fd, READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._close_stderr()
            return
        lines = (self._stderr_partial + data).split(b"\n")
        partial = lines.pop()
        for line in lines:
            self._log_stderr(line)
        while len(partial) >= MAX_STDERR_LINE:
            self._log_stderr(partial[:MAX_STDERR_LINE])
            partial = partial[MAX_STDERR_LINE:]
        self._stderr_partial = partial

    def _close_stderr(self) -> None:
        """At EOF on stderr, or when the drain after the reap is over: close and log the rest."""
        if self._stderr_timer is not None:
            self._stderr_timer.cancel()
            self._stderr_timer = None
        fd = self._stderr
        if fd < 0:
            return
        assert self._loop is not None
        self._loop.remove_reader(fd)
        os.close(fd)
        self._stderr = -1
        if self._stderr_partial:
            self._log_stderr(self._stderr_partial)
            self._stderr_partial = b""

    def _log_stderr(self, line: bytes) -> None:
        if line.endswith(b"\r"):
            line = line[:-1]
        for start in range(0, max(len(line), 1), MAX_STDERR_LINE):
            piece = _printable(line[start:start + MAX_STDERR_LINE])
            log.error("%s stderr: %s%s", self.name, piece, self.log_context)
