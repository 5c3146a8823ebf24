"""Old import paths of the public API, kept for one release (deprecated in 0.2, removed in 0.3).

The modules moved into subpackages (issue 10). `from srl.trainer import SRLTrainer` and the other documented old
paths below still work: importing one gives the module at its new home (the same module object) and a
`DeprecationWarning` naming that home. There is no file at the old path, so that the moved files keep their
history (`git log --follow`).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

MOVED = {
    "srl.trainer": "srl.training.trainer",
    "srl.config": "srl.training.config",
    "srl.stages": "srl.training.stages",
    "srl.trajectories": "srl.data.trajectories",
    "srl.instances": "srl.data.instances",
    "srl.evaluation.benchmarks": "srl.data.benchmarks",  # issue 23: teacher data reads benchmarks too
}


class _MovedModule(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds the old names of `MOVED` and loads them as the module at the new home."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        new = MOVED[spec.name]
        warnings.warn(f"{spec.name} moved to {new}; the old path is kept for one release", DeprecationWarning,
                      stacklevel=2)
        return importlib.import_module(new)

    def exec_module(self, module):
        pass  # already executed at its new home


def install() -> None:
    if not any(isinstance(finder, _MovedModule) for finder in sys.meta_path):
        sys.meta_path.append(_MovedModule())
