"""`python -m exporter`: the same as the `serving-exporter` command."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
