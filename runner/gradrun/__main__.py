"""``python -m gradrun``: the same command as ``gradrun``."""

import os
import sys

# ``python -m`` puts the current directory first on sys.path (the ``gradrun`` command does not), so a
# checkout's json.py or yaml.py would be imported in place of the library gradrun imports later on.
# Modules imported before this line (numpy, with gradrun's package) are beyond its reach: for
# checkouts you do not trust, run ``gradrun`` or ``python -P -m gradrun`` (docs/security.md).
if sys.path and sys.path[0] in ("", os.getcwd()):
    del sys.path[0]

from .cli import main  # noqa: E402

if __name__ == "__main__":
    main()
