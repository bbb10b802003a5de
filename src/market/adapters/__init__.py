"""Everything that touches the world, each behind a port."""
