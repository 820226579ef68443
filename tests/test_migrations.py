"""Schema migrations (Alembic) on SQLite and PostgreSQL: the initial revision is the models'
schema, `flask --app webapp db ...`, adopting a database made before migrations, refusing to
start on one behind, the whole app on PostgreSQL, and several processes starting at once."""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from argon2 import PasswordHasher
from flask import Flask
from helpers import FAST_ARGON2, PASSWORD, AuthActions, FakeClock
from sqlalchemy import (
    Column,
    Engine,
    ForeignKey,
    MetaData,
    Table,
    func,
    insert,
    inspect,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.schema import CreateIndex, CreateTable
from support.ports import free_port
from support.postgres import create_database, url_for

from webapp import create_app
from webapp import schema as migrate
from webapp.db import (
    POSTGRES_CONNECT_ARGS,
    POSTGRES_STATEMENT_TIMEOUT_MS,
    engine_of,
    get_db,
    make_engine,
)
from webapp.models import Base, RememberToken, SignInEvent, UserSession
from webapp.users import create_user

ROOT = Path(__file__).resolve().parent.parent
UPGRADE = "flask --app webapp db upgrade"
#: The latest revision, and the one a newer webapp would add after it (next_revision).
HEAD = migrate.head()
NEXT = f"{int(HEAD) + 1:04d}"
#: Columns the revisions after 0001 added (with their indexes), as (table, column).
ADDED_AFTER_INITIAL = {
    ("users", "remember_reused_at"),
    ("remember_tokens", "series"),
    ("remember_tokens", "replaced_at"),
    ("user_sessions", "remember_series"),
    ("user_sessions", "method"),
    ("user_sessions", "oidc_provider"),
    ("user_sessions", "oidc_sid"),
    ("users", "email_key"),
    ("users", "email_verified_at"),
}
#: Tables the revisions after 0001 added.
TABLES_ADDED_AFTER_INITIAL = {
    "totp_authenticators",
    "recovery_codes",
    "passkeys",
    "sign_in_challenges",
    "oidc_identities",
    "oidc_logout_tokens",
    "mail_tokens",
    "mail_requests",
    "known_devices",
}


def models_at_initial_revision() -> MetaData:
    """The models without what later revisions added: the tables webapp's create_all made
    before it had migrations."""
    metadata = MetaData()
    for table in Base.metadata.sorted_tables:
        if table.name in TABLES_ADDED_AFTER_INITIAL:
            continue
        kept = [c for c in table.columns if (table.name, c.name) not in ADDED_AFTER_INITIAL]
        columns = [
            Column(
                c.name,
                c.type,
                *(ForeignKey(fk.target_fullname, ondelete=fk.ondelete) for fk in c.foreign_keys),
                primary_key=c.primary_key,
                nullable=c.nullable,
                index=c.index,
                unique=c.unique,
            )
            for c in kept
        ]
        Table(table.name, metadata, *columns, **table.kwargs)
    return metadata


# -- fixtures ------------------------------------------------------------------------------


# `postgres` (conftest.py): the URL of the run's throwaway PostgreSQL server (tests/postgres.py).


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database: a new SQLite file, or a new database on the PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'webapp.db'}"
    return create_database(request.getfixturevalue("postgres"))


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def config(tmp_path: Path, clock: FakeClock, database_url: str) -> dict[str, object]:
    """The app on that database (sessions in files: these tests are about the database)."""
    return {
        "TESTING": True,
        "INSTANCE_PATH": str(tmp_path / "instance"),
        "SECURE_COOKIES": False,
        "CLOCK": clock,
        "DATABASE_URL": database_url,
        **FAST_ARGON2,
    }


@contextmanager
def started(config: dict[str, object]) -> Iterator[Flask]:
    app = create_app(config)
    try:
        yield app
    finally:
        engine_of(app).dispose()


@pytest.fixture
def next_revision(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[], Path]:
    """Turns this webapp into a newer one: the migrations plus revision NEXT (users.name
    widened, users.locale added; on SQLite that rebuilds the users table, which the other
    tables reference). Returns the new revision's file."""

    def arrive() -> Path:
        folder = tmp_path / "migrations"
        shutil.copytree(migrate.MIGRATIONS, folder, ignore=shutil.ignore_patterns("__pycache__"))
        revision = folder / "versions" / f"r{NEXT}_user_locale.py"
        revision.write_text(NEXT_REVISION)
        monkeypatch.setattr(migrate, "MIGRATIONS", folder)
        return revision

    return arrive


NEXT_REVISION = '''\
"""Users: a locale, longer names."""

import sqlalchemy as sa
from alembic import op

revision = "{NEXT}"
down_revision = "{HEAD}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.add_column(sa.Column("locale", sa.String(16), nullable=True))
        batch.alter_column("name", existing_type=sa.String(100), type_=sa.String(200))


def downgrade() -> None:
    with op.batch_alter_table("users", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.alter_column("name", existing_type=sa.String(200), type_=sa.String(100))
        batch.drop_column("locale")
'''.replace("{NEXT}", NEXT).replace("{HEAD}", HEAD)


def differences(engine: Engine, metadata: Any = Base.metadata) -> list[Any]:
    with engine.connect() as connection:
        return list(compare_metadata(MigrationContext.configure(connection), metadata))


def revisions(engine: Engine) -> tuple[str, ...]:
    return migrate.state_of(engine).revisions


def sqlite_schema(path: str) -> dict[str, str]:
    """Each table's and index's SQL, with runs of white space as one space (a column that a
    revision added with ALTER TABLE is written on the line before)."""
    with sqlite3.connect(path) as connection:
        rows = connection.execute(
            "SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT IN "
            "('alembic_version', 'sqlite_sequence')"
        ).fetchall()
    connection.close()
    return {name: re.sub(r"\s+", " ", sql) for name, sql in rows}


def add_user(engine: Engine, username: str = "alice") -> int:
    """A user as webapp stores one (the password is helpers.PASSWORD), without the app, in
    revision 0001's table (the later revisions add only columns that may be empty)."""
    users = models_at_initial_revision().tables["users"]
    with engine.begin() as connection:
        return int(
            connection.execute(
                insert(users).returning(users.c.id),
                {
                    "username": username,
                    "username_key": username,
                    "name": username.title(),
                    "email": f"{username}@example.com",
                    "password_hash": PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash(
                        PASSWORD
                    ),
                    "created_at": datetime.now(UTC),
                },
            ).scalar_one()
        )


def count(app: Flask, model: Any) -> int:
    with app.app_context():
        return int(get_db().scalar(select(func.count()).select_from(model)) or 0)


def signed_in_user(app: Flask) -> dict[str, Any]:
    """Sign alice in through the forms, with remember-me; /session's user."""
    client = app.test_client()
    assert AuthActions(client).login(remember=True).status_code == 303
    session = client.get("/session").get_json()
    assert session["user"]["username"] == "alice"
    return dict(session["user"])


# -- (a) the initial revision is the models' schema ------------------------------------------


def test_upgrade_from_empty_creates_the_models_schema(engine):
    before, after = migrate.upgrade(engine)
    assert before.empty
    assert after.revisions == (HEAD,)
    assert after.tables == set(Base.metadata.tables)
    assert differences(engine) == []


@pytest.mark.parametrize("dialect", [sqlite.dialect(), postgresql.dialect()], ids=["sqlite", "pg"])
def test_initial_revision_emits_what_create_all_emitted(dialect):
    """So a database made by webapp before migrations is exactly revision 0001."""

    def ddl(metadata: Any) -> list[str]:
        statements = []
        for table in metadata.sorted_tables:
            statements.append(str(CreateTable(table).compile(dialect=dialect)))
            statements += sorted(
                str(CreateIndex(i).compile(dialect=dialect)) for i in table.indexes
            )
        return statements

    assert ddl(migrate.initial_schema()) == ddl(models_at_initial_revision())


def test_sqlite_schema_from_migrations_is_the_one_create_all_made(tmp_path):
    migrated, created = tmp_path / "migrated.db", tmp_path / "created.db"
    for path, make in ((migrated, migrate.upgrade), (created, Base.metadata.create_all)):
        engine = make_engine(f"sqlite:///{path}")
        make(engine)
        engine.dispose()
    schema = sqlite_schema(str(migrated))
    assert schema == sqlite_schema(str(created))
    # Ids are never reused where the models ask for it.
    assert "AUTOINCREMENT" in schema["users"]
    assert "AUTOINCREMENT" in schema["sign_in_events"]
    assert "AUTOINCREMENT" not in schema["user_sessions"]


# -- (b) flask --app webapp db ... ------------------------------------------------------------


def db_command(app: Flask, *args: str) -> Any:
    return app.test_cli_runner().invoke(args=["db", *args])


def test_db_commands_create_check_and_are_idempotent(config):
    with started(config) as app:  # a first start migrates the empty database
        engine = engine_of(app)
        result = db_command(app, "check")
        assert result.exit_code == 0, result.output
        assert f"latest revision ({HEAD})" in result.output
        assert db_command(app, "current").output.strip() == f"{HEAD} (latest)"
        for _ in range(2):
            result = db_command(app, "upgrade")
            assert result.exit_code == 0, result.output
            assert "already at the latest revision" in result.output

        with engine.begin() as connection:  # back to an empty database
            Base.metadata.drop_all(connection)
            connection.execute(text("DROP TABLE alembic_version"))
        result = db_command(app, "check")
        assert result.exit_code == 1
        assert "The database is empty" in result.output
        assert UPGRADE in result.output
        assert db_command(app, "current").output.strip() == "empty (no tables)"

        result = db_command(app, "upgrade")
        assert result.exit_code == 0, result.output
        assert f"upgraded: was empty (no tables), now {HEAD} (latest)" in result.output
        assert db_command(app, "check").exit_code == 0
        assert differences(engine) == []


def flask(instance: Path, *args: str, url: str | None = None) -> subprocess.CompletedProcess[str]:
    """The real command line, as an operator (or `make run`) runs it."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("WEBAPP_")}
    env.update(WEBAPP_INSTANCE_PATH=str(instance), PYTHONWARNINGS="error")
    if url:
        env["WEBAPP_DATABASE_URL"] = url
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "webapp", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_flask_db_commands_on_a_new_install(tmp_path):
    """Loading the app for `db check` must not create the schema; `db upgrade` does."""
    instance = tmp_path / "instance"
    check = flask(instance, "db", "check")
    assert check.returncode == 1
    assert "The database is empty" in check.stderr
    upgrade = flask(instance, "db", "upgrade")
    assert upgrade.returncode == 0, upgrade.stderr
    assert f"Database upgraded: was empty (no tables), now {HEAD} (latest)." in upgrade.stdout
    assert flask(instance, "db", "check").returncode == 0


def test_flask_commands_refuse_a_database_they_do_not_know(tmp_path):
    """Other commands load the app too, and say what is wrong (no traceback); `flask run`
    refuses to start rather than answer every request with a 500."""
    instance = tmp_path / "instance"
    instance.mkdir(mode=0o700)
    engine = make_engine(f"sqlite:///{instance / 'webapp.db'}")
    migrate.upgrade(engine)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = 'ffff'"))
    assert migrate.state_of(engine).describe() == "ffff (unknown to this version of webapp)"
    engine.dispose()
    for args in (("db", "check"), ("users", "list"), ("run", "--port", str(free_port()))):
        result = flask(instance, *args)
        assert result.returncode == 1, args
        assert "revision ffff, which this version of webapp does not know" in result.stderr
        assert "Traceback" not in result.stderr


def test_unreachable_database_is_a_clear_error(tmp_path):
    url = url_for(free_port())  # nobody listens there
    result = flask(tmp_path / "instance", "db", "upgrade", url=url)
    assert result.returncode == 1
    assert "database unreachable or failing: OperationalError" in result.stderr
    assert "Traceback" not in result.stderr


# -- (c) a database made before migrations ----------------------------------------------------


def test_database_made_before_migrations_is_adopted_on_start(config, engine):
    """Stamped at 0001 on start; being behind the later revisions, it then waits for
    `db upgrade` like any database behind."""
    models_at_initial_revision().create_all(engine)  # what webapp did before migrations
    add_user(engine, "alice")
    with pytest.raises(migrate.SchemaError, match=f"at revision 0001; .* needs revision {HEAD}"):
        create_app(config)
    assert revisions(engine) == ("0001",)
    migrate.upgrade(engine)
    with started(config) as app:
        assert signed_in_user(app)["name"] == "Alice"
    assert differences(engine) == []


def test_older_database_lacking_tables_and_indexes_is_completed_by_upgrade(config, engine):
    """Before 0902a8a user_sessions had no index on its times, before f0e6cce there was no
    sign_in_events: create_all added missing tables at start, never indexes. Start refuses
    (it never changes a schema that holds data); `db upgrade` adds them and keeps the data."""
    models_at_initial_revision().create_all(engine)
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE sign_in_events"))
        connection.execute(text("DROP INDEX ix_user_sessions_created_at"))
        connection.execute(text("DROP INDEX ix_user_sessions_last_active_at"))
    add_user(engine, "alice")
    with pytest.raises(migrate.SchemaError) as refused:
        create_app(config)
    message = str(refused.value)
    assert "made before webapp had migrations" in message
    assert "missing table sign_in_events" in message
    assert "missing index ix_user_sessions_created_at on user_sessions" in message
    assert UPGRADE in message
    assert revisions(engine) == ()

    before, after = migrate.upgrade(engine)
    assert before.revisions == () and after.revisions == (HEAD,)
    assert differences(engine) == []
    with started(config) as app:
        signed_in_user(app)


def test_database_that_differs_otherwise_is_never_changed(config, engine):
    models_at_initial_revision().create_all(engine)
    with engine.begin() as connection:
        connection.execute(text("ALTER TABLE users ADD COLUMN nickname VARCHAR(20)"))
    add_user(engine, "alice")
    for attempt in (lambda: create_app(config), lambda: migrate.upgrade(engine)):
        with pytest.raises(migrate.SchemaError, match=r"unexpected column users\.nickname"):
            attempt()
    assert "alembic_version" not in inspect(engine).get_table_names()
    assert "nickname" in {column["name"] for column in inspect(engine).get_columns("users")}


# -- (d) a database behind the code ------------------------------------------------------------


def test_database_behind_refuses_to_start_until_upgraded_and_keeps_its_data(
    config, engine, next_revision
):
    with started(config) as app:
        with app.app_context():
            create_user(get_db(), "alice", PASSWORD, "Alice Example", "alice@example.com")
            bob = create_user(get_db(), "bob", PASSWORD, "Bob")
            get_db().delete(bob)  # the highest id so far: it must never be handed out again
            get_db().commit()
        user = signed_in_user(app)  # a session, a remember-me token, a sign-in event
        kept = {model: count(app, model) for model in (UserSession, RememberToken, SignInEvent)}
        assert all(kept.values())

        next_revision()  # a newer webapp arrives, with revision NEXT
        with pytest.raises(migrate.SchemaError) as refused:
            create_app(config)
        assert str(refused.value) == (
            f"The database schema is at revision {HEAD}; this version of webapp needs revision "
            f"{NEXT}. Back up the database, run `{UPGRADE}` (with the same WEBAPP_* settings), "
            "then start webapp."
        )
        check = db_command(app, "check")
        assert check.exit_code == 1
        assert str(refused.value) in check.output
        upgrade = db_command(app, "upgrade")
        assert upgrade.exit_code == 0, upgrade.output
        assert f"was {HEAD} (behind the latest, {NEXT}), now {NEXT} (latest)" in upgrade.output
        assert db_command(app, "check").exit_code == 0
        if engine.dialect.name == "sqlite":
            with engine_of(app).connect() as connection:  # the migration's, back in the pool
                assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1

    with started(config) as app:
        # Rebuilding users on SQLite cascaded to nothing: every row that references it is kept.
        assert {model: count(app, model) for model in kept} == kept
        assert signed_in_user(app) == user
        with app.app_context():
            carol = create_user(get_db(), "carol", PASSWORD)
            assert carol.id == int(user["id"]) + 2  # not bob's id
    columns = {column["name"]: column for column in inspect(engine).get_columns("users")}
    assert columns["locale"]["nullable"]
    assert columns["name"]["type"].length == 200
    if engine.dialect.name == "sqlite":
        assert "AUTOINCREMENT" in sqlite_schema(engine.url.database or "")["users"]


def test_revision_0002_forgets_remember_tokens_bound_to_no_session_and_goes_back(engine):
    """Tokens issued before 0002 belong to no session (ending one could not end them): the
    upgrade deletes them and keeps everything else; the downgrade gives back 0001's tables."""
    with migrate.migration_connection(engine) as connection:
        command.upgrade(migrate.alembic_config(connection), "0001")
    user_id = add_user(engine)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO user_sessions (id, sid_hash, user_id, created_at, last_active_at, "
                "user_agent) VALUES ('0123456789abcdef', 'h', :user, :now, :now, '')"
            ),
            {"user": user_id, "now": "2027-01-01 00:00:00"},
        )
        connection.execute(
            text(
                "INSERT INTO remember_tokens (selector, secret_hash, user_id, created_at, "
                "expires_at) VALUES ('s', 'h', :user, :now, :now)"
            ),
            {"user": user_id, "now": "2027-01-01 00:00:00"},
        )

    before, after = migrate.upgrade(engine)
    assert (before.revisions, after.revisions) == (("0001",), (HEAD,))
    assert differences(engine) == []
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM remember_tokens")).scalar() == 0
        kept = connection.execute(text("SELECT id, remember_series FROM user_sessions")).all()
        assert [tuple(row) for row in kept] == [("0123456789abcdef", None)]
        assert connection.execute(text("SELECT remember_reused_at FROM users")).all() == [(None,)]

    with migrate.migration_connection(engine) as connection:
        command.downgrade(migrate.alembic_config(connection), "0001")
    assert revisions(engine) == ("0001",)
    assert differences(engine, models_at_initial_revision()) == []


def test_sqlite_rebuild_that_would_reuse_ids_is_refused_and_rolled_back(tmp_path, next_revision):
    engine = make_engine(f"sqlite:///{tmp_path / 'webapp.db'}")
    migrate.upgrade(engine)
    revision = next_revision()
    revision.write_text(  # the same revision, without keeping AUTOINCREMENT
        NEXT_REVISION.replace(', table_kwargs={"sqlite_autoincrement": True}', "")
    )
    with pytest.raises(migrate.SchemaError, match="rebuilt users without AUTOINCREMENT"):
        migrate.upgrade(engine)
    assert revisions(engine) == (HEAD,)
    assert differences(engine) == []
    engine.dispose()


def test_database_at_an_unknown_revision_refuses_to_start_and_to_upgrade(config, engine):
    migrate.upgrade(engine)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = 'ffff'"))
    for attempt in (lambda: create_app(config), lambda: migrate.upgrade(engine)):
        with pytest.raises(migrate.SchemaError, match="revision ffff, which this version"):
            attempt()
    assert revisions(engine) == ("ffff",)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_db_revision_writes_the_next_numbered_revision(config, tmp_path, monkeypatch):
    folder = tmp_path / "migrations"
    shutil.copytree(migrate.MIGRATIONS, folder, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(migrate, "MIGRATIONS", folder)
    with started(config) as app:
        result = db_command(app, "revision", "-m", "add a locale", "--autogenerate")
    assert result.exit_code == 0, result.output
    written = folder / "versions" / f"r{NEXT}_add_a_locale.py"
    assert f"Wrote {written}" in result.output
    source = written.read_text()
    assert f'revision = "{NEXT}"' in source.replace("'", '"')
    assert f'down_revision = "{HEAD}"' in source.replace("'", '"')
    assert migrate.head() == NEXT


# -- (e) the app on PostgreSQL ----------------------------------------------------------------


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_sign_in_flow_on_postgresql(config):
    with started(config) as app:
        engine = engine_of(app)
        assert engine.dialect.name == "postgresql"
        assert engine.dialect.driver == "psycopg"
        assert engine.pool._pre_ping  # type: ignore[attr-defined]
        with engine.connect() as connection:
            timeout = connection.execute(text("SHOW statement_timeout")).scalar()
            libpq = connection.connection.dbapi_connection.info.get_parameters()  # type: ignore[union-attr]
        assert timeout == f"{POSTGRES_STATEMENT_TIMEOUT_MS // 1000}s"
        assert {name: libpq[name] for name in POSTGRES_CONNECT_ARGS} == {
            name: str(value) for name, value in POSTGRES_CONNECT_ARGS.items()
        }
        with app.app_context():
            create_user(get_db(), "alice", PASSWORD, "Alice Example", "alice@example.com")
        client = app.test_client()
        auth = AuthActions(client)
        assert auth.login("alice", "wrong password here").status_code == 401
        assert auth.login(remember=True).status_code == 303
        session = client.get("/session").get_json()
        assert session["user"] == {
            "id": session["user"]["id"],
            "username": "alice",
            "name": "Alice Example",
            "email": "alice@example.com",
        }
        assert session["expires"].endswith("Z")
        assert client.get("/healthz").status_code == 200
        page = client.get("/account/sessions").get_data(as_text=True)
        assert "this device" in page.lower()
        assert auth.logout().status_code == 303
        assert client.get("/session").get_json() == {}
        assert count(app, SignInEvent) == 2


def test_migrations_on_postgresql_run_without_the_statement_timeout(postgres):
    engine = make_engine(create_database(postgres))
    with migrate.migration_connection(engine) as connection:
        assert connection.execute(text("SHOW statement_timeout")).scalar() == "0"
    with engine.connect() as connection:
        assert connection.execute(text("SHOW statement_timeout")).scalar() == "5s"
    engine.dispose()


# -- (f) several processes starting at once ---------------------------------------------------

START = textwrap.dedent(
    """
    import os, sys, time
    from alembic import command

    upgrade = command.upgrade

    def slow_upgrade(*args, **kwargs):  # hold the lock while the others arrive
        time.sleep(0.5)
        return upgrade(*args, **kwargs)

    command.upgrade = slow_upgrade
    from webapp import create_app

    barrier, workers = sys.argv[1], int(sys.argv[2])
    open(os.path.join(barrier, str(os.getpid())), "w").close()
    deadline = time.monotonic() + 30
    while len(os.listdir(barrier)) < workers and time.monotonic() < deadline:
        time.sleep(0.005)
    create_app()
    """
)


def test_concurrent_first_start_on_an_empty_database(database_url, tmp_path):
    workers, barrier = 4, tmp_path / "barrier"
    barrier.mkdir()
    env = {name: value for name, value in os.environ.items() if not name.startswith("WEBAPP_")}
    env.update(
        WEBAPP_DATABASE_URL=database_url,
        WEBAPP_INSTANCE_PATH=str(tmp_path / "instance"),
        WEBAPP_SECRET_KEY="x" * 64,
        PYTHONWARNINGS="error",
    )
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", START, str(barrier), str(workers)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(workers)
    ]
    outputs = [process.communicate(timeout=90) for process in processes]
    for process, (_out, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err
    logs = "".join(err for _out, err in outputs)
    assert logs.count(f"empty database: created the schema at revision {HEAD}") == 1, logs
    engine = make_engine(database_url)
    assert revisions(engine) == (HEAD,)
    assert differences(engine) == []
    engine.dispose()
