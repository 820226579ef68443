"""The database schema: its state, the migration lock, migrations with Alembic, and the check
at start (ensure_schema; the `flask --app webapp db` commands are in cli.py).

The revisions live in webapp/migrations (inside the package, so an installed webapp carries
them); Alembic is configured here, in Python, with no alembic.ini. Every migration runs on one
connection that holds a lock for the whole of one transaction, so processes starting at once
never migrate twice:
- PostgreSQL: `pg_advisory_xact_lock`; DDL is transactional; no statement timeout meanwhile.
- SQLite: `BEGIN IMMEDIATE` (retried while another process writes), foreign keys off meanwhile
  (a batch operation copies a table and drops the old one, which would otherwise cascade to the
  rows referencing it), then before COMMIT: `PRAGMA foreign_key_check`, and ids never reused (a
  rebuilt table must keep AUTOINCREMENT, and its sequence is put back where it was).

A database made before webapp had migrations (tables, no recorded revision) is adopted: when its
tables are the initial revision's, it is stamped at that revision (at start too). `db upgrade`
also creates the tables and indexes it lacks (older versions of webapp's create_all made fewer);
any other difference is refused, and nothing is touched.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import click
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, MetaData, inspect, text
from sqlalchemy.exc import OperationalError

#: Where the revisions are (env.py, versions/).
MIGRATIONS = Path(__file__).with_name("migrations")
#: The revision that creates the schema webapp had before migrations.
INITIAL_REVISION = "0001"
VERSION_TABLE = "alembic_version"
#: Key of the PostgreSQL advisory lock taken while migrating (any fixed signed 64-bit number;
#: advisory locks are per database).
ADVISORY_LOCK_KEY = 0x7765626170700001
#: SQLite: each BEGIN IMMEDIATE already waits the busy timeout (5 s) for the write lock.
SQLITE_LOCK_ATTEMPTS = 12
UPGRADE_HINT = (
    "run `flask --app webapp db upgrade` (with the same WEBAPP_* settings), then start webapp"
)

log = logging.getLogger(__name__)


class SchemaError(click.ClickException):
    """The database's schema is not one this version of webapp runs on, or can adopt."""


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration, made in Python; env.py migrates the given connection."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
    config.set_main_option("path_separator", "os")
    config.set_main_option("file_template", "r%%(rev)s_%%(slug)s")
    config.attributes["connection"] = connection
    return config


def scripts() -> ScriptDirectory:
    return _scripts(str(MIGRATIONS))


@lru_cache(maxsize=4)
def _scripts(_location: str) -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head() -> str:
    revision = scripts().get_current_head()
    assert revision is not None, "no migrations found"
    return revision


def _known_revisions() -> frozenset[str]:
    return frozenset(script.revision for script in scripts().walk_revisions())


@dataclass(frozen=True)
class SchemaState:
    """Where a database stands: its tables, and the revision(s) alembic_version records."""

    tables: frozenset[str]
    revisions: tuple[str, ...]
    head: str
    unknown: tuple[str, ...]

    @property
    def empty(self) -> bool:
        return not self.tables and not self.revisions

    @property
    def at_head(self) -> bool:
        return self.revisions == (self.head,)

    def describe(self) -> str:
        if self.empty:
            return "empty (no tables)"
        if not self.revisions:
            return "tables but no schema revision (made before webapp had migrations)"
        parts = []
        for revision in self.revisions:
            if revision in self.unknown:
                parts.append(f"{revision} (unknown to this version of webapp)")
            elif revision == self.head:
                parts.append(f"{revision} (latest)")
            else:
                parts.append(f"{revision} (behind the latest, {self.head})")
        return ", ".join(parts)

    def problem(self) -> str | None:
        """Why webapp cannot start on this database; None when it can."""
        if self.at_head:
            return None
        if self.unknown:
            return (
                f"The database is at schema revision {', '.join(self.unknown)}, which this "
                f"version of webapp does not know (its latest is {self.head}): a newer webapp "
                "has upgraded it. Run that version, or restore a backup made before the upgrade."
            )
        if self.empty:
            return f"The database is empty: {UPGRADE_HINT}."
        if not self.revisions:
            return (
                "The database has tables but no schema revision (made before webapp had "
                f"migrations): {UPGRADE_HINT}."
            )
        return (
            f"The database schema is at revision {', '.join(self.revisions)}; this version of "
            f"webapp needs revision {self.head}. Back up the database, {UPGRADE_HINT}."
        )


def read_state(connection: Connection) -> SchemaState:
    names = set(inspect(connection).get_table_names())
    revisions: tuple[str, ...] = ()
    if VERSION_TABLE in names:
        names.discard(VERSION_TABLE)
        revisions = tuple(sorted(MigrationContext.configure(connection).get_current_heads()))
    known = _known_revisions()
    return SchemaState(
        tables=frozenset(names),
        revisions=revisions,
        head=head(),
        unknown=tuple(revision for revision in revisions if revision not in known),
    )


def state_of(engine: Engine) -> SchemaState:
    with engine.connect() as connection:
        return read_state(connection)


@contextmanager
def migration_connection(engine: Engine) -> Iterator[Connection]:
    """A connection inside one transaction that holds the migration lock; committed at the end,
    rolled back on any error."""
    if engine.dialect.name == "sqlite":
        with _sqlite_migration_connection(engine) as connection:
            yield connection
        return
    with engine.connect() as connection, connection.begin():
        if engine.dialect.name == "postgresql":
            # A migration may rebuild an index on a big table: no 5 s limit here.
            connection.execute(text("SET LOCAL statement_timeout = 0"))
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY}
            )
        yield connection


@contextmanager
def _sqlite_migration_connection(engine: Engine) -> Iterator[Connection]:
    with engine.connect() as connection:
        # The driver must not open transactions itself: BEGIN IMMEDIATE below is the one.
        connection.execution_options(isolation_level="AUTOCOMMIT")
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")  # no effect inside a transaction
        try:
            _begin_immediate(connection)
            try:
                ids = _sqlite_ids(connection)
                yield connection
                _keep_sqlite_ids(connection, *ids)
                broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if broken:
                    raise SchemaError(
                        f"the migration would leave {len(broken)} row(s) referring to rows "
                        f"that do not exist (first: {tuple(broken[0])}); nothing was changed"
                    )
                connection.exec_driver_sql("COMMIT")
            except BaseException:
                if connection.connection.dbapi_connection.in_transaction:  # type: ignore[union-attr]
                    connection.exec_driver_sql("ROLLBACK")
                raise
        finally:
            connection.exec_driver_sql("PRAGMA foreign_keys=ON")


def _sqlite_ids(connection: Connection) -> tuple[set[str], dict[str, int]]:
    """The AUTOINCREMENT tables and the highest id each has ever handed out."""
    tables = {
        name
        for name, sql in connection.exec_driver_sql(
            "SELECT name, sql FROM sqlite_master WHERE type = 'table'"
        )
        if sql and "AUTOINCREMENT" in sql.upper()
    }
    sequences: dict[str, int] = {}
    if connection.exec_driver_sql(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sqlite_sequence'"
    ).first():
        sequences = dict(connection.exec_driver_sql("SELECT name, seq FROM sqlite_sequence").all())
    return tables, sequences


def _keep_sqlite_ids(connection: Connection, tables: set[str], sequences: dict[str, int]) -> None:
    """Ids are never reused (webapp/models.py): a batch operation that rebuilds a table must
    keep its AUTOINCREMENT, and the table's sequence must not go back (the copy restarts it at
    the highest id left, so a deleted user's id would come back)."""
    tables_now, sequences_now = _sqlite_ids(connection)
    existing = {
        name
        for (name,) in connection.exec_driver_sql(
            "SELECT name FROM sqlite_master WHERE type = 'table'"
        )
    }
    lost = sorted((tables & existing) - tables_now)
    if lost:
        raise SchemaError(
            f"a migration rebuilt {', '.join(lost)} without AUTOINCREMENT (ids could be "
            "reused): give op.batch_alter_table(..., table_kwargs={'sqlite_autoincrement': "
            "True}); nothing was changed"
        )
    for name, seq in sequences.items():
        if name not in existing or sequences_now.get(name, -1) >= seq:
            continue
        if name in sequences_now:
            connection.exec_driver_sql(
                "UPDATE sqlite_sequence SET seq = ? WHERE name = ?", (seq, name)
            )
        else:
            connection.exec_driver_sql(
                "INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", (name, seq)
            )


def _begin_immediate(connection: Connection) -> None:
    """Take SQLite's write lock, waiting while another process holds it."""
    for attempt in range(SQLITE_LOCK_ATTEMPTS):
        try:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
            return
        except OperationalError as error:
            if "locked" not in str(error) or attempt == SQLITE_LOCK_ATTEMPTS - 1:
                raise
            time.sleep(0.1)


def run_upgrade(connection: Connection) -> None:
    """Alembic's upgrade to the latest revision, on a connection from migration_connection."""
    command.upgrade(alembic_config(connection), "head")


def initial_schema() -> MetaData:
    """The initial revision's tables, frozen in its file."""
    schema = scripts().get_revision(INITIAL_REVISION).module.SCHEMA
    assert isinstance(schema, MetaData)
    return schema


def _differences(connection: Connection) -> list[Any]:
    """How the database differs from the initial revision's tables (Alembic's autogenerate
    comparison), ignoring tables that are not webapp's."""
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return [
        diff
        for diff in compare_metadata(context, initial_schema())
        if not (isinstance(diff, tuple) and diff[0] == "remove_table")
    ]


def _missing(diff: Any) -> bool:
    """A difference that only adds something (a table or an index), which upgrade can repair."""
    return isinstance(diff, tuple) and diff[0] in ("add_table", "add_index")


def describe_difference(diff: Any) -> str:
    if isinstance(diff, list):
        return "; ".join(describe_difference(each) for each in diff)
    kind = diff[0]
    if kind == "add_table":
        return f"missing table {diff[1].name}"
    if kind in ("add_index", "remove_index"):
        index = diff[1]
        word = "missing" if kind == "add_index" else "unexpected"
        return f"{word} index {index.name} on {index.table.name}"
    if kind in ("add_column", "remove_column"):
        word = "missing" if kind == "add_column" else "unexpected"
        return f"{word} column {diff[2]}.{diff[3].name}"
    if kind in ("add_constraint", "remove_constraint", "add_fk", "remove_fk"):
        word = "missing" if kind.startswith("add") else "unexpected"
        constraint = diff[1]
        columns = ", ".join(column.name for column in constraint.columns)
        return f"{word} {constraint.__class__.__name__} on {constraint.table.name} ({columns})"
    if kind.startswith("modify_"):
        _, _schema, table, column, _existing, old, new = diff
        return f"column {table}.{column}: {kind.removeprefix('modify_')} is {old!r}, not {new!r}"
    return str(kind)


def adopt(connection: Connection, repair: bool) -> list[str]:
    """Stamp a database made before migrations at the initial revision, if its tables are that
    revision's. With `repair`, first create what it lacks (tables and indexes that later versions
    of webapp's create_all added); any other difference is refused. Returns what was created."""
    differences = _differences(connection)
    missing = [diff for diff in differences if _missing(diff)]
    other = [diff for diff in differences if not _missing(diff)]
    if other:
        raise SchemaError(
            "The database has tables but no schema revision (made before webapp had "
            f"migrations), and they differ from revision {INITIAL_REVISION} in ways webapp "
            f"will not change by itself: {'; '.join(map(describe_difference, other))}. "
            "Fix these by hand (or restore a backup), then run `flask --app webapp db upgrade`."
        )
    if missing and not repair:
        raise SchemaError(
            "The database was made before webapp had migrations and lacks part of revision "
            f"{INITIAL_REVISION} ({'; '.join(map(describe_difference, missing))}): "
            f"{UPGRADE_HINT}. It adds them and keeps the data."
        )
    missing_tables = {diff[1].name for diff in missing if diff[0] == "add_table"}
    created = []
    for table in initial_schema().sorted_tables:  # in dependency order
        if table.name in missing_tables:
            table.create(connection)  # with its indexes
            created.append(f"table {table.name}")
    for diff in missing:
        if diff[0] == "add_index" and diff[1].table.name not in missing_tables:
            diff[1].create(connection)
            created.append(f"index {diff[1].name}")
    command.stamp(alembic_config(connection), INITIAL_REVISION)
    return created


def upgrade(engine: Engine) -> tuple[SchemaState, SchemaState]:
    """Bring the database to the latest revision: create it when empty, adopt it when it was
    made before migrations, apply the missing revisions otherwise. Returns (before, after)."""
    with migration_connection(engine) as connection:
        before = read_state(connection)
        if before.unknown:
            raise SchemaError(str(before.problem()))
        if before.tables and not before.revisions:
            for created in adopt(connection, repair=True):
                log.info("adopting a database made before migrations: created %s", created)
        run_upgrade(connection)
        after = read_state(connection)
    return before, after


def ensure_schema(engine: Engine) -> None:
    """Make sure the schema is at the latest revision, or raise SchemaError.

    Only an empty database is migrated here (and a pre-migrations one stamped); both under the
    migration lock, so that of several processes starting at once exactly one does it and the
    others find it done.
    """
    state = state_of(engine)
    if state.at_head:
        return
    if not state.revisions:
        with migration_connection(engine) as connection:
            state = read_state(connection)  # someone may have done it while we waited
            if state.empty:
                run_upgrade(connection)
                log.info("empty database: created the schema at revision %s", state.head)
            elif state.tables and not state.revisions:
                adopt(connection, repair=False)
                log.info(
                    "database made before migrations: adopted at revision %s",
                    INITIAL_REVISION,
                )
            state = read_state(connection)
    problem = state.problem()
    if problem:
        raise SchemaError(problem)
