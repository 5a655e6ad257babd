"""``python -m gdgrade``: the instructor's commands (see ``gdgrade.course``)."""

import sys

from gdgrade.course import main

sys.exit(main())
