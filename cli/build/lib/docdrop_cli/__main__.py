import sys

from docdrop_cli.main import main

sys.exit(main())
