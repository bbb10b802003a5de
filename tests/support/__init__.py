"""What the tests share, imported by name (fixtures stay in the conftest.py files): one clock and the fakes of
every port (`fakes`), domain objects with defaults (`factories`), the PostgreSQL admin connection (`postgres`),
filling a real database (`database`), `market serve` in a subprocess (`live_server`) and the fake servers the
app talks to (`servers`)."""
