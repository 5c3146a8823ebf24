"""SRLTrainer extends TRL's GRPOTrainer at named methods. The pinned TRL must still have every one of them, with
the parameters our overrides expect, and the trainer's docstring must list every one (issue 10, item 3). A TRL
upgrade that renames or reshapes one fails here, loudly, instead of silently bypassing SRL's code."""

import inspect
import re

from trl import GRPOTrainer

import srl.training.trainer as trainer_module
from srl.training.trainer import SRLTrainer

LISTED = re.findall(r"^- `(\w+)`:", trainer_module.__doc__, re.MULTILINE)


def overridden() -> set[str]:
    return {name for name, value in vars(SRLTrainer).items() if callable(value) and hasattr(GRPOTrainer, name)}


def test_the_docstring_lists_every_override():
    assert LISTED, "the module docstring lists the overrides as '- `name`: why' lines"
    assert set(LISTED) == overridden(), (f"overrides not listed in srl/training/trainer.py's docstring: "
                                         f"{sorted(overridden() - set(LISTED))}; listed but not overridden: "
                                         f"{sorted(set(LISTED) - overridden())}")


def test_the_pinned_trl_still_has_every_overridden_method():
    missing = [name for name in LISTED if not callable(getattr(GRPOTrainer, name, None))]
    assert not missing, f"TRL's GRPOTrainer no longer has {missing}: SRLTrainer's overrides would never run"


def test_the_overrides_take_trl_s_parameters():
    for name in LISTED:
        if name == "__init__":  # takes *args, **kwargs and passes them on
            continue
        ours = inspect.signature(getattr(SRLTrainer, name)).parameters
        theirs = list(inspect.signature(getattr(GRPOTrainer, name)).parameters)
        named = [p for p, v in ours.items() if v.kind != inspect.Parameter.VAR_KEYWORD]
        if len(named) < len(ours):  # a trailing **kwargs takes TRL's remaining keyword parameters and passes them on
            assert named == theirs[:len(named)] and len(theirs) > len(named), \
                f"{name}: TRL's parameters are {theirs}, SRLTrainer's override takes {named} + **kwargs"
            optional = [p for p in theirs[len(named):]
                        if inspect.signature(getattr(GRPOTrainer, name)).parameters[p].default is inspect.Parameter.empty]
            assert not optional, f"{name}: TRL's parameters {optional} have no default; name them in the override"
        else:
            assert named == theirs, f"{name}: TRL's parameters are {theirs}, SRLTrainer's override takes {named}"
