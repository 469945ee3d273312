"""`python -m mmshm` is the `mmshm` command."""
import sys

from mmshm.cli import main

sys.exit(main())
