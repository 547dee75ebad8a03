"""`python -m tinylm ...` runs the command line."""
import sys

from tinylm.cli import main

sys.exit(main())
