"""Piccolo tables, migrations, repositories and the unit of work, on PostgreSQL and SQLite."""
