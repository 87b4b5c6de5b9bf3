import sys

from fercore.cli import main

sys.exit(main())
