"""A stage's options from the library: the dataclass defaults, a preset (`srl/recipes/<preset>_<stage>.yaml`),
a YAML file, values and flags, parsed and checked exactly as `srl train` parses them.

    run, cfg = stage_arguments("srl", ["--model", "smollm2-135m-instruct"], preset="cpu-small")
    run, cfg = stage_arguments("rlvr", values={"learning_rate": 1e-6, "output_dir": "runs/x"})

Presets: `paper` (the paper's hyper-parameters, for GPUs) and `cpu-small` (minutes on 2 CPU cores).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from srl.errors import InputError
from srl.io import read_mapping
from srl.options import make_parser, parse

RECIPES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "recipes")
STAGES = ("srl", "rlvr", "sft")


def presets() -> list[str]:
    """The preset names that have a recipe for every stage."""
    names = {f.rsplit("_", 1)[0] for f in os.listdir(RECIPES) if f.endswith(".yaml")}
    return sorted(n for n in names if all(os.path.exists(os.path.join(RECIPES, f"{n}_{s}.yaml")) for s in STAGES))


def preset_values(stage: str) -> Callable[[str], dict[str, Any]]:
    """`name -> the values of recipes/<name>_<stage>.yaml` (an unknown name is refused in one line)."""
    def load(name: str) -> dict[str, Any]:
        path = os.path.join(RECIPES, f"{name}_{stage}.yaml")
        if not os.path.exists(path):
            raise InputError(f"unknown preset '{name}' for stage {stage} (known: {', '.join(presets())})",
                             field="preset")
        return read_mapping(path, what="preset")

    return load


def check_stage(stage: str) -> None:
    if stage not in STAGES:
        raise InputError(f"unknown stage '{stage}' (expected one of {', '.join(STAGES)})", field="stage")


def stage_parser(stage: str):
    """The parser of `srl train --stage <stage>`: `RunArguments` and the stage's config dataclass."""
    from srl.training.config import STAGE_CONFIGS, RunArguments

    check_stage(stage)
    return make_parser(f"srl train --stage {stage}", f"Train the {stage} stage. Options come from --preset, "
                                                     "--config run.yaml and flags (flags win).",
                       RunArguments, STAGE_CONFIGS[stage])


def stage_arguments(stage: str, argv: Sequence[str] = (), *, values: Mapping[str, Any] | None = None,
                    source: str = "values", preset: str | None = None, layers: Sequence = ()) -> tuple:
    """`(RunArguments, <stage config>)` for `stage`. Lowest priority first: the defaults, the preset (`preset`,
    or a `preset` key of `values`/`layers`, or `--preset` in `argv`), a `--config` file in `argv`, `layers` of
    (source, values), `values` (named `source` in messages), then the flags in `argv`."""
    all_layers = list(layers)
    if preset is not None:
        all_layers.insert(0, ("preset option", {"preset": preset}))
    if values:
        all_layers.append((source, dict(values)))
    return parse(stage_parser(stage), argv, preset_values(stage), all_layers)
