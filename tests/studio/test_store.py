"""The store: migrations match the models, SQLite settings, project files, unreachable databases."""

from __future__ import annotations

import json
import stat

import pytest

from prefkit.studio.errors import StudioError
from prefkit.studio.store import current_revision, open_project


def test_new_project_is_migrated_to_head_and_matches_the_models(tmp_path):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from prefkit.studio.schema import Base

    store, created = open_project(tmp_path / "p", create=True)
    assert created
    assert current_revision(store.engine) == "0001"
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == [], f"the migrations and prefkit/studio/schema.py differ: {diff}"
    store.close()


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path):
    from sqlalchemy import text

    store, _ = open_project(tmp_path / "p", create=True)
    with store.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL
    store.close()


def test_project_files_and_reopen(tmp_path):
    store, _ = open_project(tmp_path / "p", create=True, settings={"overlap_k": 3})
    store.close()
    meta = json.loads((tmp_path / "p" / "project.json").read_text())
    assert meta["format"] == "prefkit.studio" and meta["name"] == "p"
    assert stat.S_IMODE((tmp_path / "p" / "secret.key").stat().st_mode) == 0o600
    again, created = open_project(tmp_path / "p", settings={"critique": "required"})
    assert not created
    project = again.project()
    assert (project.overlap_k, project.critique) == (3, "required")
    again.close()


def test_missing_project_is_refused(tmp_path):
    with pytest.raises(StudioError, match="no studio project here"):
        open_project(tmp_path / "nothing")
    assert not (tmp_path / "nothing").exists()


def test_unreachable_database_url_writes_nothing(tmp_path):
    url = f"sqlite:///{tmp_path}/missing-dir/deeper/studio.db"
    with pytest.raises(StudioError, match=r"cannot reach database sqlite:///.*unable to open database file"):
        open_project(tmp_path / "p", db=url, create=True)
    assert not (tmp_path / "p").exists()


def test_unknown_database_driver_is_a_clear_error(tmp_path):
    with pytest.raises(StudioError, match=r"cannot use database URL nosuchdb://user:\*\*\*@host/db"):
        open_project(tmp_path / "p", db="nosuchdb://user:secret@host/db", create=True)
    assert not (tmp_path / "p").exists()


def test_a_different_db_for_an_existing_project_is_refused(tmp_path):
    store, _ = open_project(tmp_path / "p", create=True)
    store.close()
    with pytest.raises(StudioError, match="this project's database is"):
        open_project(tmp_path / "p", db=f"sqlite:///{tmp_path}/other.db")


def test_bad_settings_are_refused(tmp_path):
    with pytest.raises(StudioError, match="overlap_k must be an integer"):
        open_project(tmp_path / "p", create=True, settings={"overlap_k": 0})
    with pytest.raises(StudioError, match="selection must be one of"):
        open_project(tmp_path / "q", create=True, settings={"selection": "smart"})
    with pytest.raises(StudioError, match="unknown project setting"):
        open_project(tmp_path / "r", create=True, settings={"overlapk": 2})
