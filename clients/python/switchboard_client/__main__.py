"""`python -m switchboard_client`: see switchboard_client/cli.py."""

import sys

from switchboard_client.cli import main

sys.exit(main())
