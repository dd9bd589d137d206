"""Automatic certificates (RFC 8555): the loop of the one ACME process the master owns.

For every vhost with `tls = "acme"` it keeps one certificate for the vhost's exact names under
`[acme] storage`, laid out so that a restart reuses everything and asks the CA nothing:

    account/<directory hash>/key.pem        the account key (0600), one account per CA directory
    account/<directory hash>/account.json   the account URL
    certificates/<name>/fullchain.pem       chain, leaf first (certs/store.py)
    certificates/<name>/privkey.pem         its key (0600), a new one for every certificate
    state/<name>.json                       order URL, last error, next renewal, ARI window
    challenges/http-01/<token>              key authorizations, read by the workers (handlers/)
    challenges/tls-alpn-01/<name>.pem       RFC 8737 certificates, read by the workers (protocol/)

<name> is the vhost's first name. Workers only read these files; after writing a certificate this
process sends SIGUSR2 to the master, which tells the workers to load it. Every step is one log line.

Renewal: when a third of the lifetime remains, or inside the window the CA's renewal information
(ACME ARI, RFC 9773) suggests when its directory offers `renewalInfo`. A failure is retried with
exponential back-off, never sooner than the CA's Retry-After; the old certificate keeps serving,
and the state file carries the error for the status page.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import os
import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ObjectIdentifier

from frontd.certs.acme_client import (
    MAX_COMMON_NAME,
    TOKEN_RE,
    AcmeError,
    Client,
    ari_cert_id,
    key_authorization,
    key_pem,
    load_key,
    make_csr,
    new_key,
)
from frontd.config.model import AcmeConfig, Config
from frontd.certs.store import (
    certificate_paths,
    http01_challenge_path,
    tls_alpn01_path,
    write_atomic,
    write_certificate_pair,
    write_key,
)

log = logging.getLogger("frontd")

CHALLENGES: tuple[str, ...] = ("http-01", "tls-alpn-01")
# RFC 8737 §3: id-pe-acmeIdentifier, critical, an OCTET STRING of SHA-256(key authorization).
ACME_IDENTIFIER_OID = ObjectIdentifier("1.3.6.1.5.5.7.1.31")
ORDER_TIMEOUT = 300.0  # one issuance, from the order to the download
MIN_RETRY_DELAY = 60.0  # back-off after a failure: 1 min, 2, 4 ... up to a day
MAX_RETRY_DELAY = 86400.0
ARI_CHECK_INTERVAL = 6 * 3600.0  # RFC 9773 §4.3: poll renewalInfo about twice a day without Retry-After
MAX_SLEEP = 3600.0  # wake at least hourly: the wall clock may jump
MIN_RENEWAL_INTERVAL = 10.0  # a certificate is never renewed sooner than this after its issuance


@dataclass(frozen=True)
class Job:
    """One certificate to keep: a vhost's names; files are named after the first."""

    names: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.names[0]


# -- paths and files ----------------------------------------------------------------------------


def state_path(storage: str, name: str) -> str:
    return os.path.join(storage, "state", f"{name}.json")


def read_state(storage: str, name: str) -> dict[str, Any]:
    """The state file of one certificate, {} when there is none or it is unreadable."""
    try:
        with open(state_path(storage, name), "rb") as file:
            value = json.load(file)
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def tls_alpn01_certificate(name: str, key_auth: str) -> bytes:
    """RFC 8737 §3: a self-signed certificate for `name` with the acmeIdentifier extension; PEM
    of the certificate followed by its key."""
    key = new_key()
    digest = hashlib.sha256(key_auth.encode("ascii")).digest()
    subject = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, name)] if len(name) <= MAX_COMMON_NAME else [])
    now = time.time()
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(datetime.datetime.fromtimestamp(now - 3600, datetime.timezone.utc))
            .not_valid_after(datetime.datetime.fromtimestamp(now + 7 * 86400, datetime.timezone.utc))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            # The extension's value is the DER OCTET STRING (tag 0x04, length 32) of the digest.
            .add_extension(x509.UnrecognizedExtension(ACME_IDENTIFIER_OID, b"\x04\x20" + digest), critical=True)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM) + key_pem(key)


def load_chain(path: str) -> list[x509.Certificate]:
    with open(path, "rb") as file:
        return x509.load_pem_x509_certificates(file.read())


def covered_names(cert: x509.Certificate) -> set[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return {n.lower() for n in san.get_values_for_type(x509.DNSName)}


def renewal_time(cert: x509.Certificate) -> float:
    """When a third of the lifetime remains (Let's Encrypt's 90 days: 30 days before expiry)."""
    start = cert.not_valid_before_utc.timestamp()
    end = cert.not_valid_after_utc.timestamp()
    return end - (end - start) / 3


def retry_delay(failures: int, retry_after: float | None) -> float:
    """Exponential back-off from MIN_RETRY_DELAY, never sooner than the CA's Retry-After."""
    delay = min(MIN_RETRY_DELAY * 2 ** max(failures - 1, 0), MAX_RETRY_DELAY)
    return max(delay, retry_after or 0.0)


def stamp(when: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))


# -- the manager ---------------------------------------------------------------------------------


class Manager:
    """Keeps the certificates of `jobs` issued and renewed; `run` loops until the process ends."""

    def __init__(self, settings: AcmeConfig, jobs: list[Job], notify: Callable[[], None],
                 clock: Callable[[], float] = time.time, workers_gid: int | None = None) -> None:
        """`workers_gid`: the workers' group when they run as another user (the tls-alpn-01
        certificate they present is made readable by that group)."""
        self.settings = settings
        self.workers_gid = workers_gid
        self.jobs = jobs
        self.notify = notify  # after a new certificate: SIGUSR2 to the master
        self.clock = clock
        self.client: Client | None = None
        self.account_dir = os.path.join(settings.storage, "account",
                                        hashlib.sha256(settings.directory.encode()).hexdigest()[:16])

    def run(self) -> None:
        for job in self.jobs:
            self.announce(job)
        while True:
            wake = min((self._step(job) for job in self.jobs), default=self.clock() + MAX_SLEEP)
            time.sleep(min(max(wake - self.clock(), 0.0), MAX_SLEEP))

    def _step(self, job: Job) -> float:
        """`step`, with a storage that cannot be written (full disk, wrong owner) logged in one line
        and tried again later, instead of ending the process."""
        try:
            return self.step(job)
        except OSError as exc:
            log.error("acme: %s: cannot use storage %s: %s", job.name, self.settings.storage, exc)
            return self.clock() + MIN_RETRY_DELAY

    # -- one certificate ----------------------------------------------------------------------

    def announce(self, job: Job) -> None:
        """One line at start: what is stored for `job` and when it is renewed (nothing asked of the CA)."""
        cert = self._current(job)
        state = read_state(self.settings.storage, job.name)
        retry_at = float(state.get("retry_at") or 0)
        if cert is None:
            waiting = (f"; next attempt at {stamp(retry_at)} ({state.get('failures')} failed)"
                       if retry_at > self.clock() and state.get("directory") == self.settings.directory else "")
            log.info("acme: no certificate for %s yet%s", job.name, waiting)
            return
        due = float(state.get("renew_at") or renewal_time(cert)) if state.get("names") == list(job.names) \
            else self.clock()
        log.info("acme: certificate for %s valid until %s, renewal from %s", job.name,
                 stamp(cert.not_valid_after_utc.timestamp()), stamp(due))

    def step(self, job: Job) -> float:
        """Do what `job` needs now (nothing, issue or renew); the time it next needs attention."""
        now = self.clock()
        state = read_state(self.settings.storage, job.name)
        if state.get("names") != list(job.names) or state.get("directory", self.settings.directory) != \
                self.settings.directory:
            # The vhost's names or the CA changed: start afresh (no back-off left from the old ones),
            # remembering which CA issued the certificate in use.
            state = {"names": list(job.names), "issued_by": state.get("issued_by")}
        state["directory"] = self.settings.directory
        cert = self._current(job)
        if cert is not None:
            due = float(state.get("renew_at") or renewal_time(cert))
            if state.get("issued_by") not in (None, self.settings.directory):
                due = now  # from another CA (staging, then production): replace it now
            if now < due and self._ari_due(state, now):
                due = self._check_ari(job, cert, state, now)
            if now < due:
                wake = min(due, float(state.get("ari_check_at") or due))
                return wake
        retry_at = float(state.get("retry_at") or 0)
        if now < retry_at:
            return retry_at
        what = "renewing" if cert is not None else "obtaining"
        log.info("acme: %s a certificate for %s from %s", what, ", ".join(job.names), self.settings.directory)
        state["state"] = "renewing" if cert is not None else "obtaining"
        self._save(job, state)
        try:
            replaces = ari_cert_id(cert) if cert is not None and state.get("ari") else None
            new = self.issue(job, state, replaces)
        except (AcmeError, OSError, ValueError) as exc:
            # OSError: storage not writable; ValueError: a certificate or key that does not parse.
            failures = int(state.get("failures") or 0) + 1
            delay = retry_delay(failures, getattr(exc, "retry_after", None))
            state.update(failures=failures, last_error=str(exc), last_error_at=self.clock(),
                         retry_at=self.clock() + delay, state="failed")
            self._save(job, state)
            log.error("acme: %s for %s failed: %s; retrying in %ds%s", what, job.name, exc, delay,
                      "; the current certificate keeps serving" if cert is not None else "")
            return self.clock() + delay
        state.update(state="valid", failures=0, retry_at=0, last_error=None, issued_by=self.settings.directory,
                     not_after=new.not_valid_after_utc.timestamp(), issued_at=self.clock(),
                     renew_at=max(renewal_time(new), self.clock() + MIN_RENEWAL_INTERVAL), ari_check_at=0)
        state.pop("ari", None)
        self._save(job, state)
        log.info("acme: certificate for %s stored, valid until %s; HTTPS for it starts now", job.name,
                 stamp(state["not_after"]))
        self.notify()
        return self.clock()  # at once again: the renewal information of the new certificate

    def _current(self, job: Job) -> x509.Certificate | None:
        """The stored certificate when it exists, parses and covers every name of the job."""
        chain_path, key_path = certificate_paths(self.settings.storage, job.name)
        try:
            chain = load_chain(chain_path)
            if not os.path.exists(key_path) or not chain:
                return None
        except (OSError, ValueError):
            return None
        return chain[0] if set(job.names) <= covered_names(chain[0]) else None

    def _ari_due(self, state: dict[str, Any], now: float) -> bool:
        return now >= float(state.get("ari_check_at") or 0)

    def _check_ari(self, job: Job, cert: x509.Certificate, state: dict[str, Any], now: float) -> float:
        """RFC 9773: ask the CA's renewalInfo when it has one; the renewal time that follows."""
        due = renewal_time(cert)
        try:
            info = self._client().renewal_info(cert)
        except (AcmeError, OSError, ValueError, x509.ExtensionNotFound) as exc:
            log.warning("acme: renewal information for %s unavailable: %s", job.name, exc)
            state["ari_check_at"] = now + ARI_CHECK_INTERVAL
            self._save(job, state)
            return float(state.get("renew_at") or due)
        if info is None:
            state["ari_check_at"] = now + MAX_RETRY_DELAY * 7  # the CA offers no ARI; look again weekly
            state["renew_at"] = due
            self._save(job, state)
            return due
        start, end, retry_after = info
        # §4.2: a random time inside the window spreads renewals; a window in the past means now
        # (but never right after an issuance, whatever the CA says: no renewal loop).
        due = max(start + random.random() * (end - start),
                  float(state.get("issued_at") or 0) + MIN_RENEWAL_INTERVAL)
        state.update(ari={"start": start, "end": end}, renew_at=due,
                     ari_check_at=now + (retry_after if retry_after else ARI_CHECK_INTERVAL))
        self._save(job, state)
        log.info("acme: renewal window for %s from the CA: %s to %s", job.name, stamp(start), stamp(end))
        return due

    def _save(self, job: Job, state: dict[str, Any]) -> None:
        write_atomic(state_path(self.settings.storage, job.name),
                     json.dumps(state, indent=1, sort_keys=True).encode("utf-8"))

    # -- the account ---------------------------------------------------------------------------

    def _client(self) -> Client:
        if self.client is None:
            key_path = os.path.join(self.account_dir, "key.pem")
            try:
                with open(key_path, "rb") as file:
                    key = load_key(file.read())
            except FileNotFoundError:
                key = new_key()
                write_key(key_path, key_pem(key))
                log.info("acme: new account key %s", key_path)
            except ValueError as exc:
                raise AcmeError(f"account key {key_path}: {exc}") from None
            self.client = Client(self.settings.directory, key, self.settings.ca_bundle)
        return self.client

    def _account(self, *, register: bool = False) -> Client:
        """The client with its account URL: the stored one, or a new registration when there is none
        (or `register`: the CA no longer knows the stored one)."""
        client = self._client()
        if client.account_url and not register:
            return client
        info_path = os.path.join(self.account_dir, "account.json")
        try:
            if register:
                raise FileNotFoundError(info_path)
            with open(info_path, "rb") as file:
                client.account_url = str(json.load(file)["url"])
        except (OSError, ValueError, KeyError, TypeError):
            url = client.register(self.settings.email)
            write_key(info_path, json.dumps({"url": url, "directory": self.settings.directory}).encode())
            log.info("acme: account %s registered", url)
        return client

    # -- issuance ------------------------------------------------------------------------------

    def issue(self, job: Job, state: dict[str, Any], replaces: str | None) -> x509.Certificate:
        """RFC 8555 §7.1: order, authorize each name, finalize, download, store; the new leaf."""
        deadline = time.monotonic() + ORDER_TIMEOUT
        client, order_url, order = self._order(job, replaces)
        state["order"] = order_url
        self._save(job, state)
        log.info("acme: order %s for %s", order_url, ", ".join(job.names))
        for authz_url in order.get("authorizations") or []:
            self._authorize(client, job, str(authz_url), deadline)
        if order.get("status") not in ("ready", "valid"):
            order = client.poll(order_url, ("ready", "valid"), deadline, what=f"order {order_url}")
        self._check_order(order, order_url)
        key = new_key()
        if order.get("status") == "ready":
            order = client.finalize(str(order["finalize"]), make_csr(key, job.names))
            log.info("acme: order %s finalized", order_url)
            if order.get("status") != "valid":
                order = client.poll(order_url, ("valid",), deadline, what=f"order {order_url}")
            self._check_order(order, order_url)
        else:
            raise AcmeError(f"order {order_url} was already valid before finalization")
        chain_pem = client.download(str(order.get("certificate")))
        chain = x509.load_pem_x509_certificates(chain_pem)
        leaf = chain[0]
        if not set(job.names) <= covered_names(leaf):
            raise AcmeError(f"the certificate from {order.get('certificate')} does not cover {', '.join(job.names)}")
        if leaf.public_key().public_numbers() != key.public_key().public_numbers():
            raise AcmeError("the certificate does not match the key of the request")
        chain_path, _ = write_certificate_pair(self.settings.storage, job.name, chain_pem, key_pem(key))
        if self.workers_gid is not None:
            # The chain is public: workers of another user read it for the status page (not the key).
            os.chmod(os.path.dirname(chain_path), 0o711)
        return leaf

    def _order(self, job: Job, replaces: str | None) -> tuple[Client, str, dict[str, Any]]:
        """A new order (RFC 8555 §7.4), with the account as registered now; (client, URL, order)."""
        client = self._account()
        registered = False
        while True:
            try:
                url, order = client.new_order(job.names, replaces)
                return client, url, order
            except AcmeError as exc:
                if exc.kind == "accountDoesNotExist" and not registered:
                    # §7.3.1: the CA lost or removed the account (a test CA restarted, a staging
                    # environment reset): register the key again and order with the new account.
                    log.warning("acme: the CA does not know account %s; registering again", client.account_url)
                    client, registered = self._account(register=True), True
                elif replaces and exc.kind in ("malformed", "conflict", "alreadyReplaced"):
                    replaces = None  # RFC 9773 §5: the CA refuses "replaces": order without it
                else:
                    raise

    @staticmethod
    def _check_order(order: dict[str, Any], url: str) -> None:
        if order.get("status") == "invalid":
            error = order.get("error") or {}
            detail = error.get("detail", "") if isinstance(error, dict) else ""
            raise AcmeError(f"order {url} is invalid{': ' + detail if detail else ''}")

    def _authorize(self, client: Client, job: Job, authz_url: str, deadline: float) -> None:
        authz = client.get(authz_url)
        name = str((authz.get("identifier") or {}).get("value", "?"))
        if authz.get("status") == "valid":
            log.info("acme: %s already authorized", name)
            return
        kind = self.settings.challenge
        challenge = next((c for c in authz.get("challenges") or [] if c.get("type") == kind), None)
        if challenge is None:
            offered = ", ".join(str(c.get("type")) for c in authz.get("challenges") or [])
            raise AcmeError(f"{name}: the CA does not offer {kind} (it offers {offered or 'nothing'})")
        token = str(challenge.get("token", ""))
        if not TOKEN_RE.fullmatch(token):
            raise AcmeError(f"{name}: the CA sent an invalid challenge token")
        key_auth = key_authorization(token, client.key)
        path = (http01_challenge_path(self.settings.storage, token) if kind == "http-01"
                else tls_alpn01_path(self.settings.storage, name))
        if kind == "http-01":
            write_atomic(path, key_auth.encode("ascii"))  # public by nature: the CA fetches it over HTTP
        elif self.workers_gid is None:
            write_key(path, tls_alpn01_certificate(name, key_auth))
        else:
            # A throwaway key that only proves this one challenge: the workers' group may read it.
            write_atomic(path, tls_alpn01_certificate(name, key_auth), 0o640)
            os.chown(path, -1, self.workers_gid)
        try:
            client.answer(str(challenge["url"]))
            log.info("acme: %s challenge for %s ready, waiting for the CA", kind, name)
            authz = client.poll(authz_url, ("valid",), deadline, what=f"authorization of {name}")
        finally:
            try:
                os.unlink(path)
            except OSError:
                pass
        if authz.get("status") != "valid":
            errors = [c.get("error") for c in authz.get("challenges") or [] if c.get("error")]
            detail = errors[0].get("detail", "") if errors and isinstance(errors[0], dict) else ""
            raise AcmeError(f"{kind} validation of {name} failed{': ' + detail if detail else ''}",
                            kind="unauthorized")
        log.info("acme: %s validated by %s", name, kind)


def status(config: Config) -> dict[str, dict[str, Any]]:
    """The ACME part of the status page, by the vhost's first name: state, next attempt and last
    error, from the state files (workers read them; only the ACME process writes them)."""
    if config.acme is None:
        return {}
    storage = config.acme.storage
    entries: dict[str, dict[str, Any]] = {}
    for job in jobs(config):
        state = read_state(storage, job.name)
        if state.get("names") != list(job.names):
            state = {}
        issued = os.path.exists(certificate_paths(storage, job.name)[0])
        entries[job.name] = {
            "state": str(state.get("state") or ("valid" if issued else "obtaining")),
            "renew_at": _number(state.get("renew_at")),
            "retry_at": _number(state.get("retry_at")),
            "failures": int(state.get("failures") or 0),
            "last_error": state.get("last_error") or None,
            "last_error_at": _number(state.get("last_error_at")) if state.get("last_error") else None,
        }
    return entries


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) and value > 0 else None


def jobs(config: Config) -> list[Job]:
    """One certificate per vhost with tls = "acme", for its exact names (wildcards are refused at load)."""
    return [Job(vhost.names) for vhost in config.vhosts if vhost.tls == "acme"]


def notify_master(master_pid: int) -> Callable[[], None]:
    """The Manager's `notify`: SIGUSR2 to the master, which forwards it to the workers."""

    def send() -> None:
        try:
            os.kill(master_pid, signal.SIGUSR2)
        except ProcessLookupError:
            pass

    return send
