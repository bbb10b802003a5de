"""The operations wing: what keeps the running service watched and recoverable, beside the marketplace.

- `alerting/`: the in-process alert rules (`rules`, pure), the readings of the service's own metrics, the
  evaluation schedule (`monitor`) and the e-mail and webhook notifiers;
- `backups/`: online backups of both engines and the `market backup …` commands (registered on `market`);
- `selftest`: the monitoring self-test behind `POST /api/v1/admin/test-monitoring` and the dashboard's buttons;
- `dashboard`: what the admin dashboard's pages show (the templates hold the markup).

The wing imports the domain, the application (use cases and ports), the settings and the telemetry registry;
it imports no adapter package except where the import contracts in pyproject.toml say so. HTTP reaches the
wing (its controllers import it), never the other way round.
"""
