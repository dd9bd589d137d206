"""frontd/protocol/tls.py without sockets: the context's settings, and SNI selection by handshakes
between memory BIOs."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import trustme

from frontd.config.load import load_config
from frontd.config.model import TLSSettings
from frontd.protocol.tls import Certificates, server_context
from frontd.request import TLSInfo


def test_intermediate_profile() -> None:
    context = server_context(TLSSettings())
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.options & ssl.OP_NO_COMPRESSION and context.options & ssl.OP_NO_RENEGOTIATION
    tls12 = [c for c in context.get_ciphers() if c["protocol"] == "TLSv1.2"]
    assert tls12 and all(c["kea"] == "kx-ecdhe" and c["aead"] for c in tls12), tls12
    assert all(c["aead"] for c in context.get_ciphers())
    assert server_context(TLSSettings(min_version="TLSv1.3")).minimum_version == ssl.TLSVersion.TLSv1_3
    assert server_context(TLSSettings(session_tickets=False)).num_tickets == 0


@pytest.fixture
def certificates(tmp_path: Path) -> tuple[Certificates, ssl.SSLContext]:
    ca = trustme.CA()
    (tmp_path / "www").mkdir()
    vhosts = ""
    for name, names in (("a", ["a.test"]), ("w", ["*.w.test"])):
        leaf = ca.issue_cert(*names)
        leaf.cert_chain_pems[0].write_to_path(str(tmp_path / f"{name}.pem"))
        leaf.private_key_pem.write_to_path(str(tmp_path / f"{name}.key"))
        listed = ", ".join(f'"{n}"' for n in names)
        vhosts += (f'[[vhost]]\nnames = [{listed}]\nroot = "www"\n'
                   f'tls_certificate = "{name}.pem"\ntls_key = "{name}.key"\n')
    vhosts += '[[vhost]]\nnames = ["plain.test"]\nroot = "www"\n'  # no certificate
    conf = tmp_path / "frontd.conf"
    conf.write_text('listen = [{ address = "127.0.0.1:0", tls = true }]\n' + vhosts)
    found = Certificates(load_config(str(conf)))
    assert found.load() == []
    client = ssl.create_default_context()
    ca.configure_trust(client)
    client.check_hostname = False
    return found, client


def handshake(certificates: Certificates, client: ssl.SSLContext, sni: str | None) -> tuple[TLSInfo, list[str]]:
    """A whole handshake through memory BIOs: what the server recorded, and the names the client got."""
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    c = client.wrap_bio(c_in, c_out, server_hostname=sni)
    s = certificates.context.wrap_bio(s_in, s_out, server_side=True)
    for _ in range(10):
        for side in (c, s):
            try:
                side.do_handshake()
            except ssl.SSLWantReadError:
                pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if c.version() and s.version():
            break
    cert = c.getpeercert()
    return Certificates.info(s), [v for _, v in cert.get("subjectAltName", ())]


def test_sni_selects_as_vhosts(certificates: tuple[Certificates, ssl.SSLContext]) -> None:
    found, client = certificates
    info, names = handshake(found, client, "a.test")
    assert names == ["a.test"] and info.server_name == "a.test" and info.vhost is not None
    assert info.vhost.names == ("a.test",) and info.protocol == "TLSv1.3" and info.cipher.startswith("TLS_")
    info, names = handshake(found, client, "X.W.Test.")
    assert names == ["*.w.test"] and info.server_name == "x.w.test"  # case and trailing dot ignored
    # A vhost without a certificate, an unknown name and no SNI: the default (first) vhost's.
    for sni in ("plain.test", "unknown.test", None):
        info, names = handshake(found, client, sni)
        assert names == ["a.test"] and info.vhost is not None and info.vhost.names == ("a.test",), sni
