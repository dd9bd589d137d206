"""Slow uploads (slowhttptest -B) against a FastCGI route to php-fpm with two children (issue 13 §1).

Streamed, each slow upload held a php-fpm child while its body trickled in, and other visitors
waited in php-fpm's queue for as long as the attack lasted. With request buffering (the default)
php-fpm is asked only once a body is complete.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Frontd
from tests.integration.test_slow_clients import SLOW_CONNECTIONS, normal_client_during_slow_body
from tests.interop.conftest import Peer, start_php_fpm

pytestmark = pytest.mark.skipif(shutil.which("slowhttptest") is None, reason="slowhttptest not installed")


def test_slow_uploads_hold_no_php_fpm_child(peers: Callable[..., Peer], workdir: Path,
                                           frontd_module: Callable[..., Frontd]) -> None:
    root = workdir / "slow-php"
    root.mkdir()
    (root / "read.php").write_text("<?php file_get_contents('php://input'); echo \"read\\n\";\n")
    (root / "hello.php").write_text("<?php echo \"hello\\n\";\n")
    fpm = start_php_fpm(peers, workdir, {"s": f"unix:{workdir}/php-s.sock"}, {"s": "pm.max_children = 2"})
    server = frontd_module(
        f'workers = 1\n[[vhost]]\nnames = ["localhost"]\ndefault = true\n'
        f'  [[vhost.route]]\n  prefix = "/php/"\n  fastcgi = "{fpm.addresses[0]}"\n  root = "{root}"\n'
        f'  timeout = "5s"\n')
    ok, total, held = normal_client_during_slow_body(server, workdir, "/php/read.php", "/php/hello.php")
    assert ok == total, f"{ok}/{total} normal PHP requests succeeded during the slow-body attack"
    assert held >= SLOW_CONNECTIONS // 2, held
