"""Use cases (one async function each) and the ports they need."""
