"""Mail: messages built with the standard library, written to a durable outbox on disk, and
sent by a background thread that retries with backoff, so that no request waits on a mail
server.

WEBAPP_MAIL_URL=file (the default) delivers by writing each message as an .eml file in the
instance folder's outbox/ and logging one line naming it. With an SMTP URL each message is
written to outbox/pending/ first; a sender thread of the process sends it and deletes it, or
keeps it and tries again later (1 s, doubling, at most RETRY_MAX_DELAY apart); after MAX_AGE it
is moved to outbox/failed/. Every worker process may send any pending message: a lock on the
file (flock) makes sure only one does. The last failure is kept in outbox/status.json, for
/healthz, until a message goes through.
"""

from __future__ import annotations

import contextlib
import fcntl
import html
import json
import logging
import os
import smtplib
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import formatdate, make_msgid
from typing import Any
from urllib.parse import unquote, urlsplit

from flask import Flask, current_app

logger = logging.getLogger("webapp.mail")

#: Seconds one SMTP conversation may take before it counts as a failure (and is retried).
SMTP_TIMEOUT = 10
#: The first retry's delay in seconds; each further failure doubles it, up to RETRY_MAX_DELAY.
RETRY_FIRST_DELAY = 1.0
RETRY_MAX_DELAY = 300.0
#: A message still unsent after this many seconds is given up (moved to outbox/failed/).
MAX_AGE = 24 * 3600
DEFAULT_PORTS = {"smtp": 25, "smtp+starttls": 587, "smtps": 465}


def compose(to: str, subject: str, lines: list[str], url: str | None = None) -> EmailMessage:
    """A message with a plain-text part (`lines`, then `url` on a line of its own) and a
    simple HTML alternative saying the same, with the link as an anchor."""
    message = EmailMessage()
    message["Subject"] = subject
    message["To"] = to
    message["From"] = current_app.config["MAIL_FROM"]
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain=current_app.config["MAIL_FROM"].rpartition("@")[2])
    text = "\n\n".join(lines)
    if url:
        text += f"\n\n{url}\n"
    message.set_content(text + "\n")
    paragraphs = "".join(f"<p>{html.escape(line)}</p>" for line in lines)
    if url:
        paragraphs += f'<p><a href="{html.escape(url)}">{html.escape(url)}</a></p>'
    message.add_alternative(
        f"<!doctype html><html><body>{paragraphs}</body></html>", subtype="html"
    )
    return message


def link(endpoint: str, **values: Any) -> str:
    """An absolute link for a mail: WEBAPP_BASE_URL and the endpoint's path, never the
    request's Host (built without a request: it also serves background work)."""
    path = current_app.url_map.bind("localhost").build(endpoint, values)
    return str(current_app.config["BASE_URL"]).rstrip("/") + path


def send(message: EmailMessage) -> None:
    """Queue `message`: written to disk at once; sent by the background sender."""
    outbox(current_app).put(message)


@dataclass(frozen=True)
class Server:
    """Where WEBAPP_MAIL_URL says to send: host, port, security and credentials."""

    scheme: str
    host: str
    port: int
    username: str | None
    password: str | None

    @classmethod
    def parse(cls, url: str) -> Server:
        parts = urlsplit(url)
        return cls(
            scheme=parts.scheme,
            host=parts.hostname or "",
            port=parts.port or DEFAULT_PORTS[parts.scheme],
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )

    def deliver(self, message: EmailMessage) -> None:
        """One SMTP conversation; raises on any failure. TLS checks the server's
        certificate against the system's trusted authorities (or SSL_CERT_FILE)."""
        context = ssl.create_default_context()
        client: smtplib.SMTP
        if self.scheme == "smtps":
            client = smtplib.SMTP_SSL(self.host, self.port, timeout=SMTP_TIMEOUT, context=context)
        else:
            client = smtplib.SMTP(self.host, self.port, timeout=SMTP_TIMEOUT)
        with client:
            if self.scheme == "smtp+starttls":
                client.starttls(context=context)
            if self.username:
                client.login(self.username, self.password or "")
            client.send_message(message)


class Outbox:
    """The instance folder's outbox/ and, for SMTP, the thread that empties its pending/."""

    def __init__(self, folder: str, url: str) -> None:
        self.folder = folder
        self.server = None if url == "file" else Server.parse(url)
        self.pending = os.path.join(folder, "pending")
        self.failed = os.path.join(folder, "failed")
        self.status_file = os.path.join(folder, "status.json")
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        os.makedirs(self.pending if self.server else folder, mode=0o700, exist_ok=True)

    def put(self, message: EmailMessage) -> str:
        """Write `message` to the outbox; the file's name."""
        name = f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:12]}.eml"
        folder = self.pending if self.server else self.folder
        path = os.path.join(folder, name)
        temporary = os.path.join(folder, "." + name)
        with open(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as file:
            file.write(message.as_bytes(policy=policy.SMTP))
        os.rename(temporary, path)  # the sender never sees half a message
        if self.server is None:
            logger.info("mail to %s written to %s", message["To"], path)
        else:
            logger.info("mail to %s queued as %s", message["To"], name)
            self.wake()
        return name

    def wake(self) -> None:
        """Start this process's sender if it is not running (it stops when nothing is
        pending, and a forked worker has none), and make it look now."""
        with self._lock:
            if self._pid != os.getpid():
                self._thread, self._pid = None, os.getpid()
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="mail-sender", daemon=True)
                self._thread.start()
            self._wake.set()

    def pending_names(self) -> list[str]:
        try:
            return sorted(n for n in os.listdir(self.pending) if n.endswith(".eml"))
        except FileNotFoundError:
            return []

    def _run(self) -> None:
        delay = RETRY_FIRST_DELAY
        while True:
            self._wake.clear()
            try:
                failures = self.deliver_pending()
            except OSError:  # the outbox folder is gone (a test's instance folder)
                logger.exception("mail sender stopped")
                return
            with self._lock:
                if not self.pending_names():
                    self._thread = None
                    return
            if failures:
                self._wake.wait(delay)
                delay = min(delay * 2, RETRY_MAX_DELAY)
            else:  # others' messages it could not lock: look again soon
                delay = RETRY_FIRST_DELAY
                self._wake.wait(RETRY_FIRST_DELAY)

    def deliver_pending(self) -> int:
        """Try every pending message once; how many failed."""
        assert self.server is not None
        failures = 0
        for name in self.pending_names():
            path = os.path.join(self.pending, name)
            try:
                file = open(path, "rb")  # noqa: SIM115 (held while its lock is)
            except FileNotFoundError:
                continue  # another process sent it
            with file:
                try:
                    fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # another process is sending it
                try:
                    if os.stat(path).st_ino != os.fstat(file.fileno()).st_ino:
                        continue
                except FileNotFoundError:
                    continue  # sent and deleted while this one waited
                message = BytesParser(policy=policy.SMTP).parse(file)
                try:
                    self.server.deliver(message)
                except (OSError, smtplib.SMTPException) as error:
                    failures += 1
                    self._failed(path, name, error)
                    continue
                os.unlink(path)
                logger.info("mail %s sent to %s", name, message["To"])
                self._succeeded()
        return failures

    def _failed(self, path: str, name: str, error: BaseException) -> None:
        reason = f"{type(error).__name__}: {error}"[:300]
        logger.warning("mail %s not sent (will retry): %s", name, reason)
        self._write_status({"last_error": reason, "at": time.time()})
        if time.time() - os.path.getmtime(path) > MAX_AGE:
            os.makedirs(self.failed, mode=0o700, exist_ok=True)
            os.rename(path, os.path.join(self.failed, name))
            logger.error("mail %s given up after %d s: moved to %s", name, MAX_AGE, self.failed)

    def _succeeded(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.status_file)

    def _write_status(self, status: dict[str, Any]) -> None:
        temporary = f"{self.status_file}.{os.getpid()}"
        with open(temporary, "w", encoding="utf-8") as file:
            json.dump(status, file)
        os.replace(temporary, self.status_file)

    def health(self) -> str:
        """ "ok", or what is wrong: "failing: N pending, last error ..." (/healthz)."""
        if self.server is None:
            return "ok"
        try:
            with open(self.status_file, encoding="utf-8") as file:
                error = json.load(file).get("last_error", "unknown")
        except (FileNotFoundError, ValueError):
            return "ok"
        return f"failing: {len(self.pending_names())} pending, last error {error}"


def outbox(app: Flask) -> Outbox:
    box: Outbox = app.extensions["webapp.mail"]
    return box


# Work done after the answer -----------------------------------------------------------------

_executor: tuple[int, ThreadPoolExecutor] | None = None
_executor_lock = threading.Lock()


def later(app: Flask, work: Callable[..., None], *args: Any) -> Future[None]:
    """Run `work(*args)` in a background thread inside an app context: the request answers
    at once, in the same time whatever the work finds (password reset: whether an account
    has the address)."""
    global _executor
    with _executor_lock:
        if _executor is None or _executor[0] != os.getpid():  # threads do not survive fork
            _executor = (os.getpid(), ThreadPoolExecutor(1, thread_name_prefix="mail-work"))
        executor = _executor[1]

    def run() -> None:
        with app.app_context():
            try:
                work(*args)
            except Exception:
                logger.exception("background mail work failed")

    return executor.submit(run)


def settle(app: Flask) -> None:
    """Wait until the work handed to later() so far is done (one thread: in order)."""
    later(app, lambda: None).result()


def init_app(app: Flask) -> None:
    box = Outbox(os.path.join(app.instance_path, "outbox"), app.config["MAIL_URL"])
    app.extensions["webapp.mail"] = box
    if box.pending_names():  # left by a previous run
        box.wake()
