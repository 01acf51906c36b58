"""``python -m cosmos_cli`` (what torchrun launches) runs the same CLI as the console script."""

import sys

from cosmos_cli.cli import main

sys.exit(main())
