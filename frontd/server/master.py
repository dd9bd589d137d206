"""The master process: binds the listeners, then serves (workers and signals: see issue on operations)."""

from __future__ import annotations

import logging

from frontd.config.model import Config
from frontd.server.listeners import bind, describe
from frontd.server.logs import setup_error_log
from frontd.server.worker import run_worker

log = logging.getLogger("frontd")


def run(config: Config) -> int:
    setup_error_log(config.error_log, config.log_level)
    sockets = [bind(address) for address in config.listen]
    for sock in sockets:
        log.info("listening on %s", describe(sock))
    run_worker(config, sockets)
    log.info("exiting")
    return 0
