"""search: facets in the full-text index, and indexes the search reads alone

Revision ID: 50827c982446
Revises: c0a5e7b1d203
Create Date: 2026-11-28 13:00:00

Each notice's *facets* (its départements, the prefixes of its CPV codes, its status, the UTC day of
its deadline, its value, contract type, whether it is featured, rejected or merged) become tokens of
the full-text index, so that a search with filters is one look-up of the index (tenderpool.notices.search):

* SQLite: ``notice_fts`` gets a second column, ``facets`` (rebuilt: FTS5 cannot add a column); the
  view ``notice_facets`` says what it holds for each notice.
* PostgreSQL: ``notice_search.tsv`` also holds them, as lexemes starting with "#" (which no word of
  a text can give); the function ``notice_facets(id)`` computes them.

Triggers on notices, notice_departments and notice_cpv keep them current whoever changes a notice.

The composite indexes let the search walk notices by date and check the status, the other date, a
CPV prefix or a département from the index alone, without reading the wide notices rows.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "50827c982446"
down_revision: str | None = "c0a5e7b1d203"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# --------------------------------------------------------------------------- SQLite

SQLITE_FACETS_VIEW = """
CREATE VIEW notice_facets (notice_id, facets) AS
SELECT n.id,
    'st' || n.status
    || CASE WHEN n.deadline_at IS NULL THEN ' dlnone' ELSE ' dl' || strftime('%Y%m%d', n.deadline_at) END
    || CASE WHEN n.is_featured THEN ' featured' ELSE '' END
    || CASE WHEN n.is_rejected THEN ' rejected' ELSE '' END
    || CASE WHEN n.merged_into_id IS NOT NULL THEN ' merged' ELSE '' END
    || coalesce(' type' || n.contract_type, '')
    || CASE
        WHEN n.estimated_value IS NULL THEN ''
        WHEN n.estimated_value < 0 THEN ' negvalue'
        ELSE ' val' || char(97 + length(CAST(CAST(n.estimated_value AS INTEGER) AS TEXT)))
            || CAST(CAST(n.estimated_value AS INTEGER) AS TEXT)
    END
    || coalesce((SELECT ' ' || group_concat('dep' || d.department, ' ')
                 FROM notice_departments AS d WHERE d.notice_id = n.id), '')
    || coalesce((SELECT ' ' || group_concat(DISTINCT 'cpv' || substr(c.cpv, 1, k.n))
                 FROM notice_cpv AS c,
                      (SELECT 2 AS n UNION ALL SELECT 3 UNION ALL SELECT 4 UNION ALL SELECT 5
                       UNION ALL SELECT 6 UNION ALL SELECT 7 UNION ALL SELECT 8) AS k
                 WHERE c.notice_id = n.id), '')
FROM notices AS n
"""


def _sqlite_refresh(notice_id: str) -> str:
    """The trigger statement that rewrites the facets of notice ``notice_id`` (NEW.x or OLD.x)."""
    facets = f"coalesce((SELECT facets FROM notice_facets WHERE notice_id = {notice_id}), '')"  # noqa: S608
    return f"UPDATE notice_fts SET facets = {facets} WHERE rowid = {notice_id};"  # noqa: S608


SQLITE_TRIGGERS = {
    "notice_facets_notice_update": (
        "AFTER UPDATE OF status, deadline_at, estimated_value, is_featured, contract_type, is_rejected, "
        "merged_into_id ON notices "
        "WHEN OLD.status IS NOT NEW.status OR OLD.deadline_at IS NOT NEW.deadline_at "
        "OR OLD.estimated_value IS NOT NEW.estimated_value OR OLD.is_featured IS NOT NEW.is_featured "
        "OR OLD.contract_type IS NOT NEW.contract_type OR OLD.is_rejected IS NOT NEW.is_rejected "
        "OR OLD.merged_into_id IS NOT NEW.merged_into_id",
        _sqlite_refresh("NEW.id"),
    ),
    "notice_facets_notice_delete": (
        "AFTER DELETE ON notices",
        "DELETE FROM notice_fts WHERE rowid = OLD.id;",
    ),
    "notice_facets_department_insert": (
        "AFTER INSERT ON notice_departments",
        _sqlite_refresh("NEW.notice_id"),
    ),
    "notice_facets_department_delete": (
        "AFTER DELETE ON notice_departments",
        _sqlite_refresh("OLD.notice_id"),
    ),
    "notice_facets_department_update": (
        "AFTER UPDATE OF notice_id, department ON notice_departments",
        _sqlite_refresh("OLD.notice_id") + " " + _sqlite_refresh("NEW.notice_id"),
    ),
    "notice_facets_cpv_insert": ("AFTER INSERT ON notice_cpv", _sqlite_refresh("NEW.notice_id")),
    "notice_facets_cpv_delete": ("AFTER DELETE ON notice_cpv", _sqlite_refresh("OLD.notice_id")),
    "notice_facets_cpv_update": (
        "AFTER UPDATE OF notice_id, cpv ON notice_cpv",
        _sqlite_refresh("OLD.notice_id") + " " + _sqlite_refresh("NEW.notice_id"),
    ),
}


def _sqlite_upgrade() -> None:
    op.execute(SQLITE_FACETS_VIEW)
    op.execute(
        "CREATE VIRTUAL TABLE notice_fts_facets USING fts5(content, facets, "
        "tokenize='unicode61 remove_diacritics 2')"
    )
    op.execute(
        "INSERT INTO notice_fts_facets (rowid, content, facets) "
        "SELECT f.rowid, f.content, coalesce(v.facets, '') "
        "FROM notice_fts AS f LEFT JOIN notice_facets AS v ON v.notice_id = f.rowid"
    )
    op.execute("DROP TABLE notice_fts")
    op.execute("ALTER TABLE notice_fts_facets RENAME TO notice_fts")
    op.execute("INSERT INTO notice_fts (notice_fts) VALUES ('optimize')")
    for name, (when, body) in SQLITE_TRIGGERS.items():
        op.execute(f"CREATE TRIGGER {name} {when} BEGIN {body} END")


def _sqlite_downgrade() -> None:
    for name in SQLITE_TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {name}")
    op.execute(
        "CREATE VIRTUAL TABLE notice_fts_text USING fts5(content, tokenize='unicode61 remove_diacritics 2')"
    )
    op.execute("INSERT INTO notice_fts_text (rowid, content) SELECT rowid, content FROM notice_fts")
    op.execute("DROP TABLE notice_fts")
    op.execute("ALTER TABLE notice_fts_text RENAME TO notice_fts")
    op.execute("DROP VIEW IF EXISTS notice_facets")


# --------------------------------------------------------------------------- PostgreSQL

PG_FACETS_FUNCTION = """
CREATE FUNCTION notice_facets(nid integer) RETURNS tsvector LANGUAGE sql STABLE AS $$
SELECT array_to_tsvector(
    ARRAY[
        '#st' || n.status,
        CASE WHEN n.deadline_at IS NULL THEN '#dlnone'
             ELSE '#dl' || to_char(n.deadline_at AT TIME ZONE 'UTC', 'YYYYMMDD') END
    ]
    || CASE WHEN n.is_featured THEN ARRAY['#featured'] ELSE '{}'::text[] END
    || CASE WHEN n.is_rejected THEN ARRAY['#rejected'] ELSE '{}'::text[] END
    || CASE WHEN n.merged_into_id IS NOT NULL THEN ARRAY['#merged'] ELSE '{}'::text[] END
    || CASE WHEN n.contract_type IS NULL THEN '{}'::text[] ELSE ARRAY['#type' || n.contract_type] END
    || CASE
        WHEN n.estimated_value IS NULL THEN '{}'::text[]
        WHEN n.estimated_value < 0 THEN ARRAY['#negvalue']
        ELSE ARRAY['#val' || chr(97 + length(trunc(n.estimated_value)::bigint::text))
                   || trunc(n.estimated_value)::bigint::text]
    END
    || ARRAY(SELECT '#dep' || d.department FROM notice_departments AS d WHERE d.notice_id = n.id)
    || ARRAY(SELECT DISTINCT '#cpv' || left(c.cpv, k)
             FROM notice_cpv AS c, generate_series(2, 8) AS k WHERE c.notice_id = n.id)
)
FROM notices AS n WHERE n.id = nid
$$
"""

# The facet lexemes of a tsvector: the ones starting with "#".
PG_FACETS_OF = """
CREATE FUNCTION notice_facets_of(tsv tsvector) RETURNS text[] LANGUAGE sql IMMUTABLE AS $$
SELECT ARRAY(SELECT lexeme FROM unnest(tsv) WHERE left(lexeme, 1) = '#' ORDER BY lexeme)
$$
"""

PG_REFRESH_FUNCTION = """
CREATE FUNCTION notice_search_refresh_facets(nid integer) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    wanted tsvector;
BEGIN
    -- A notice being written has no notice_search row yet: its facets come with it (the trigger
    -- on notice_search), nothing to compute here.
    IF NOT EXISTS (SELECT 1 FROM notice_search WHERE notice_id = nid) THEN
        RETURN;
    END IF;
    wanted := coalesce(notice_facets(nid), ''::tsvector);
    UPDATE notice_search AS s
    SET tsv = ts_delete(s.tsv, notice_facets_of(s.tsv)) || wanted
    WHERE s.notice_id = nid AND notice_facets_of(s.tsv) IS DISTINCT FROM tsvector_to_array(wanted);
END
$$
"""

PG_TSV_FUNCTION = """
CREATE OR REPLACE FUNCTION notice_search_tsv() RETURNS trigger AS $$
BEGIN
    NEW.tsv := to_tsvector('french', unaccent(NEW.document))
        || coalesce(notice_facets(NEW.notice_id), ''::tsvector);
    RETURN NEW;
END
$$ LANGUAGE plpgsql
"""

PG_TSV_FUNCTION_BEFORE = """
CREATE OR REPLACE FUNCTION notice_search_tsv() RETURNS trigger AS $$
BEGIN
    NEW.tsv := to_tsvector('french', unaccent(NEW.document));
    RETURN NEW;
END
$$ LANGUAGE plpgsql
"""

PG_TRIGGER_FUNCTIONS = """
CREATE FUNCTION notice_facets_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'notices' THEN
        PERFORM notice_search_refresh_facets(NEW.id);
        RETURN NULL;
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM notice_search_refresh_facets(OLD.notice_id);
    END IF;
    IF TG_OP IN ('UPDATE', 'INSERT') AND (TG_OP = 'INSERT' OR NEW.notice_id <> OLD.notice_id) THEN
        PERFORM notice_search_refresh_facets(NEW.notice_id);
    END IF;
    RETURN NULL;
END
$$
"""

PG_TRIGGERS = {
    "notice_facets_notice_update": (
        "notices",
        "AFTER UPDATE OF status, deadline_at, estimated_value, is_featured, contract_type, is_rejected, "
        "merged_into_id ON notices FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status "
        "OR OLD.deadline_at IS DISTINCT FROM NEW.deadline_at "
        "OR OLD.estimated_value IS DISTINCT FROM NEW.estimated_value "
        "OR OLD.is_featured IS DISTINCT FROM NEW.is_featured "
        "OR OLD.contract_type IS DISTINCT FROM NEW.contract_type "
        "OR OLD.is_rejected IS DISTINCT FROM NEW.is_rejected "
        "OR OLD.merged_into_id IS DISTINCT FROM NEW.merged_into_id)",
    ),
    "notice_facets_department": (
        "notice_departments",
        "AFTER INSERT OR DELETE OR UPDATE OF notice_id, department ON notice_departments FOR EACH ROW",
    ),
    "notice_facets_cpv": (
        "notice_cpv",
        "AFTER INSERT OR DELETE OR UPDATE OF notice_id, cpv ON notice_cpv FOR EACH ROW",
    ),
}


def _pg_upgrade() -> None:
    op.execute(PG_FACETS_FUNCTION)
    op.execute(PG_FACETS_OF)
    op.execute(PG_REFRESH_FUNCTION)
    op.execute(PG_TSV_FUNCTION)
    op.execute(PG_TRIGGER_FUNCTIONS)
    for name, (_, when) in PG_TRIGGERS.items():
        op.execute(f"CREATE TRIGGER {name} {when} EXECUTE FUNCTION notice_facets_changed()")
    # The notices already indexed get their facets (the text part of tsv is kept as it is).
    op.execute("UPDATE notice_search SET tsv = tsv || coalesce(notice_facets(notice_id), ''::tsvector)")


def _pg_downgrade() -> None:
    for name, (table, _) in PG_TRIGGERS.items():
        op.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
    op.execute("DROP FUNCTION IF EXISTS notice_facets_changed()")
    op.execute(PG_TSV_FUNCTION_BEFORE)
    op.execute("UPDATE notice_search SET tsv = ts_delete(tsv, notice_facets_of(tsv))")
    op.execute("DROP FUNCTION IF EXISTS notice_search_refresh_facets(integer)")
    op.execute("DROP FUNCTION IF EXISTS notice_facets_of(tsvector)")
    op.execute("DROP FUNCTION IF EXISTS notice_facets(integer)")


# --------------------------------------------------------------------------- both


def upgrade() -> None:
    with op.batch_alter_table("notice_cpv", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_notice_cpv_cpv"))
        batch_op.create_index("ix_notice_cpv_cpv", ["cpv", "notice_id"], unique=False)

    with op.batch_alter_table("notice_departments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_notice_departments_department"))
        batch_op.create_index("ix_notice_departments_department", ["department", "notice_id"], unique=False)

    with op.batch_alter_table("notices", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_notices_deadline_at"))
        batch_op.drop_index(batch_op.f("ix_notices_published_at"))
        batch_op.drop_index(batch_op.f("ix_notices_is_rejected"))
        batch_op.create_index("ix_notices_is_rejected", ["is_rejected", "id"], unique=False)
        batch_op.create_index(
            "ix_notices_deadline_keys", ["deadline_at", "id", "published_at", "status"], unique=False
        )
        batch_op.create_index(
            "ix_notices_published_keys", ["published_at", "id", "deadline_at", "status"], unique=False
        )

    if op.get_bind().dialect.name == "sqlite":
        _sqlite_upgrade()
    else:
        _pg_upgrade()


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _sqlite_downgrade()
    else:
        _pg_downgrade()

    with op.batch_alter_table("notices", schema=None) as batch_op:
        batch_op.drop_index("ix_notices_published_keys")
        batch_op.drop_index("ix_notices_deadline_keys")
        batch_op.drop_index("ix_notices_is_rejected")
        batch_op.create_index(batch_op.f("ix_notices_is_rejected"), ["is_rejected"], unique=False)
        batch_op.create_index(batch_op.f("ix_notices_published_at"), ["published_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_notices_deadline_at"), ["deadline_at"], unique=False)

    with op.batch_alter_table("notice_departments", schema=None) as batch_op:
        batch_op.drop_index("ix_notice_departments_department")
        batch_op.create_index(batch_op.f("ix_notice_departments_department"), ["department"], unique=False)

    with op.batch_alter_table("notice_cpv", schema=None) as batch_op:
        batch_op.drop_index("ix_notice_cpv_cpv")
        batch_op.create_index(batch_op.f("ix_notice_cpv_cpv"), ["cpv"], unique=False)
