"""Only here for the optional C extension `srl._difflib` (an exact, fast difflib ratio). Metadata is in
pyproject.toml. If the extension cannot be compiled, the package still installs and falls back to cydifflib."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("srl._difflib", ["src/srl/_difflib.c"], optional=True)])
