"""A candidate module whose import kills the process (a broken C extension
looks like this).  Only ever loaded by spec, in a worker process."""

import os

os._exit(3)
