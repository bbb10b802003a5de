"""What the tests share, imported by name (fixtures stay in the conftest.py files): the fakes of every port and
the one test clock (`fakes`), the use cases wired to them (`world`), domain objects with defaults (`factories`),
rows put into a real database (`database`), the backup tests' helpers (`backups`), the PostgreSQL admin
connection (`postgres`), `market serve` in a subprocess (`live_server`) and the fake servers the app talks to
(`servers`)."""
