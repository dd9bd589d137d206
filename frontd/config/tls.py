"""`[tls]`, `[acme]` and a vhost's certificate, and what TLS keys need from each other."""

from __future__ import annotations

import os
import re
from typing import Any

from frontd.config.model import LETSENCRYPT_DIRECTORY, AcmeConfig, Listener, TLSSettings, VHost
from frontd.config.units import show
from frontd.config.values import ValueReader

TLS_KEYS: tuple[str, ...] = ("min_version", "http2", "session_tickets")
TLS_VERSIONS: tuple[str, ...] = ("TLSv1.2", "TLSv1.3")
VHOST_TLS_SOURCES: tuple[str, ...] = ("acme", "internal")
ACME_KEYS: tuple[str, ...] = ("email", "directory", "ca_bundle", "storage", "challenge")
ACME_CHALLENGES: tuple[str, ...] = ("http-01", "tls-alpn-01")
_EMAIL_RE = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


class TLSSection(ValueReader):
    """`[tls]`, `[acme]`, a vhost's tls keys, and the checks once listeners and vhosts are known."""

    def tls(self, value: object) -> TLSSettings:
        table = self.table(value, "tls")
        self.check_keys(table, TLS_KEYS, "tls")
        values: dict[str, Any] = {}
        if "min_version" in table:
            values["min_version"] = self.choice(table["min_version"], "tls.min_version", TLS_VERSIONS)
        for name in ("http2", "session_tickets"):
            if name in table:
                values[name] = self.boolean(table[name], f"tls.{name}")
        return TLSSettings(**values)

    def acme(self, value: object, vhosts: tuple[VHost, ...]) -> AcmeConfig | None:
        """`[acme]`: present when the file has the table or a vhost has tls = "acme" or "internal"."""
        if value is None:
            if not any(v.tls is not None for v in vhosts):
                return None
            value = {}
        table = self.table(value, "acme")
        self.check_keys(table, ACME_KEYS, "acme")
        if "storage" in table:
            text = self.string(table["storage"], "acme.storage", "a directory path")
            storage = os.path.normpath(os.path.join(self.base_dir, text))
            if os.path.exists(storage) and not os.path.isdir(storage):
                self.fail("acme.storage", f"{show(storage)} is not a directory")
        else:
            storage = self.default_storage()
        values: dict[str, Any] = {"storage": storage}
        if "email" in table:
            email = self.string(table["email"], "acme.email", "an email address")
            if not _EMAIL_RE.fullmatch(email):
                self.fail("acme.email", f"expected an email address such as \"admin@example.com\", got {show(email)}")
            values["email"] = email
        if "directory" in table:
            url = self.string(table["directory"], "acme.directory", "an https:// URL")
            if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", url):
                self.fail("acme.directory", f"expected the CA's directory URL such as {show(LETSENCRYPT_DIRECTORY)}, "
                          f"got {show(url)}")
            values["directory"] = url
        if "ca_bundle" in table:
            text = self.string(table["ca_bundle"], "acme.ca_bundle", "a PEM file path")
            bundle = os.path.normpath(os.path.join(self.base_dir, text))
            if not os.path.isfile(bundle):
                self.fail("acme.ca_bundle", f"file {show(bundle)} does not exist")
            values["ca_bundle"] = bundle
        if "challenge" in table:
            values["challenge"] = self.choice(table["challenge"], "acme.challenge", ACME_CHALLENGES)
        return AcmeConfig(**values)

    def default_storage(self) -> str:
        """`[acme] storage` when not set: beside run_dir, "frontd-certs" where run_dir is
        "frontd-sockets" (next to the pid file), else run_dir's name with "-certs"."""
        run_dir = self.run_dir_path
        if run_dir.endswith("-sockets"):
            return run_dir[: -len("-sockets")] + "-certs"
        return run_dir.rstrip("/") + "-certs"

    def check_acme_challenge(self, listeners: tuple[Listener, ...], vhosts: tuple[VHost, ...],
                             acme: AcmeConfig | None) -> None:
        """The ACME challenge needs a listener to be answered on: http-01 a plain TCP one (the CA
        connects to port 80), tls-alpn-01 a TLS one (port 443)."""
        if acme is None or not any(v.tls == "acme" for v in vhosts):
            return
        tcp = [listener for listener in listeners if listener.address.kind == "tcp"]
        key = "acme.challenge"
        if acme.challenge == "tls-alpn-01" and not any(listener.tls for listener in tcp):
            self.fail(key, '"tls-alpn-01" is answered on a TLS listener (port 443 for the CA): add '
                      '{ address = "...", tls = true } to listen, or use "http-01"')
        if acme.challenge == "http-01" and all(listener.tls for listener in tcp):
            self.fail(key, '"http-01" is answered on a plain-HTTP listener (port 80 for the CA): add one '
                      'to listen, or use "tls-alpn-01"')

    def check_tls(self, listeners: tuple[Listener, ...], vhosts: tuple[VHost, ...]) -> None:
        """What the TLS keys need from each other, once listeners and vhosts are known."""
        tls_listener = next((i for i, listener in enumerate(listeners) if listener.tls), None)
        if tls_listener is not None and not any(v.has_tls for v in vhosts):
            self.fail(f"listen[{tls_listener}]", "a TLS listener needs a vhost with a certificate "
                      '(set tls_certificate and tls_key, or tls = "acme" or "internal", on a [[vhost]])')
        for i, vhost in enumerate(vhosts):
            if vhost.redirect_https and tls_listener is None:
                self.fail(f"vhost[{i}].redirect_https", "there is no TLS listener to redirect to "
                          '(add { address = "...", tls = true } to listen)')
            if vhost.redirect_https and not vhost.has_tls:
                self.fail(f"vhost[{i}].redirect_https", "the vhost has no certificate to serve HTTPS with "
                          '(set tls_certificate and tls_key, or tls = "acme" or "internal")')

    def vhost_tls(self, table: dict[str, object], path: str, names: tuple[str, ...]) -> dict[str, Any]:
        """A vhost's certificate: tls_certificate with tls_key, or tls = "acme" | "internal"."""
        values: dict[str, Any] = {}
        has_files = "tls_certificate" in table or "tls_key" in table
        if "tls" in table:
            source = self.choice(table["tls"], f"{path}.tls", VHOST_TLS_SOURCES)
            if has_files:
                which = "tls_certificate" if "tls_certificate" in table else "tls_key"
                self.fail(f"{path}.{which}", f'set either {which} or tls = "{source}", not both')
            if source == "acme":
                wildcards = [n for n in names if n.startswith("*.")]
                if wildcards:
                    self.fail(f"{path}.tls", f"{show(wildcards[0])}: a wildcard certificate needs the DNS-01 "
                              "challenge, which frontd does not answer; list the names, or use tls_certificate")
                if not names:
                    self.fail(f"{path}.tls", 'tls = "acme" needs names to ask the CA for')
            if source == "internal" and not names:
                self.fail(f"{path}.tls", 'tls = "internal" needs names to issue the certificate for')
            values["tls"] = source
        elif has_files:
            for name, other in (("tls_certificate", "tls_key"), ("tls_key", "tls_certificate")):
                if name not in table:
                    self.fail(f"{path}.{other}", f"needs {name} too")
            values["tls_certificate"] = self.readable_file(table["tls_certificate"], f"{path}.tls_certificate")
            values["tls_key"] = self.readable_file(table["tls_key"], f"{path}.tls_key")
        if "redirect_https" in table:
            values["redirect_https"] = self.boolean(table["redirect_https"], f"{path}.redirect_https")
        return values
