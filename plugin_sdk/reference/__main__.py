"""``python -m plugin_sdk.reference``: write the reference."""

import sys

from plugin_sdk.reference import main

sys.exit(main())
