"""Stages run one after another, each from the previous one's final model (the paper's SRL → RLVR): the one
home of stage chaining, used by `srl pipeline`, `srl compare` and the benchmarks.

    specs = chain_specs([{"stage": "srl", "max_steps": 20}, {"stage": "rlvr", "max_steps": 20}],
                        model="smollm2-135m-instruct", output_dir="runs/pipe", shared={"preset": "cpu-small"})
    check_chain(specs)          # every stage's options parsed and checked before anything trains
    final = run_chain(specs, resume=True)

A spec is plain data (`StageSpec`: the stage and its `srl train` options as a mapping), so it can be written to
JSON and run in another process (`srl compare` trains each stage in its own process).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from srl.errors import InputError
from srl.training.presets import STAGES


@dataclass
class StageSpec:
    """One stage of a chain: `stage` (srl, rlvr, sft) and its options (keys of `srl train --stage <stage>`;
    `model` and `output_dir` included), plus `argv`, flags that win over them, and `source`, the name errors
    give for the options."""

    stage: str
    options: dict[str, Any] = field(default_factory=dict)
    argv: list[str] = field(default_factory=list)
    source: str = "options"

    @property
    def output_dir(self) -> str:
        return self.options["output_dir"]

    @property
    def final(self) -> str:
        return os.path.join(self.output_dir, "final")

    def arguments(self) -> tuple:
        """`(RunArguments, <stage config>)`, parsed and checked as `srl train` does."""
        from srl.training.presets import stage_arguments

        return stage_arguments(self.stage, self.argv, values=self.options, source=self.source)


def stage_folders(stages: Sequence[str]) -> list[str]:
    """Folder names of a chain's stages: the stage's name, numbered when a stage occurs twice.

    >>> stage_folders(["srl", "rlvr"]), stage_folders(["srl", "srl"])
    (['srl', 'rlvr'], ['1-srl', '2-srl'])
    """
    repeated = len(set(stages)) < len(stages)
    return [f"{i}-{s}" if repeated else s for i, s in enumerate(stages, 1)]


def chain_specs(stages: Sequence[Mapping[str, Any]], *, model: str | None, output_dir: str,
                shared: Mapping[str, Any] | None = None, argv: Sequence[str] = (),
                stage_argv: Mapping[str, Sequence[str]] | None = None, source: str = "options") -> list[StageSpec]:
    """The specs of a chain: stage i trains in `<output_dir>/<stage>` from stage i-1's final model (the first
    from `model`; None: the first stage's own `model` option), with the `shared` options under its own (each
    item of `stages` is `{"stage": ..., options}`), and the flags `argv` + `stage_argv[stage]` over both."""
    names = []
    for i, item in enumerate(stages):
        stage = item.get("stage")
        if stage not in STAGES:
            raise InputError(f"stage {i + 1}: expected `stage: {'|'.join(STAGES)}`, got {stage!r}", path=source,
                             field="stage")
        names.append(stage)
    specs = []
    for i, (item, folder) in enumerate(zip(stages, stage_folders(names))):
        options = {**(shared or {}), **{k: v for k, v in item.items() if k != "stage"}}
        options["output_dir"] = os.path.join(output_dir, folder)
        flags = list(argv) + list((stage_argv or {}).get(item["stage"], ()))
        if i == 0 and model is not None:
            options["model"] = model
        elif i > 0:  # the previous stage's model, over any --model flag (which names the chain's start)
            flags += ["--model", specs[-1].final]
        specs.append(StageSpec(item["stage"], options, flags + ["--output_dir", options["output_dir"]], source))
    return specs


def check_chain(specs: Sequence[StageSpec]) -> list[tuple]:
    """Parse every stage's options (a bad option of the last stage fails before the first one trains)."""
    return [spec.arguments() for spec in specs]


def run_spec(spec: StageSpec, *, resume: bool = False, callbacks: list | None = None, progress: bool = True,
             arguments: tuple | None = None) -> str:
    """Train one stage (`run_stage` skips it when it already finished and `resume`); returns its final model
    folder. `arguments`: the spec already parsed (`spec.arguments()`)."""
    from srl.training.stages import run_stage

    run, cfg = arguments or spec.arguments()
    run.resume = run.resume or resume
    return run_stage(spec.stage, run, cfg, callbacks=callbacks, progress=progress)


def run_chain(specs: Sequence[StageSpec], *, resume: bool = False, progress: bool = True, announce=None) -> str:
    """Check every stage, then train them in order; returns the last final model. `announce(i, spec, finished)` is
    called before each stage (e.g. to print a line), with the stage's final model when it already finished and is
    skipped (`--resume`), else None."""
    from srl.training.stages import finished_model

    parsed = check_chain(specs)
    final = ""
    for i, (spec, arguments) in enumerate(zip(specs, parsed)):
        done = finished_model(spec.output_dir) if (arguments[0].resume or resume) else None
        if announce:
            announce(i, spec, done)
        final = done or run_spec(spec, resume=resume, progress=progress, arguments=arguments)
    return final
