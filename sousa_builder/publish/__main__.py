"""`python -m sousa_builder.publish ...`: the `publish` subcommand of `sousa-builder`."""

import sys

try:
    from ..cli import main
except KeyboardInterrupt:  # Ctrl-C before the command line could handle it: nothing was started
    sys.stderr.write("sousa-builder publish: interrupted\n")
    sys.exit(130)

sys.exit(main(["publish", *sys.argv[1:]]))
