"""Entry point of `sparkctl-client`."""

import sys

from sparkctl_client.cli import main

if __name__ == "__main__":
    sys.exit(main())
