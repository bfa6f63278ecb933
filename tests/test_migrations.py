"""Every revision upgrades from empty and from the revision before it, keeping the rows."""

from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from catalog.db import alembic_config, current_revision, get_engine, upgrade
from catalog.models import Base


def _revisions(url):
    script = ScriptDirectory.from_config(alembic_config(url))
    return [r.revision for r in reversed(list(script.walk_revisions()))]


def test_upgrade_from_empty_builds_the_models_schema(db_url):
    upgrade(db_url)
    tables = set(inspect(get_engine(db_url)).get_table_names())
    assert set(Base.metadata.tables) <= tables
    assert current_revision(db_url) == _revisions(db_url)[-1]


def test_upgrade_is_idempotent(db_url):
    upgrade(db_url)
    upgrade(db_url)
    assert current_revision(db_url) == _revisions(db_url)[-1]


def test_models_match_migrations(db_url):
    """Autogenerate finds nothing to do: the migrations build exactly the models' schema."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    upgrade(db_url)
    with get_engine(db_url).connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def _probe(engine, slug):
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO species (slug, latin_name, keywords, active, created_at) "
            f"VALUES ('{slug}', 'Piscis probus', '{{}}', true, CURRENT_TIMESTAMP)"
        ))


def test_each_revision_upgrades_from_the_previous_keeping_rows(db_url):
    """Walk the history one revision at a time, writing a row before each step."""
    engine = get_engine(db_url)
    revisions = _revisions(db_url)
    upgrade(db_url, revisions[0])
    _probe(engine, "probe-0")
    for i, revision in enumerate(revisions[1:], 1):
        upgrade(db_url, revision)
        _probe(engine, f"probe-{i}")
    upgrade(db_url)
    with engine.connect() as conn:
        slugs = conn.execute(text("SELECT slug FROM species ORDER BY slug")).scalars().all()
    assert slugs == [f"probe-{i}" for i in range(len(revisions))]
