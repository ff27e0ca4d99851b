"""`python -m sousa_builder.publish ...`: the `publish` subcommand of `sousa-builder`."""

import sys

from ..cli import main

sys.exit(main(["publish", *sys.argv[1:]]))
