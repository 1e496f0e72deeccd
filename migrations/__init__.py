"""Alembic migrations: one history for SQLite and PostgreSQL. Run with ``carehub db upgrade``."""
