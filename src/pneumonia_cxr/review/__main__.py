"""`python -m pneumonia_cxr.review`: the review app (see `app.py`)."""

import sys

from .app import main

sys.exit(main())
