"""``python -m harness.refstack node|gate|inspector ...``"""

import sys

from harness.refstack.main import main

sys.exit(main())
