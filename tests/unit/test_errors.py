"""Every error class streamvec defines derives from one root, so callers can catch StreamvecError."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

from index.exceptions import StreamvecError

PACKAGES = ("index", "tables", "agents", "app")
# An error class in a file another branch owns; it becomes an XPASS (a failure) once it derives from the root.
def _error_classes() -> list[str]:
    found = []
    for package_name in PACKAGES:
        package = importlib.import_module(package_name)
        for module_info in pkgutil.walk_packages(package.__path__, prefix=f"{package_name}."):
            if module_info.name.endswith("__main__"):
                continue
            module = importlib.import_module(module_info.name)
            for name, value in vars(module).items():
                if inspect.isclass(value) and issubclass(value, BaseException) and value.__module__ == module.__name__:
                    found.append(f"{module.__name__}.{name}")
    return sorted(found)


@pytest.mark.parametrize("qualified", _error_classes())
def test_an_error_class_derives_from_the_root(qualified: str) -> None:
    module_name, _, class_name = qualified.rpartition(".")
    assert issubclass(getattr(importlib.import_module(module_name), class_name), StreamvecError)
