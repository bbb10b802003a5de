"""Output shapes shared by the entrypoints (HTTP, CLI, the operations wing): msgspec Structs built from domain
objects. They import the domain only."""
