"""`python -m market` is the `market` command."""

from market.cli import main

main()
