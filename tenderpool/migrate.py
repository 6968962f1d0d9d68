"""Alembic driven from TenderPool's settings (no alembic.ini).

upgrade, downgrade, current, check (like `alembic check`) and revision.
"""

from __future__ import annotations

from typing import Any, TextIO

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import Engine

from tenderpool.models import Base
from tenderpool.resources import resource_dir

FILE_TEMPLATE = "%%(year)d%%(month).2d%%(day).2d_%%(hour).2d%%(minute).2d_%%(rev)s_%%(slug)s"


def alembic_config(engine: Engine, *, stdout: TextIO | None = None) -> Config:
    cfg = Config(stdout=stdout) if stdout is not None else Config()
    cfg.set_main_option("script_location", str(resource_dir("migrations")))
    cfg.set_main_option("file_template", FILE_TEMPLATE)
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%"))
    return cfg


def is_search_index_object(name: str | None, type_: str, obj: Any) -> bool:
    """The full-text objects that the migrations create by hand on each engine (not in the models)."""
    if type_ == "table" and name is not None and name.startswith("notice_fts"):
        return True
    if (
        type_ == "column"
        and name == "tsv"
        and getattr(getattr(obj, "table", None), "name", "") == "notice_search"
    ):
        return True
    return type_ == "index" and name == "ix_notice_search_tsv"


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Create or upgrade the schema to ``revision``."""
    with engine.begin() as conn:
        cfg = alembic_config(engine)
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def downgrade(engine: Engine, revision: str = "-1") -> None:
    with engine.begin() as conn:
        cfg = alembic_config(engine)
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision(engine: Engine) -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config(engine)).get_current_head()


def schema_differences(engine: Engine) -> list[object]:
    """What autogenerate would add to reach the models (empty when migrations and models agree)."""
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={
                "compare_type": True,
                "render_as_batch": conn.dialect.name == "sqlite",
                "include_object": lambda obj, name, type_, _reflected, _other: (
                    not is_search_index_object(name, type_, obj)
                ),
            },
        )
        return list(compare_metadata(context, Base.metadata))


def revision(engine: Engine, message: str) -> None:
    """Autogenerate a new revision file (developers)."""
    with engine.begin() as conn:
        cfg = alembic_config(engine)
        cfg.attributes["connection"] = conn
        command.revision(cfg, message=message, autogenerate=True)
