"""`python -m app` is the `laas` command."""

from app.cli import main

main()
