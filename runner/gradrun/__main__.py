"""``python -m gradrun``: the same command as ``gradrun``."""

from .cli import main

if __name__ == "__main__":
    main()
