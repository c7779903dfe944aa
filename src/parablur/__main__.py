"""``python -m parablur``: the same as the ``parablur`` command."""

from .cli import run

if __name__ == "__main__":
    run()
