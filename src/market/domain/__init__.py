"""Pure marketplace logic. Imports only the standard library and itself."""
