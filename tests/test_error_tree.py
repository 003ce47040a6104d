"""The error trees drawn in docstrings are the real ones: cairn-core's (cairn_core.contract.errors) names every
exception the lib defines, in or outside the `CairnError` tree; every `CairnError` subclass of a service is drawn
in that service's `errors.py` (or in core's, for a service without one), each under the module that defines it."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from types import ModuleType

import cairn_core
import pytest
from cairn_core.contract import errors as core_errors

SERVICES = ("cairn_core", "cairn_gateway", "cairn_query", "cairn_bff")


def _modules(name: str) -> list[ModuleType]:
    package = importlib.import_module(name)
    return [
        importlib.import_module(m.name)
        for m in pkgutil.walk_packages(package.__path__, f"{name}.")
        if not m.name.endswith("__main__")
    ]


def error_classes() -> list[type[BaseException]]:
    """Every `CairnError` subclass of every service, and every exception cairn-core defines."""
    for name in SERVICES:
        _modules(name)
    found, todo = [], [cairn_core.CairnError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo += cls.__subclasses__()
    for module in _modules("cairn_core"):
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, BaseException) and cls.__module__ == module.__name__ and cls not in found:
                found.append(cls)
    return found


def tree_of(module: str) -> str:
    """The docstring that must draw a class of `module`: its service's `errors.py`, else cairn-core's."""
    top = module.split(".")[0]
    try:
        return importlib.import_module(f"{top}.errors").__doc__ or ""
    except ModuleNotFoundError:
        return core_errors.__doc__ or ""


@pytest.mark.parametrize("cls", error_classes(), ids=lambda c: c.__name__)
def test_the_error_tree_names_every_class_and_its_module(cls: type) -> None:
    module = cls.__module__
    doc = tree_of(module)
    assert f"─ {cls.__name__} " in doc or cls is cairn_core.CairnError, cls
    if module not in (core_errors.__name__, f"{module.split('.')[0]}.errors"):
        assert f"({module})" in doc, module


def test_every_module_the_trees_name_exists() -> None:
    docs = [core_errors.__doc__ or "", importlib.import_module("cairn_gateway.errors").__doc__ or ""]
    named = [m for doc in docs for m in re.findall(r"\((cairn_[\w.]+)\)", doc)]
    assert len(named) >= 5
    for module in named:
        importlib.import_module(module)
