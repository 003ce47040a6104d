"""The error tree drawn in `cairn_core._errors` is the real one: every `CairnError` class of every service is in
it, under the module that defines it."""

from __future__ import annotations

import importlib
import pkgutil
import re

import cairn_core
import pytest
from cairn_core import _errors

SERVICES = ("cairn_core", "cairn_gateway", "cairn_query", "cairn_bff")


def all_error_classes() -> list[type[cairn_core.CairnError]]:
    for name in SERVICES:
        package = importlib.import_module(name)
        for module in pkgutil.walk_packages(package.__path__, f"{name}."):
            if not module.name.endswith("__main__"):
                importlib.import_module(module.name)
    found, todo = [], [cairn_core.CairnError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo += cls.__subclasses__()
    return found


@pytest.mark.parametrize("cls", all_error_classes(), ids=lambda c: c.__name__)
def test_the_error_tree_docstring_names_every_class_and_its_module(cls: type) -> None:
    doc = _errors.__doc__ or ""
    assert f"─ {cls.__name__} " in doc or cls is cairn_core.CairnError, cls
    module = cls.__module__
    if module.startswith("cairn_core."):
        # A class of the lib itself: named by its file, when it lives outside _errors.py.
        assert module == _errors.__name__ or f"`{module.rsplit('.', 1)[1]}.py`" in doc, module
    else:
        assert f"({module})" in doc, module


def test_every_module_the_tree_names_exists() -> None:
    doc = _errors.__doc__ or ""
    named = [f"cairn_core.{m}" for m in re.findall(r"`(_\w+)\.py`", doc)]
    named += re.findall(r"\((cairn_[\w.]+)\)", doc)
    assert len(named) >= 5
    for module in named:
        importlib.import_module(module)
