"""Password hashing and bearer tokens."""
