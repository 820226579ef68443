"""webapp's schema migrations (Alembic): env.py and versions/, run by webapp.schema.

Inside the package so an installed webapp carries them. There is no alembic.ini: webapp.schema
configures Alembic in Python and hands env.py the connection to migrate.
"""
