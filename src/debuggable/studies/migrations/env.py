"""Alembic environment of the studies' database.

Run programmatically by :meth:`debuggable.studies.db.StudyDatabase.migrate`, which
hands over an open connection in ``config.attributes["connection"]``. Developers can
also use the alembic command with this directory's ``alembic.ini``::

    alembic -c src/debuggable/studies/migrations/alembic.ini -x url=sqlite:////tmp/s.db revision --autogenerate -m "..."
"""

from alembic import context
from sqlalchemy import create_engine

from debuggable.studies.db import VERSION_TABLE, Base

config = context.config


def _run(connection) -> None:
    context.configure(connection=connection, target_metadata=Base.metadata, version_table=VERSION_TABLE,
                      render_as_batch=connection.dialect.name == "sqlite", compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("alembic: give the database with -x url=SQLALCHEMY_URL")
    engine = create_engine(url)
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()
