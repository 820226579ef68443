"""Peak memory and time of `flask --app webapp sessions prune` on N expired sessions.

Makes a fresh instance folder whose store holds N expired signed-in sessions (each an index
row and a store file; the files are hard links to one expired entry, which costs the prune the
same per-file work and the disk almost nothing), runs the real command, and reads its peak RSS
from the kernel (wait4's rusage). Run for two sizes to see that memory stays flat and time
grows with what is deleted: `.venv/bin/python bench/prune_rss.py 10000 1000000`.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINKS_PER_FILE = 60_000
BIN = Path(sys.executable).parent


def make_instance(folder: Path, count: int) -> None:
    from sqlalchemy import insert

    from webapp import create_app
    from webapp.db import engine_of, get_db
    from webapp.models import UserSession
    from webapp.users import create_user

    app = create_app(
        {
            "INSTANCE_PATH": str(folder),
            "ARGON2_MEMORY_COST": 8,
            "ARGON2_TIME_COST": 1,
            "ARGON2_PARALLELISM": 1,
        }
    )
    interface = app.session_interface
    old = datetime.now(UTC) - timedelta(seconds=app.config["ABSOLUTE_TIMEOUT"] + 60)
    with app.app_context():
        user = create_user(get_db(), "bench", "a long enough password")
        template = ""
        rows = []
        for n in range(count):
            sid_hash = secrets.token_hex(32)
            path = interface.cache._get_filename(interface.key_prefix + sid_hash)
            if n % LINKS_PER_FILE == 0:  # ext4 allows 65,000 links to one file
                interface.cache.set(interface.key_prefix + sid_hash, {"_user_id": "1"}, timeout=1)
                template = path
            else:
                os.link(template, path)
            rows.append(
                {
                    "id": f"{n:016x}",
                    "sid_hash": sid_hash,
                    "user_id": user.id,
                    "created_at": old,
                    "last_active_at": old,
                    "ip": None,
                    "user_agent": "",
                }
            )
            if len(rows) == 50_000:
                with engine_of(app).begin() as connection:
                    connection.execute(insert(UserSession), rows)
                rows.clear()
        if rows:
            with engine_of(app).begin() as connection:
                connection.execute(insert(UserSession), rows)
    engine_of(app).dispose()


def prune(folder: Path) -> tuple[float, int, str]:
    """Seconds, peak RSS (KiB) and output of the real command."""
    env = {**os.environ, "WEBAPP_INSTANCE_PATH": str(folder)}
    began = time.monotonic()
    process = subprocess.Popen(
        [str(BIN / "flask"), "--app", "webapp", "sessions", "prune"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    output = process.stdout.read().decode() if process.stdout else ""
    _pid, status, usage = os.wait4(process.pid, 0)
    if status != 0:
        raise SystemExit(f"prune failed:\n{output}")
    return time.monotonic() - began, usage.ru_maxrss, output.strip()


def main(sizes: list[int]) -> None:
    for count in sizes:
        folder = Path(tempfile.mkdtemp(prefix="webapp-prune-")) / "instance"
        try:
            began = time.monotonic()
            make_instance(folder, count)
            made = time.monotonic() - began
            seconds, rss, output = prune(folder)
            left = sum(1 for _ in os.scandir(folder / "sessions"))
            print(
                f"{count:>9,} expired sessions (made in {made:.0f} s): pruned in {seconds:.1f} s,"
                f" peak RSS {rss / 1024:.0f} MiB, {left} store files left; {output}"
            )
        finally:
            shutil.rmtree(folder.parent, ignore_errors=True)


if __name__ == "__main__":
    main([int(arg) for arg in sys.argv[1:]] or [10_000, 1_000_000])
