"""Doctests: pytest collects the examples in the docstrings of `srl` modules that have some (`>>>`). Only those
modules are imported at collection, and none of them imports TRL, vLLM or a model (tests/test_layout.py checks)."""

import os

from _pytest.doctest import DoctestModule

PACKAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "src", "srl")


def has_doctests(path: str) -> bool:
    with open(path, encoding="utf-8") as f:
        return ">>>" in f.read()


def pytest_collect_file(file_path, parent):
    path = str(file_path)
    if path.endswith(".py") and path.startswith(PACKAGE + os.sep) and has_doctests(path):
        return DoctestModule.from_parent(parent, path=file_path)
    return None
