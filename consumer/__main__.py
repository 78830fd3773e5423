"""`python -m consumer`: the same entry point as the `kafka-twilio` console script."""

import sys

from consumer.cli import main

sys.exit(main())
