"""Fake servers the app talks to in tests: an SMTP sink, a webhook receiver, OTLP and Sentry receivers."""
