"""srl.rewards.stage: the reward each stage trains with, from its options — the paper's step reward, the outcome
reward, and the paper's two reward ablations on step instances (final answer only; the remaining solution)."""

from srl.data import BUNDLED_GSM8K
from srl.rewards import srl_reward
from srl.rewards.stage import reward_funcs, score
from srl.training.presets import stage_arguments
from srl.training.rows import srl_rows

RESPONSE = "<think>48/2 is 24</think> Natalia sold 48/2 = 24 clips in May."
EXPERT = "Natalia sold 48/2 = 24 clips in May."


def test_default_is_the_paper_step_reward_with_train_s_options():
    run, _ = stage_arguments("srl", ["--model", "tiny", "--think", "required", "--use_cpu", "true"])
    (f,) = reward_funcs("srl", run)
    assert f([RESPONSE, "no tags"], expert_step=[EXPERT, EXPERT]) == [1.0, -1.0]
    assert score("srl", RESPONSE, EXPERT, run) == srl_reward(RESPONSE, EXPERT) == 1.0


def test_outcome_ablation_scores_the_action_s_final_answer():
    options = {"think": "required", "step_reward": "outcome"}
    (f,) = reward_funcs("srl", options)
    done = "<think>so 72 in all</think> She sold 48 + 24 = 72 clips. The answer is \\boxed{72}."
    wrong = "<think>hm</think> She sold \\boxed{70} clips."
    assert f([done, wrong, "no tags \\boxed{72}"], final_answer=["72", "72", "72"]) == [1.0, 0.0, -1.0]
    assert score("srl", done, "72", options) == 1.0


def test_remaining_ablation_compares_with_the_rest_of_the_solution(tmp_path):
    run, _ = stage_arguments("srl", ["--model", "tiny", "--think", "off", "--use_cpu", "true", "--train_data",
                                     BUNDLED_GSM8K, "--step_target", "remaining"])
    every = srl_rows(run)
    longest = max({r["trajectory_id"] for r in every}, key=lambda t: sum(r["trajectory_id"] == t for r in every))
    rows = sorted((r for r in every if r["trajectory_id"] == longest), key=lambda r: r["step_index"])
    assert len(rows) >= 3
    first, last = rows[0], rows[-1]
    assert first["remaining"].startswith(first["expert_step"]) and first["remaining"].endswith(last["expert_step"])
    assert last["remaining"] == last["expert_step"]
    (f,) = reward_funcs("srl", run)
    assert f([first["remaining"], first["expert_step"]], remaining=[first["remaining"]] * 2,
             expert_step=[first["expert_step"]] * 2)[0] == 1.0
    assert f([first["expert_step"]], remaining=[first["remaining"]], expert_step=[first["expert_step"]])[0] < 1.0


def test_sft_targets_state_the_answer_once(tmp_path):
    """A solution whose last step already holds the boxed answer (the steps format of the fidelity task) is not
    given a second answer line; a GSM8K solution gets one."""
    import json

    from srl.training.rows import sft_rows

    path = tmp_path / "steps.jsonl"
    path.write_text(json.dumps({"problem": "Start with 2. Double it.", "steps": ["2*2 = 4",
                                "The final answer is \\boxed{4}."], "answer": "4"}) + "\n")
    run, _ = stage_arguments("sft", ["--model", "tiny", "--use_cpu", "true", "--train_data", str(path),
                                     "--data_format", "steps"])
    (row,) = sft_rows(run)
    assert row["completion"][0]["content"].count("\\boxed{4}") == 1
    run, _ = stage_arguments("sft", ["--model", "tiny", "--use_cpu", "true", "--train_data", BUNDLED_GSM8K])
    assert sft_rows(run)[0]["completion"][0]["content"].endswith("The final answer is \\boxed{72}.")
