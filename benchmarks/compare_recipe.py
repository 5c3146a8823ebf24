"""A `recipes/compare_<name>.yaml` run from a benchmark script: the recipe's paths under its work folder
(`output_dir`) moved under another one (`--out`), then `srl.experiments.compare`. The same run from the shell:
`srl compare --config recipes/compare_<name>.yaml` (plus flags)."""

from __future__ import annotations

import argparse
import json
import os
import shlex
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def moved(value: Any, old: str, new: str) -> Any:
    """`value` with every string path `old` or under `old/` moved under `new` (in mappings and lists too)."""
    if isinstance(value, str) and (value == old or value.startswith(old.rstrip("/") + "/")):
        return new.rstrip("/") + value[len(old.rstrip("/")):]
    if isinstance(value, dict):
        return {k: moved(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [moved(v, old, new) for v in value]
    return value


def recipe_values(name: str, out: str | None = None) -> dict[str, Any]:
    """The keys of recipes/compare_<name>.yaml, its work folder moved to `out` (when given)."""
    from srl.io import read_mapping

    values = read_mapping(os.path.join(ROOT, "recipes", f"compare_{name}.yaml"), what="recipe")
    return moved(values, values["output_dir"], out) if out else values


def add_flags(p: argparse.ArgumentParser, name: str) -> None:
    """The flags every such script takes."""
    p.add_argument("--out", default=None, help=f"work folder (default: recipes/compare_{name}.yaml's output_dir)")
    p.add_argument("--record", default=None, help="record folder of finished runs (default: --out); keep it in "
                                                  "the repository, e.g. docs/results/<name>")
    p.add_argument("--figures", default=None, help="folder for the figures (default: the record folder)")
    p.add_argument("--data_only", action="store_true", help="only prepare what the recipe needs; print the command")


def run(name: str, args: argparse.Namespace, **values: Any) -> int:
    """Run the recipe with `values` and the record/figures flags over it; with --data_only, print the same run as
    an `srl compare` command instead."""
    config = {**recipe_values(name, args.out), **values,
              **{k: getattr(args, k) for k in ("record", "figures") if getattr(args, k)}}
    recipe, base = os.path.relpath(os.path.join(ROOT, "recipes", f"compare_{name}.yaml")), recipe_values(name)
    flags = [f"--{k} {shlex.quote(v if isinstance(v, str) else json.dumps(v))}" for k, v in config.items()
             if v != base.get(k)]
    command = " ".join(["srl compare --config", recipe, *flags])
    if args.data_only:
        print(f"ready; the experiment: {command}")
        return 0
    from srl.experiments import CompareConfig, compare

    print(command, flush=True)
    print(compare(CompareConfig(**config))["table"])
    return 0
