"""`python -m fsmrun`: the same command line as the `fsmrun` script."""

from fsmrun.cli import main

if __name__ == "__main__":
    main()
