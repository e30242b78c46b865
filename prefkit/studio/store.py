"""The project store: a SQLAlchemy engine on SQLite (WAL) or a server database, migrated by Alembic.

A project directory holds ``project.json`` (its name and database URL), ``secret.key`` (the
session-signing key, mode 0600) and, by default, ``studio.db``, an SQLite file in WAL mode
(readers work beside one writer; sqlite.org/wal.html). Every connection sets
``busy_timeout``, ``foreign_keys=ON`` and ``synchronous=FULL`` (a committed vote survives a
killed process and a power cut). Write transactions start with ``BEGIN IMMEDIATE`` (the
pysqlite recipe of the SQLAlchemy SQLite dialect docs), so two writers never interleave; on
other databases the writer locks the project row (``SELECT ... FOR UPDATE``) instead.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from prefkit._atomic import atomic_write_text
from prefkit.studio.errors import StudioError

PROJECT_FILE = "project.json"
SECRET_FILE = "secret.key"
SQLITE_FILE = "studio.db"
BUSY_TIMEOUT_MS = 15_000
FORMAT = "prefkit.studio"


def utcnow() -> datetime:
    """Naive UTC (SQLite has no time zones; every timestamp in the store is UTC)."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def masked(url: str) -> str:
    """A database URL with its password hidden, for messages."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparsable URL>"


@dataclass(frozen=True)
class ProjectFiles:
    """Where a project directory keeps its files."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / PROJECT_FILE

    @property
    def secret(self) -> Path:
        return self.root / SECRET_FILE

    @property
    def sqlite(self) -> Path:
        return self.root / SQLITE_FILE

    def default_url(self) -> str:
        return f"sqlite:///{self.sqlite.resolve()}"


def require_sqlalchemy() -> None:
    try:
        import alembic  # noqa: F401
        import sqlalchemy  # noqa: F401
    except ImportError as err:
        raise StudioError(
            f"prefkit studio needs its extra: pip install 'prefkit[studio]' ({err.name} is missing)"
        ) from err


def _sqlite_engine(url: str) -> Any:
    from sqlalchemy import create_engine, event

    engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself (below)
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        immediate = connection.get_execution_options().get("studio_write", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def create_db_engine(url: str) -> Any:
    """An engine for ``url``, checked by connecting once; an unreachable database is a
    :class:`StudioError` naming the URL (password hidden) and the driver's reason."""
    require_sqlalchemy()
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

    try:
        if url.startswith("sqlite"):
            engine = _sqlite_engine(url)
        else:
            engine = create_engine(url, pool_pre_ping=True)
    except (ArgumentError, NoSuchModuleError, ImportError) as err:
        raise StudioError(f"cannot use database URL {masked(url)}: {err}") from err
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as err:
        engine.dispose()
        reason = str(getattr(err, "orig", err)).strip().splitlines()[0]
        raise StudioError(f"cannot reach database {masked(url)}: {reason}") from err
    return engine


def upgrade(engine: Any) -> None:
    """Bring the schema to the newest Alembic revision (a no-op when it is current)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "head")


def current_revision(engine: Any) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


class Store:
    """An open project: the engine plus short read and write transactions."""

    def __init__(self, engine: Any, files: ProjectFiles | None, project_id: int) -> None:
        self.engine = engine
        self.files = files
        self.project_id = project_id

    @contextmanager
    def write(self) -> Iterator[Any]:
        """A write transaction (``BEGIN IMMEDIATE`` on SQLite; the project row locked elsewhere),
        committed on exit, rolled back on any error."""
        from sqlalchemy import select
        from sqlalchemy.orm import Session

        from prefkit.studio.schema import Project

        with self.engine.connect().execution_options(studio_write=True) as conn, \
                Session(bind=conn, expire_on_commit=False) as session, session.begin():
            if self.engine.dialect.name != "sqlite":
                session.execute(select(Project.id).where(Project.id == self.project_id).with_for_update())
            yield session

    @contextmanager
    def read(self) -> Iterator[Any]:
        from sqlalchemy.orm import Session

        with Session(bind=self.engine, expire_on_commit=False) as session, session.begin():
            yield session

    def project(self) -> Any:
        from prefkit.studio.schema import Project

        with self.read() as s:
            return s.get(Project, self.project_id)

    def update_project(self, **settings: Any) -> Any:
        """Change project settings (validated); returns the updated project."""
        from prefkit.studio.schema import Project

        check_settings(settings)
        with self.write() as s:
            project = s.get(Project, self.project_id)
            for key, value in settings.items():
                setattr(project, key, value)
            return project

    def secret_key(self) -> str:
        if self.files is None:
            raise StudioError("this store has no project directory (no session secret)")
        return self.files.secret.read_text(encoding="utf-8").strip()

    def close(self) -> None:
        self.engine.dispose()


SETTING_CHOICES = {
    "critique": ("off", "optional", "required"),
    "selection": ("random", "bald", "variance"),
    "ensemble_kind": ("bt", "gpm"),
    "render": ("markdown", "text"),
}
SETTING_RANGES = {"overlap_k": (1, 100), "refit_every": (1, 100_000), "ensemble_size": (2, 64),
                  "lock_minutes": (1, 7 * 24 * 60)}
SETTING_FLAGS = {"allow_tie", "allow_both_bad"}
SETTING_TEXT = {"guideline_md", "name"}


def check_settings(settings: dict[str, Any]) -> None:
    from prefkit.studio.security import MAX_GUIDELINE_CHARS

    for key, value in settings.items():
        if key in SETTING_CHOICES:
            if value not in SETTING_CHOICES[key]:
                raise StudioError(f"{key} must be one of {', '.join(SETTING_CHOICES[key])}, got {value!r}",
                                  field=key)
        elif key in SETTING_RANGES:
            low, high = SETTING_RANGES[key]
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise StudioError(f"{key} must be an integer in [{low}, {high}], got {value!r}", field=key)
        elif key in SETTING_FLAGS:
            if not isinstance(value, bool):
                raise StudioError(f"{key} must be true or false, got {value!r}", field=key)
        elif key in SETTING_TEXT:
            if not isinstance(value, str) or len(value) > MAX_GUIDELINE_CHARS:
                raise StudioError(f"{key} must be text of at most {MAX_GUIDELINE_CHARS} characters", field=key)
        elif key == "seed":
            if not isinstance(value, int):
                raise StudioError(f"seed must be an integer, got {value!r}", field=key)
        else:
            raise StudioError(f"unknown project setting {key!r}", field=key)


def open_project(directory: str | os.PathLike[str], *, db: str | None = None, create: bool = False,
                 settings: dict[str, Any] | None = None) -> tuple[Store, bool]:
    """Open (or, with ``create``, start) the project in ``directory``.

    Returns ``(store, created)``. A new project writes ``project.json`` and ``secret.key`` only
    after its database has been reached and migrated, so a failed start leaves nothing behind.
    """
    require_sqlalchemy()
    files = ProjectFiles(Path(directory))
    config_path = files.config
    if config_path.exists():
        try:
            meta = json.loads(config_path.read_text(encoding="utf-8"))
            if meta.get("format") != FORMAT:
                raise ValueError("not a studio project file")
        except (OSError, ValueError) as err:
            raise StudioError(f"unreadable studio project file: {err}", file=str(config_path)) from err
        stored_url = meta.get("db") or files.default_url()
        if db is not None and db != stored_url:
            raise StudioError(
                f"this project's database is {masked(stored_url)}, not {masked(db)} "
                f"(edit {config_path} to move it)",
                file=str(config_path),
            )
        engine = create_db_engine(stored_url)
        upgrade(engine)
        store = Store(engine, files, _project_id(engine, meta["name"], config_path))
        if settings:
            store.update_project(**settings)
        return store, False
    if not create:
        raise StudioError(
            "no studio project here (start one with: prefkit studio --project DIR --tasks FILE)",
            file=str(directory),
        )
    if files.root.exists() and not files.root.is_dir():
        raise StudioError("exists and is not a directory", file=str(directory))
    name = files.root.resolve().name or "studio"
    settings = dict(settings or {})
    check_settings(settings)
    created_dir = not files.root.exists()
    files.root.mkdir(parents=True, exist_ok=True)
    try:
        url = db or files.default_url()
        engine = create_db_engine(url)
        upgrade(engine)
        project_id = _create_project(engine, name, settings)
        fd = os.open(files.secret, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(secrets.token_urlsafe(48) + "\n")
        atomic_write_text(config_path, json.dumps({"format": FORMAT, "version": 1, "name": name,
                                                   "db": db}, indent=2) + "\n")
    except BaseException:
        if created_dir:
            import shutil

            shutil.rmtree(files.root, ignore_errors=True)
        raise
    return Store(engine, files, project_id), True


def _create_project(engine: Any, name: str, settings: dict[str, Any]) -> int:
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from prefkit.studio.schema import Project

    with Session(engine) as s, s.begin():
        existing = s.scalar(select(Project).where(Project.name == name))
        if existing is not None:
            raise StudioError(f"the database already holds a project named {name!r}")
        project = Project(name=name, created_at=utcnow(), **{
            "guideline_md": "", "allow_tie": True, "allow_both_bad": True, "critique": "optional",
            "overlap_k": 1, "selection": "random", "refit_every": 20, "ensemble_kind": "bt",
            "ensemble_size": 8, "render": "markdown", "lock_minutes": 60, "seed": 0, **settings})
        s.add(project)
        s.flush()
        return project.id


def _project_id(engine: Any, name: str, config_path: Path) -> int:
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from prefkit.studio.schema import Project

    with Session(engine) as s:
        project_id = s.scalar(select(Project.id).where(Project.name == name))
    if project_id is None:
        raise StudioError(f"the database has no project named {name!r}", file=str(config_path))
    return project_id
