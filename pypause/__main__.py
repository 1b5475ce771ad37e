import sys

from pypause.main import main

sys.exit(main())
