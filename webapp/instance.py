"""The instance folder: private to webapp, created on first start, holding the generated key."""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import stat
import tempfile

import click

logger = logging.getLogger(__name__)

SECRET_KEY_FILE = "secret_key"  # noqa: S105 (a file name, not a secret)


class InstanceError(click.ClickException):
    """The instance folder or a file in it is unusable; the message says how to fix it.

    A ClickException, like schema.SchemaError: `flask --app webapp ...` prints the message
    alone and exits 1. Under gunicorn the master checks the instance folder itself
    (gunicorn.conf.py logs one line, exit 1); for the rest, wsgi.py hands the refusal to
    gunicorn, which prints it and exits 4.
    """


def ensure_private_folder(path: str) -> None:
    """Create `path` mode 0700, or tighten an existing one we own, saying so in the log.

    Refused: a folder of another user, or one every user can write to, where anyone may have
    put a secret_key or a database of their own (the session store is stricter still, see
    ensure_private_store). A folder open only to its group is tightened: a checkout made with
    umask 002 is one.
    """
    os.makedirs(path, mode=0o700, exist_ok=True)
    info = os.stat(path)
    mode = stat.S_IMODE(info.st_mode)
    if info.st_uid != os.geteuid():
        raise InstanceError(f"{path} belongs to uid {info.st_uid}; webapp's user must own it")
    if mode & 0o002:
        raise InstanceError(
            f"{path} has mode {mode:04o}: every user can write to it, and may have put files "
            f"there; check what it holds, then run: chmod 700 {path}"
        )
    if mode != 0o700:
        logger.warning("instance folder %s had mode %04o: tightened to 0700", path, mode)
        os.chmod(path, 0o700)


def ensure_private_store(path: str) -> None:
    """Create the session store's folder 0700, or refuse to start unless the folder and every
    entry in it belong to this process's user with no group/other permission bits.

    Whoever can write the store can plant entries: the store checks each one's MAC, and this
    check keeps other users out in the first place. Nothing is tightened silently: a folder
    found open may already hold planted files. One lstat per entry: 100,000 cost about 0.6 s
    of CPU.
    """
    try:
        os.mkdir(path, 0o700)
        return  # ours and empty (the umask only removes bits)
    except FileExistsError:
        pass
    uid = os.geteuid()
    info = os.stat(path)
    if not stat.S_ISDIR(info.st_mode):
        raise InstanceError(f"session store {path} is not a folder; move it away and start again")
    if info.st_uid != uid:
        raise InstanceError(
            f"session store {path} belongs to uid {info.st_uid}, not to webapp's user "
            f"(uid {uid}); as root, run: chown -R {uid} {path}"
        )
    if stat.S_IMODE(info.st_mode) & 0o077:
        raise InstanceError(
            f"session store {path} has mode {stat.S_IMODE(info.st_mode):04o}: other users "
            f"can reach it; run: chmod 700 {path}"
        )
    not_files, foreign, open_ = [], [], []
    with os.scandir(path) as entries:
        for entry in entries:
            entry_info = entry.stat(follow_symlinks=False)
            if not stat.S_ISREG(entry_info.st_mode):
                not_files.append(entry.path)
            elif entry_info.st_uid != uid:
                foreign.append(entry.path)
            elif stat.S_IMODE(entry_info.st_mode) & 0o077:
                open_.append(entry.path)
    if not_files:
        raise InstanceError(
            f"session store {path} holds entries that are not regular files: {len(not_files)} "
            f"(e.g. {not_files[0]}); it holds only webapp's session files: move them away"
        )
    if foreign:
        raise InstanceError(
            f"session store {path} holds files not owned by webapp's user (uid {uid}): "
            f"{len(foreign)} (e.g. {foreign[0]}); as root, run: chown -R {uid} {path}"
        )
    if open_:
        raise InstanceError(
            f"session store {path} holds files other users can read or write: {len(open_)} "
            f"(e.g. {open_[0]}); run: find {path} -type f -exec chmod 600 {{}} +"
        )


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
