"""The ``streamvec`` command line: worker, produce, search, embed, broker, demo, dead letters."""

from app.cli.commands import main

__all__ = ["main"]
