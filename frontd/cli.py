"""The `frontd` command: -c FILE, -t, -s reload|stop|quit|reopen, --version."""

from __future__ import annotations

import argparse
import os
import sys

from frontd import __version__


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="frontd", description="HTTP front-end server: static files, CGI, "
                                     "FastCGI, SCGI, uwsgi and HTTP backends, routed by host and prefix.")
    parser.add_argument("-c", "--config", default="frontd.conf", metavar="FILE",
                        help="configuration file (default: ./frontd.conf)")
    parser.add_argument("-t", "--test", action="store_true",
                        help="check the configuration, print a summary and exit (0 ok, 1 error)")
    parser.add_argument("-s", "--signal", choices=["reload", "stop", "quit", "reopen"],
                        help="send a signal to the running master (pid from the config's pid_file)")
    parser.add_argument("-v", "--version", action="version", version=f"frontd {__version__}")
    return parser


def _write_out(text: str) -> None:
    """Write to stdout. A reader that stops early (`frontd -t | head -1`) is not an error: the
    exit status still tells the result of the check."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        # Python flushes stdout again at exit and would report the same error there.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from frontd.config.load import ConfigError, load_config, summary

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"frontd: {exc}", file=sys.stderr)
        return 1
    if args.test:
        from frontd.certs.files import check_certificates

        problems = check_certificates(config)
        for level, message in problems:
            print(f"frontd: {level}: {message}", file=sys.stderr)
        if any(level == "error" for level, _ in problems):
            print(f"frontd: configuration file {config.path}: test failed", file=sys.stderr)
            return 1
        _write_out(f"frontd: configuration file {config.path}: configuration ok\n{summary(config)}\n")
        return 0
    if args.signal:
        from frontd.server.pidfile import send_signal

        return send_signal(config, args.signal)
    from frontd.server.listeners import ListenError
    from frontd.server.master import run

    try:
        return run(config)
    except ListenError as exc:
        print(f"frontd: cannot listen on {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
