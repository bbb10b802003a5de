"""Database backups: `market backup create|list|verify|restore|prune|schedule`.

An archive is `market-<UTC YYYYMMDDTHHMMSSZ>.tar.gz` holding `manifest.json` (first) and the engine's payload:
a `pg_dump -Fc` archive on PostgreSQL, a copy made with SQLite's online backup API on SQLite.
`service.BackupService` has the operations, `schedule` the daily runs, `cli` the commands. This module imports
nothing, so that `market` starts fast whatever the command.
"""
