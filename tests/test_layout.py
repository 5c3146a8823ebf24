"""The package layout (issue 10): the tree reads as the pipeline. Every `srl` module's imports are read with
`ast` (module-level and function-level alike, without importing anything) and checked:

- no import cycle between modules;
- library code never imports the CLI (`srl.cli`);
- dependencies point down the pipeline: a module imports only its own layer and the layers before it
  (`LAYERS`), except the few imports listed in `UPWARD_EXCEPTIONS`, each with its reason;
- no module is longer than `MAX_LINES` lines (exceptions in `LONG_MODULES`, with their reason);
- one atomic writer and one YAML reader: only `srl.io` renames files into place or parses YAML;
- no module imports another module's private (`_name`) names (issue 20);
- the data formats are named in one place, `srl.data.formats`, and the CLI's choices come from it (issue 20).
"""

import ast
import os
import re

import pytest

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
PACKAGE = os.path.join(SRC, "srl")

# The pipeline, top to bottom. A module belongs to the first layer with a prefix of its name.
LAYERS = [
    ("foundations", ("srl", "srl._moved", "srl.errors", "srl.json_text", "srl.io", "srl.console", "srl.options")),
    ("data", ("srl.data",)),
    ("rewards", ("srl.rewards",)),
    ("models", ("srl.models", "srl.tiny", "srl.precision")),
    ("generation", ("srl.generation",)),
    ("training and evaluation", ("srl.training", "srl.evaluation")),
    ("teacher data, export to other engines", ("srl.teacher", "srl.export")),
    ("experiments: methods compared", ("srl.experiments",)),
    ("agents: sandbox, task suite, agent runs", ("srl.agent",)),
    ("cli", ("srl.cli",)),
]
# (importer, imported): an import against the pipeline order, and why it is there.
UPWARD_EXCEPTIONS: dict[tuple[str, str], str] = {}
MAX_LINES = 400
LONG_MODULES: dict[str, str] = {  # module -> why it may be longer than MAX_LINES
    "srl.io": "every file the package reads or writes, and the checks before writing: one home (issue 20)",
}


def _module_files() -> dict[str, str]:
    modules = {}
    for root, _, files in os.walk(PACKAGE):
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(root, name)
            parts = os.path.relpath(path, SRC)[:-3].split(os.sep)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


MODULES = _module_files()


def _imports(module: str, path: str) -> set[str]:
    """The `srl` modules `module` imports anywhere in its code (`from srl.x import y` counts as srl.x.y when y
    is a module, else as srl.x). Importing a module also runs its parent packages, so those count too, except
    the importer's own ancestors (already being imported)."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        else:
            continue
        for name in names:
            if name != "srl" and not name.startswith("srl."):
                continue
            parts = name.split(".")
            for i in range(1, len(parts) + 1):
                target = ".".join(parts[:i])
                if target in MODULES and not module.startswith(target + ".") and target != module:
                    found.add(target)
    return found


GRAPH = {module: _imports(module, path) for module, path in MODULES.items()}


def _layer(module: str) -> int:
    for index, (_, prefixes) in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes if p != "srl") or module == "srl":
            return index
    raise AssertionError(f"{module} is in no layer of LAYERS: add it")


def test_the_walk_sees_the_package():
    assert {"srl.io", "srl.data.steps", "srl.rewards", "srl.training.trainer", "srl.cli"} <= set(MODULES)
    assert "srl.data.trajectories" in GRAPH["srl.data.build"]
    assert "srl.rewards.text_similarity" in GRAPH["srl.rewards"]  # `from srl.rewards.text_similarity import ...`


def test_no_import_cycle():
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str):
        state[module] = 1
        path.append(module)
        for target in sorted(GRAPH[module]):
            if state.get(target) == 1:
                cycle = path[path.index(target):] + [target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        path.pop()
        state[module] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module)


def test_library_code_never_imports_the_cli():
    offenders = sorted((m, t) for m, targets in GRAPH.items() if not (m == "srl.cli" or m.startswith("srl.cli."))
                       for t in targets if t == "srl.cli" or t.startswith("srl.cli."))
    assert not offenders, offenders


def test_dependencies_point_down_the_pipeline():
    upward = []
    for module, targets in GRAPH.items():
        for target in targets:
            if _layer(target) > _layer(module) and (module, target) not in UPWARD_EXCEPTIONS:
                upward.append(f"{module} ({LAYERS[_layer(module)][0]}) imports {target} ({LAYERS[_layer(target)][0]})")
    assert not upward, "\n".join(sorted(upward))
    stale = [pair for pair in UPWARD_EXCEPTIONS if pair[1] not in GRAPH.get(pair[0], ())]
    assert not stale, f"exceptions that no longer happen, remove them: {stale}"


def test_training_and_evaluation_are_independent():
    crossing = sorted((m, t) for m, targets in GRAPH.items() for t in targets
                      if {m.split(".")[:2][-1], t.split(".")[:2][-1]} == {"training", "evaluation"})
    assert not crossing, crossing


def test_modules_are_short():
    long = {}
    for module, path in MODULES.items():
        with open(path, encoding="utf-8") as f:
            lines = sum(1 for _ in f)
        if lines > MAX_LINES and module not in LONG_MODULES:
            long[module] = lines
    assert not long, f"over {MAX_LINES} lines (split them, or list them in LONG_MODULES with a reason): {long}"


# Modules that may fsync (never rename) because they append to a log rather than write whole files.
APPEND_LOGS = {"srl.teacher.journal": "the resumable teacher journal: one fsynced line per answered call"}


def test_one_atomic_writer_and_one_yaml_reader():
    pattern = re.compile(r"\bos\.(replace|rename)\(|\byaml\.(safe_)?load\(|\bfsync\(")
    found = []
    for module, path in MODULES.items():
        if module == "srl.io":
            continue
        with open(path, encoding="utf-8") as f:
            found += [f"{module}:{i}: {line.strip()}" for i, line in enumerate(f, 1) if pattern.search(line)
                      and not (module in APPEND_LOGS and "fsync(" in line)]
    assert not found, "use srl.io (atomic_path / atomic_open / write_* / read_mapping):\n" + "\n".join(found)


def test_doctest_modules_import_nothing_heavy():
    """conftest.py collects the doctests of the modules that have some, importing them at collection: that must
    stay cheap and free of side effects (no TRL, vLLM, transformers or datasets)."""
    import subprocess
    import sys

    with_doctests = sorted(m for m, path in MODULES.items() if ">>>" in open(path, encoding="utf-8").read())
    assert {"srl.data.steps", "srl.rewards.answers", "srl.rewards.text_similarity", "srl.training.sampling",
            "srl.evaluation.metrics"} <= set(with_doctests)
    code = ("import importlib, sys\n"
            f"for m in {with_doctests!r}: importlib.import_module(m)\n"
            "print(sorted(k for k in ('trl', 'vllm', 'transformers', 'datasets') if k in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                            env={**os.environ, "PYTHONPATH": SRC})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]", result.stdout


@pytest.mark.parametrize("old,new,name", [
    ("srl.trainer", "srl.training.trainer", "SRLTrainer"),
    ("srl.config", "srl.training.config", "SRLConfig"),
    ("srl.stages", "srl.training.stages", "run_stage"),
    ("srl.trajectories", "srl.data.trajectories", "read_trajectories"),
    ("srl.instances", "srl.data.instances", "build_instances"),
    ("srl.evaluation.benchmarks", "srl.data.benchmarks", "load_problems"),
])
def test_old_public_paths_still_import_for_one_release(old, new, name):
    """The README's Python section of the previous release keeps working, with a DeprecationWarning naming the
    new home; the module is the one at the new home (one object, not a copy)."""
    import importlib
    import sys

    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=new):
        module = importlib.import_module(old)
    assert module is importlib.import_module(new)
    assert getattr(module, name) is getattr(importlib.import_module(new), name)


def test_the_public_reward_api_is_unchanged():
    import srl.rewards
    from srl.rewards import similarity, srl_reward, step_similarity_reward

    assert callable(similarity) and srl.rewards.similarity is similarity  # the function, not a module
    assert srl_reward("<think>a</think> x", "x") == 1.0
    assert step_similarity_reward(["<think>a</think> x"], ["x"]) == [1.0]


# (importer, imported private name): a private name used across modules, and why (each one is to be removed).
PRIVATE_EXCEPTIONS = {
}


def _is_module(name: str) -> bool:
    """A module of the package: Python source, a package, or a compiled extension (`_difflib.*.so`)."""
    import glob

    path = os.path.join(SRC, *name.split("."))
    return name in MODULES or os.path.isdir(path) or bool(glob.glob(glob.escape(path) + ".*"))


def _private_imports() -> set[tuple[str, str]]:
    """(importer, module.name) of every `from module import _name` in the package where `_name` is not a private
    submodule of the importer's own package (e.g. `srl.rewards` importing its C extension `_difflib`)."""
    found = set()
    for module, path in MODULES.items():
        package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), path)
        for node in ast.walk(tree):
            if not isinstance(node, ast.ImportFrom):
                continue
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            if base != "srl" and not base.startswith("srl."):
                continue
            for alias in node.names:
                name = f"{base}.{alias.name}"
                if not alias.name.startswith("_") or alias.name.startswith("__"):
                    continue
                if _is_module(name) and (module == base or module.startswith(base + ".")):
                    continue  # a package's own private submodule
                found.add((module, name))
    return found


def test_no_module_imports_another_module_s_private_names():
    found = _private_imports()
    offenders = sorted(f"{m} imports {n}" for m, n in found if (m, n) not in PRIVATE_EXCEPTIONS)
    assert not offenders, "make the name public where it belongs, or move its user:\n" + "\n".join(offenders)
    stale = [pair for pair in PRIVATE_EXCEPTIONS if pair not in found]
    assert not stale, f"exceptions that no longer happen, remove them: {stale}"


# Modules that list several format names for a reason of their own (each with it).
FORMAT_LISTS = {
    "srl.data.agents.scaffolds": "the agent programs' own texts (instructions, format-error replies), keyed by the "
                                 "program; a format names its program (`DataFormat.scaffold`)",
}


def _listings(names: set[str], home: str) -> dict[str, list[str]]:
    """module -> `module:line: [names]` of every collection (tuple, list, set, dict keys, `Literal[...]`) that
    spells out two or more of `names`, outside their `home` module."""
    found: dict[str, list[str]] = {}
    for module, path in MODULES.items():
        if module == home:
            continue
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), path)
        for node in ast.walk(tree):
            items = node.keys if isinstance(node, ast.Dict) else getattr(node, "elts", None)
            if not isinstance(node, (ast.Tuple, ast.List, ast.Set, ast.Dict)) or not items:
                continue
            listed = sorted({i.value for i in items if isinstance(i, ast.Constant) and i.value in names})
            if len(listed) >= 2:
                found.setdefault(module, []).append(f"{module}:{node.lineno}: {listed}")
    return found


def _check_listings(found: dict[str, list[str]], allowed: dict[str, str], home: str) -> None:
    offenders = [line for module, lines in sorted(found.items()) if module not in allowed for line in lines]
    assert not offenders, f"take the names from {home}:\n" + "\n".join(offenders)
    stale = [module for module in allowed if module not in found]
    assert not stale, f"exceptions that no longer happen, remove them: {stale}"


def test_format_names_are_listed_only_in_the_data_format_registry():
    """Every data format is named once, in `srl.data.formats`: no other module spells out a collection of two or
    more format names; they derive theirs from the table."""
    from srl.data.formats import FORMAT_NAMES

    _check_listings(_listings(set(FORMAT_NAMES), "srl.data.formats"), FORMAT_LISTS, "srl.data.formats")


# Modules that still spell out the think modes (each with its reason).
THINK_LISTS: dict[str, str] = {}


def test_the_think_modes_are_spelled_once():
    """`think` is `srl.data.prompts.ThinkMode` (from `THINK_MODES`) wherever an option or a check needs it."""
    from srl.data.prompts import THINK_MODES

    _check_listings(_listings(set(THINK_MODES), "srl.data.prompts"), THINK_LISTS, "srl.data.prompts")


def test_the_cli_choices_of_data_formats_come_from_the_registry():
    """`srl data build --format` offers every format; `srl train --data_format` (and `srl pipeline`) also
    `auto` and `instances` (issue 20: it refused mini-swe-agent)."""
    import typing
    from dataclasses import fields

    from srl.data.build import DataConfig
    from srl.data.formats import FORMAT_NAMES
    from srl.training.config import RunArguments

    def choices(cls, name):
        return typing.get_args(typing.get_type_hints(cls)[name])

    assert choices(DataConfig, "format") == FORMAT_NAMES
    assert choices(RunArguments, "data_format") == ("auto", "instances") + FORMAT_NAMES
    assert {f.name for f in fields(RunArguments)} >= {"data_format", "think"}
