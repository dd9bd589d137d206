"""Slow readers (slowhttptest -X) against a FastCGI route to php-fpm with two children (issue 13 §1).

Streamed, php-fpm's output was read only as fast as each slow reader took it, so two slow
readers of a 4 MiB page held both php-fpm children and every other visitor waited in php-fpm's
queue for as long as the attack lasted. With response buffering (the default) the output is
read as fast as PHP writes it, the child is free at once, and the page waits in frontd's
buffer (memory, then a temporary file) for its reader.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Frontd
from tests.integration.test_slow_clients import SLOW_CONNECTIONS, normal_client_during_attack, open_sockets
from tests.interop.conftest import Peer, start_php_fpm

pytestmark = pytest.mark.skipif(shutil.which("slowhttptest") is None, reason="slowhttptest not installed")

CHILDREN = 2


def test_slow_readers_hold_no_php_fpm_child(peers: Callable[..., Peer], workdir: Path,
                                            frontd_module: Callable[..., Frontd]) -> None:
    root = workdir / "slow-read-php"
    root.mkdir()
    (root / "read.php").write_text("<?php file_get_contents('php://input'); echo \"read\\n\";\n")
    (root / "hello.php").write_text("<?php echo \"hello\\n\";\n")
    # 4 MiB: more than the socket between php-fpm and frontd holds.
    (root / "large.php").write_text("<?php header('Content-Type: application/octet-stream');\n"
                                    "$s = str_repeat('a', 65536); for ($i = 0; $i < 64; $i++) echo $s;\n")
    fpm = start_php_fpm(peers, workdir, {"r": f"unix:{workdir}/php-r.sock"},
                        {"r": f"pm.max_children = {CHILDREN}"})
    server = frontd_module(
        f'workers = 1\n[[vhost]]\nnames = ["localhost"]\ndefault = true\n'
        f'  [[vhost.route]]\n  prefix = "/php/"\n  fastcgi = "{fpm.addresses[0]}"\n  root = "{root}"\n'
        f'  timeout = "5s"\n')

    def on(attacker: int) -> bool:
        # The slow readers are connected: their requests are in php-fpm's hands.
        return open_sockets(attacker) >= SLOW_CONNECTIONS * 3 // 4

    ok, total, held = normal_client_during_attack(
        server, workdir, ["-X", "-k", "1", "-w", "1", "-y", "512", "-n", "1", "-z", "32",
                          "-u", server.url("/php/large.php")], on, "/php/read.php", "/php/hello.php")
    assert ok == total, f"{ok}/{total} normal PHP requests succeeded during the slow-read attack"
    assert held >= SLOW_CONNECTIONS // 2, held
