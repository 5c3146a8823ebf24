"""Only here for the optional C extension `srl.rewards._difflib` (an exact, fast difflib ratio). Metadata is in
pyproject.toml. If the extension cannot be compiled, the package still installs and falls back to cydifflib."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("srl.rewards._difflib", ["src/srl/rewards/_difflib.c"], optional=True)])
