"""streamvec's composition layer: settings, the Faust app, HTTP views, CLI, local brokers.

``faust -A app worker`` works: the ``app`` attribute is built on first access from the
``STREAMVEC_*`` environment, so importing this package has no side effects.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "app":
        from app.factory import create_app
        from app.settings import Settings

        built = create_app(Settings.from_env()).app
        globals()["app"] = built
        return built
    raise AttributeError(f"module 'app' has no attribute {name!r}")
