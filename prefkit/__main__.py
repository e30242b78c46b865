import sys

from prefkit.cli.main import main

sys.exit(main())
