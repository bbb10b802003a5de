"""In-process alerting: readings of the service's metrics, the evaluation schedule, and the notifiers."""
