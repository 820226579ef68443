"""The instance folder: private to webapp, created on first start, holding the generated key."""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
import tempfile

SECRET_KEY_FILE = "secret_key"  # noqa: S105 (a file name, not a secret)


class InstanceError(RuntimeError):
    """The instance folder or a file in it is unusable; the message says how to fix it."""


def ensure_private_folder(path: str) -> None:
    """Create `path` mode 0700, or tighten an existing one we own; refuse one others can write."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    info = os.stat(path)
    if info.st_uid == os.geteuid() and stat.S_IMODE(info.st_mode) != 0o700:
        os.chmod(path, 0o700)
    elif info.st_uid != os.geteuid():
        raise InstanceError(f"{path} belongs to uid {info.st_uid}; webapp's user must own it")


def load_or_create_secret_key(instance_path: str) -> str:
    """Read instance/secret_key, generating it once; every worker ends up with the same key.

    Workers start at the same moment, so the key is written to a temporary file and linked into
    place: exactly one link wins and everyone reads back the winner.
    """
    path = os.path.join(instance_path, SECRET_KEY_FILE)
    if not os.path.exists(path):
        fd, tmp = tempfile.mkstemp(dir=instance_path, prefix=".secret_key.")
        try:
            with os.fdopen(fd, "w") as handle:  # mkstemp creates it 0600
                handle.write(secrets.token_hex(32))
            with contextlib.suppress(FileExistsError):  # another worker won: use its key
                os.link(tmp, path)
        finally:
            os.unlink(tmp)
    if stat.S_IMODE(os.stat(path).st_mode) & 0o077:
        raise InstanceError(f"{path} is readable by other users; run: chmod 600 {path}")
    with open(path) as handle:
        key = handle.read().strip()
    if len(key) < 32:
        raise InstanceError(f"{path} is empty or too short; delete it to generate a new key")
    return key
