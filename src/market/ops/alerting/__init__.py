"""In-process alerting: the rules (`rules`, pure), readings of the service's metrics, the evaluation schedule
(`monitor`), and the notifiers."""
