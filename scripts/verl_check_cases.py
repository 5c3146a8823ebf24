"""Part 1 of `make verl-check` (runs in srl's environment): exports and the completions verl must score.

    PYTHONPATH=src python scripts/verl_check_cases.py WORK_DIR

Writes into WORK_DIR:
- instances.jsonl: `srl data build` on the bundled GSM8K sample;
- exports (each with `srl data export --to verl`): srl_required/ (the paper's format, 5% validation problems),
  srl_optional/ (think optional, indel similarity, no autojunk, normalised whitespace: every reward option
  travels), rlvr/ (from the GSM8K solutions, as `srl train --stage rlvr` reads them);
- tokenizer/: srl's tiny byte-level tokenizer with a chat template (verl needs a tokenizer path);
- cases.jsonl: completions written from real GSM8K rows (expert steps, perturbed, broken formats, right and wrong
  answers), 8 per prompt (a GRPO group), each with the reward `srl train` gives it (the reward functions
  `srl.stages` builds for that stage and these options) and, per group, our dynamic-sampling decision.

Part 2, scripts/verl_check.py, scores the same completions with verl's own code in verl's environment.
"""

from __future__ import annotations

import json
import os
import random
import re
import sys

G = 8  # rollouts per prompt (the paper's G)
GROUPS = 30  # prompts per export: 30 x 8 = 240 completions each

EXPORTS = {  # name -> (srl data export flags, RunArguments fields srl train would get)
    "srl_required": (["--stage", "srl", "--validation_fraction", "0.05"], {"think": "required"}),
    "srl_optional": (["--stage", "srl", "--think", "optional", "--similarity", "indel", "--autojunk", "false",
                      "--normalize_whitespace", "true"],
                     {"think": "optional", "similarity": "indel", "autojunk": False, "normalize_whitespace": True}),
    "rlvr": (["--stage", "rlvr", "--data_format", "gsm8k"], {}),
}


def step_completions(expert: str, other: str, uniform: bool) -> list[tuple[str, str]]:
    """(kind, text) x G for one step instance: right, near and far steps; broken and borderline formats."""
    if uniform:  # a group whose rewards are all equal: dynamic sampling drops it
        return [("uniform_no_think", expert)] * G
    digits = re.sub(r"\d", lambda m: str((int(m.group()) + 3) % 10), expert)
    words = expert.split()
    half = " ".join(words[: max(1, len(words) // 2)])
    return [
        ("exact", f"<think>\nThe previous steps give the numbers I need.\n</think>\n{expert}"),
        ("digits_changed", f"<think>compute</think> {digits}"),
        ("half_step", f"<think>\nfirst part only\n</think>\n{half}"),
        ("other_step", f"<think>skip ahead</think>\n{other}"),
        ("no_think", expert),
        ("unclosed_think", f"<think>\n{expert}"),
        ("two_monologues", f"<think>a</think><think>b</think>{expert}"),
        ("long_spaced", f"<think>\n\n</think>\n{'  '.join([expert] * 4)}\n\n"),  # >= 200 chars: autojunk matters
    ]


def outcome_completions(answer: str, problem: str, uniform: bool) -> list[tuple[str, str]]:
    """(kind, text) x G for one problem: right answers in several notations, wrong and missing ones."""
    intro = f"<think>\nRead: {problem[:80]}\n</think>\nWorking it out step by step."
    if uniform:
        return [("uniform_right", f"{intro}\nThe answer is \\boxed{{{answer}}}.")] * G
    try:
        value = float(answer.replace(",", ""))
        wrong, double = f"{value + 1:g}", f"{2 * value:g}"
    except ValueError:
        wrong, double = answer + "1", None
    frac = f"\\frac{{{double}}}{{2}}" if double else answer
    return [
        ("boxed_right", f"{intro}\nThe answer is \\boxed{{{answer}}}."),
        ("gsm8k_right", f"{intro}\n#### {answer}"),
        ("boxed_wrong", f"{intro}\nThe answer is \\boxed{{{wrong}}}."),
        ("decimal_right", f"{intro}\nSo \\boxed{{{answer}.0}}"),
        ("no_answer", f"{intro}\nI could not finish."),
        ("last_boxed_counts", f"<think>maybe \\boxed{{{wrong}}}</think> no: \\boxed{{{answer}}}"),
        ("fraction_right", f"{intro}\n$\\boxed{{{frac}}}$"),
        ("gsm8k_wrong", f"{intro}\n#### {wrong}"),
    ]


def main(work: str) -> None:
    import pyarrow.parquet as pq
    import torch

    from srl.cli import main as srl_main
    from srl.training.config import RunArguments
    from srl.training.sampling import informative_groups
    from srl.data import BUNDLED_GSM8K
    from srl.rewards.stage import reward_funcs
    from srl.tiny import tiny_tokenizer

    os.makedirs(work, exist_ok=True)
    instances = os.path.join(work, "instances.jsonl")
    assert srl_main(["data", "build", "--input", BUNDLED_GSM8K, "--output", instances]) == 0
    rng = random.Random(0)
    cases = []
    for name, (flags, run_fields) in EXPORTS.items():
        source = BUNDLED_GSM8K if name == "rlvr" else instances
        out = os.path.join(work, name)
        assert srl_main(["data", "export", "--to", "verl", "--input", source, "--output", out] + flags) == 0
        rows = pq.read_table(os.path.join(out, "train.parquet")).to_pylist()
        picked = sorted(rng.sample(range(len(rows)), GROUPS))
        stage = "rlvr" if name == "rlvr" else "srl"
        reward = reward_funcs(stage, RunArguments(**run_fields))[0]  # the function `srl train` scores with
        for g, i in enumerate(picked):
            row, truth = rows[i], rows[i]["reward_model"]["ground_truth"]
            uniform = g % 5 == 4
            if stage == "srl":
                other = rows[(i + 1) % len(rows)]["reward_model"]["ground_truth"]
                made = step_completions(truth, other, uniform)
                expected = reward([c for _, c in made], expert_step=[truth] * G)
            else:
                problem = row["prompt"][-1]["content"]
                made = outcome_completions(truth, problem, uniform)
                expected = reward([c for _, c in made], final_answer=[truth] * G)
            keep = bool(informative_groups(torch.tensor(expected, dtype=torch.float64), G, 1e-6)[0])
            for (kind, text), score in zip(made, expected):
                cases.append({"export": name, "index": i, "group": g, "kind": kind, "completion": text,
                              "expected": score, "ours_keep_group": keep})
    with open(os.path.join(work, "cases.jsonl"), "w", encoding="utf-8") as f:
        for case in cases:
            f.write(json.dumps(case, ensure_ascii=False) + "\n")
    tiny_tokenizer().save_pretrained(os.path.join(work, "tokenizer"))
    print(f"verl-check cases: {len(cases)} completions in {len(cases) // G} groups over {len(EXPORTS)} exports "
          f"-> {work}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
