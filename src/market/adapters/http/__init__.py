"""The Litestar app: controllers, schemas, auth, problem-details mapping."""
