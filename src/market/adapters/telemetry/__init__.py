"""Port implementations that emit business events and metrics through OpenTelemetry."""
