"""`srl compare --config compare.yaml`: the paper's comparison of methods on your model and data
(`srl.experiments`, docs/compare.md). Every key of the YAML file is also a flag (lists and mappings written as
YAML, e.g. `--seeds "[0, 1, 2]"`), and stage options are also `--srl.<option> v`, `--rlvr.<option> v`,
`--sft.<option> v` or `--shared.<option> v` (every stage)."""

from __future__ import annotations

import argparse
import dataclasses
import typing
from collections.abc import Sequence

from srl.console import console
from srl.errors import InputError
from srl.io import read_mapping, read_value
from srl.options import pop_flag, section_flags

SECTIONS = ("shared", "srl", "rlvr", "sft")


def _parser() -> argparse.ArgumentParser:
    from srl.experiments import CompareConfig

    class Parser(argparse.ArgumentParser):
        def error(self, message: str):
            raise InputError(f"{message} (see `srl compare --help`)")

    p = Parser(prog="srl compare", description=__doc__.split("\n\n")[0].split(": ", 1)[1],
               epilog="Stage options: `srl train --stage srl --help`. Example configs: recipes/compare_*.yaml.")
    p.add_argument("--config", help="YAML file of options (flags win).")
    hints = typing.get_type_hints(CompareConfig)
    for f in dataclasses.fields(CompareConfig):
        kind = hints[f.name]
        origin = typing.get_origin(kind)
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        base = args[0] if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)) and args else kind
        if base is bool:
            p.add_argument(f"--{f.name}", type=_boolean, default=argparse.SUPPRESS, help=f.metadata.get("help"))
        elif typing.get_origin(base) in (list, dict):
            p.add_argument(f"--{f.name}", type=_yaml, default=argparse.SUPPRESS, metavar="YAML",
                           help=f.metadata.get("help"))
        else:
            p.add_argument(f"--{f.name}", type=base, default=argparse.SUPPRESS, help=f.metadata.get("help"))
    return p


def _boolean(text: str) -> bool:
    if text.lower() in ("true", "yes", "1", "on"):
        return True
    if text.lower() in ("false", "no", "0", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _yaml(text: str):
    try:
        return read_value(text)
    except InputError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _stage_flags(argv: list[str]) -> tuple[list[str], dict[str, dict]]:
    """The other flags, and `--<section>.<option> v` flags as {section: {option: value (YAML-read)}}."""
    rest, per_section = section_flags(argv, SECTIONS)
    sections = {}
    for section, words in per_section.items():
        for i, word in enumerate(words):
            if word.startswith("--"):
                value = words[i + 1] if i + 1 < len(words) and not words[i + 1].startswith("--") else None
                if value is None:
                    raise InputError("expects a value (see `srl compare --help`)", field=f"{section}.{word[2:]}")
                sections.setdefault(section, {})[word[2:]] = _yaml(value)
    return rest, sections


def config_from_argv(argv: Sequence[str]):
    """`CompareConfig` from `--config` and the flags (flags win; stage options merge per section)."""
    from srl.experiments import CompareConfig

    config_path, argv = pop_flag(argv, "config", "")
    values = read_mapping(config_path, what="config file") if config_path else {}
    known = {f.name for f in dataclasses.fields(CompareConfig)}
    for key in values:
        if key not in known:
            raise InputError("unknown option (see `srl compare --help`)", path=config_path, field=key)
    rest, sections = _stage_flags(list(argv))
    flags = vars(_parser().parse_args(rest))
    flags.pop("config", None)
    merged = {**values, **flags}
    stage_options = {k: dict(v or {}) for k, v in (merged.get("stage_options") or {}).items()}
    for section, options in sections.items():
        stage_options.setdefault(section, {}).update(options)
    if stage_options:
        merged["stage_options"] = stage_options
    try:
        return CompareConfig(**merged)
    except TypeError as e:  # a value of the wrong shape
        raise InputError(f"bad value: {e}", path=config_path or None, field="config") from None


def compare_command(argv: Sequence[str]) -> int:
    argv = list(argv)
    if "-h" in argv or "--help" in argv:
        _parser().print_help()
        return 0
    from srl.cli.train import quiet_libraries
    from srl.experiments import compare

    cfg = config_from_argv(argv)
    quiet_libraries()
    results = compare(cfg)
    print(results["table"], flush=True)  # unwrapped: a markdown table, also when the output is a log file
    console().print(f"[bold green]done[/]: {cfg.record}/results.json, table.md; figures "
                    f"{', '.join(results.get('figures', []))}")
    return 0
