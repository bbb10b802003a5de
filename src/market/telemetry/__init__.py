"""Cross-cutting instrumentation: provider setup, the names registry, Sentry, log correlation."""
