"""`python -m app` is the `laas` command."""

from app.cli.main import main

if __name__ == "__main__":  # not when a spawned child process imports this module
    main(prog_name="laas")  # usage lines, and completion via _LAAS_COMPLETE
