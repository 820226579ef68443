"""A real OpenID provider for tests: oidc-provider (npm, pinned in tests/support/oidc/), run by
Node on a free loopback port. Its packages are installed with `npm ci` on first use and again
only when package-lock.json changes (a stamp beside node_modules holds the lock's hash)."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from support.ports import free_port

FOLDER = Path(__file__).resolve().parent / "oidc"
STAMP = FOLDER / "node_modules" / ".webapp-lock-hash"
START_TIMEOUT = 30.0


def install() -> None:
    """npm ci, unless node_modules already matches package-lock.json."""
    wanted = hashlib.sha256((FOLDER / "package-lock.json").read_bytes()).hexdigest()
    if STAMP.is_file() and STAMP.read_text() == wanted:
        return
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is needed to run the OpenID provider (apt-get install npm)")
    subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=FOLDER, check=True
    )
    STAMP.write_text(wanted)


class OidcProvider:
    """One provider process, with the test hooks of provider.js."""

    def __init__(self) -> None:
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        node = shutil.which("node") or "node"
        self.process = subprocess.Popen(
            [node, str(FOLDER / "provider.js"), str(self.port)],
            cwd=FOLDER,
            stdout=subprocess.PIPE,
            stderr=None,  # its warnings and errors show with a failing test's output
            text=True,
        )
        assert self.process.stdout is not None
        for line in self.process.stdout:  # node prints "ready" once listening
            if line.strip() == "ready":
                return
        raise RuntimeError(f"the OpenID provider did not start on port {self.port}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            if self.process.stdout is not None:
                self.process.stdout.close()
            self.process = None

    def rotate_keys(self) -> None:
        """Sign with a new key from now on; the old one leaves the provider's JWKS."""
        requests.post(f"{self.issuer}/_rotate", timeout=10).raise_for_status()

    def logout_tokens(self) -> list[str]:
        """The back-channel logout tokens the provider sent since the last call."""
        response = requests.get(f"{self.issuer}/_outbox", timeout=10)
        response.raise_for_status()
        return list(response.json())

    def settings(self, name: str = "test", client_id: str = "webapp") -> dict[str, str]:
        """The app's settings for this provider as provider `name`."""
        prefix = f"OIDC_{name.upper()}_"
        return {
            prefix + "ISSUER": self.issuer,
            prefix + "CLIENT_ID": client_id,
            prefix + "CLIENT_SECRET": f"{client_id}-secret",
            prefix + "LABEL": f"{name.title()} ID",
        }


@contextmanager
def oidc_provider() -> Iterator[OidcProvider]:
    install()
    provider = OidcProvider()
    provider.start()
    try:
        yield provider
    finally:
        provider.stop()
