"""`srl data export --to verl` in srl's own environment: the folder, its rows, its reward module and its run
configuration. verl itself reads and scores these exports in `make verl-check` (scripts/verl_check.sh), which
needs verl's own environment and is not part of the test suite."""

import importlib.util
import json
import os

import pyarrow.parquet as pq
import pytest
import yaml

from srl.cli import main
from srl.rewards.format import OutputFormat
from srl.rewards import outcome_reward, srl_reward


@pytest.fixture(scope="module")
def instances(tmp_path_factory):
    from srl.data import BUNDLED_GSM8K

    path = tmp_path_factory.mktemp("inst") / "instances.jsonl"
    assert main(["data", "build", "--input", BUNDLED_GSM8K, "--output", str(path)]) == 0
    return str(path)


def export(tmp_path, *flags, name="out"):
    out = tmp_path / name
    code = main(["data", "export", "--to", "verl", "--output", str(out), *flags])
    return code, out


def rows_of(path):
    return pq.read_table(str(path)).to_pylist()


def load_reward_module(folder):
    """As verl's `load_extern_object(path, "compute_score")`: import the file by path."""
    spec = importlib.util.spec_from_file_location("srl_reward_exported", str(folder / "srl_reward.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.compute_score


def test_srl_export_rows_are_our_instances(tmp_path, instances):
    code, out = export(tmp_path, "--input", instances, "--validation_fraction", "0.05")
    assert code == 0
    assert sorted(os.listdir(out)) == ["run_srl.sh", "srl_export.json", "srl_reward.py", "srl_verl.yaml",
                                       "train.parquet", "val.parquet"]
    ours = [json.loads(line) for line in open(instances)]
    train, val = rows_of(out / "train.parquet"), rows_of(out / "val.parquet")
    assert len(train) + len(val) == len(ours)
    # whole problems held out: no trajectory on both sides, and about 5% of the 256 problems
    train_ids = {r["extra_info"]["trajectory_id"] for r in train}
    val_ids = {r["extra_info"]["trajectory_id"] for r in val}
    assert not train_ids & val_ids and len(val_ids) == round(0.05 * 256)
    by_key = {(r["trajectory_id"], r["step_index"]): r for r in ours}
    for row in train + val:
        info = row["extra_info"]
        inst = by_key[(info["trajectory_id"], info["step_index"])]
        assert row["data_source"] == "srl_step" and row["ability"] == "math"
        assert row["prompt"] == inst["prompt"]  # the same system prompt and user turn as `srl train`
        assert row["reward_model"] == {"style": "rule", "ground_truth": inst["expert_step"]}
        assert info["num_steps"] == inst["num_steps"] and info["final_answer"] == inst["final_answer"]
        assert (info["think"], info["similarity"], info["autojunk"], info["normalize_whitespace"]) == \
            ("required", "difflib", True, False)
    assert [r["extra_info"]["index"] for r in train] == list(range(len(train)))
    marker = json.load(open(out / "srl_export.json"))
    assert marker["rows"] == {"train": len(train), "val": len(val)} and marker["verl_version"] == "0.9.1"


def completions_for(step: str, other: str) -> list[str]:
    return [f"<think>\nok\n</think>\n{step}", step, f"<think>x</think> {other}", f"<think>\n{step}",
            f"<think>a</think><think>b</think>{step}", f"<think></think>{'  '.join([step] * 4)}",
            f"<think>s</think><solution>{step}</solution>", "<think>only thinking</think>   "]


@pytest.mark.parametrize("flags, options", [
    ([], {}),
    (["--think", "optional", "--similarity", "indel", "--autojunk", "false", "--normalize_whitespace", "true"],
     {"think": "optional", "method": "indel", "autojunk": False, "normalize_whitespace": True}),
    (["--think", "off", "--solution_tags", "true"],
     {"output_format": OutputFormat(think="off", solution_open="<solution>", solution_close="</solution>")}),
])
def test_exported_compute_score_is_srl_reward(tmp_path, instances, flags, options):
    """The exported module, loaded by path as verl does, gives `srl_reward` with the exported options on real
    GSM8K steps and completions of every kind (valid, broken formats, near and far steps, long ones)."""
    code, out = export(tmp_path, "--input", instances, *flags)
    assert code == 0
    compute_score = load_reward_module(out)
    rows = rows_of(out / "train.parquet")[:40]
    seen = set()
    for i, row in enumerate(rows):
        step, other = row["reward_model"]["ground_truth"], rows[(i + 1) % len(rows)]["reward_model"]["ground_truth"]
        for text in completions_for(step, other):
            got = compute_score(row["data_source"], text, step, row["extra_info"])
            want = srl_reward(text, step, **options)
            assert got["score"] == want, (text, got, want)
            assert got["format_ok"] == float(want != -1.0)
            assert got["similarity"] == (want if want != -1.0 else 0.0)
            seen.add(want == -1.0)
    assert seen == {True, False}  # both broken and valid responses were scored


def test_think_off_instances_refused_with_required_format(tmp_path):
    """Instances whose prompt asks for no monologue, scored with the paper's `required` format, would give -1
    to every response: the export refuses them, naming the option."""
    from srl.data import BUNDLED_GSM8K

    inst = tmp_path / "off.jsonl"
    assert main(["data", "build", "--input", BUNDLED_GSM8K, "--output", str(inst), "--think", "off"]) == 0
    code, out = export(tmp_path, "--input", str(inst))
    assert code == 2 and not out.exists()
    code, out = export(tmp_path, "--input", str(inst), "--think", "off")
    assert code == 0 and rows_of(out / "train.parquet")[0]["extra_info"]["think"] == "off"


def test_rlvr_export_from_solutions(tmp_path):
    """RLVR rows as `srl train --stage rlvr` reads them: one per problem, the evaluation prompt, the final answer
    as ground truth, scored by `outcome_reward`; the config filters groups on `acc` with the paper's 128 prompts."""
    from srl.data import BUNDLED_GSM8K

    code, out = export(tmp_path, "--input", BUNDLED_GSM8K, "--stage", "rlvr")
    assert code == 0
    rows = rows_of(out / "train.parquet")
    solutions = [json.loads(line) for line in open(BUNDLED_GSM8K)]
    assert len(rows) == len(solutions)
    first, answer = rows[0], solutions[0]["answer"].split("####")[-1].strip()
    assert first["data_source"] == "srl_outcome" and first["reward_model"]["ground_truth"] == answer
    assert first["prompt"][1]["content"] == solutions[0]["question"]
    compute_score = load_reward_module(out)
    for row in rows[:30]:  # GSM8K rows: a bare last number counts, as in `srl train --stage rlvr` and `srl eval`
        truth = row["reward_model"]["ground_truth"]
        assert row["extra_info"]["gold_kind"] == "gsm8k" and row["extra_info"]["number_fallback"] == "auto"
        for text in (f"so \\boxed{{{truth}}}", f"#### {truth}", f"\\boxed{{{truth}1}}", "no answer", f"{truth}"):
            got = compute_score("srl_outcome", text, truth, row["extra_info"])
            want = outcome_reward(text, truth, number_fallback=True)
            assert got == {"score": want, "acc": want}
        assert compute_score("srl_outcome", f"so {truth}", truth, row["extra_info"])["score"] == 1.0
    code, strict = export(tmp_path, "--input", BUNDLED_GSM8K, "--stage", "rlvr", "--number_fallback", "off",
                          name="strict")
    row = rows_of(strict / "train.parquet")[0]
    truth = row["reward_model"]["ground_truth"]
    assert code == 0 and load_reward_module(strict)("srl_outcome", f"so {truth}", truth, row["extra_info"]) == {
        "score": 0.0, "acc": 0.0}
    config = yaml.safe_load(open(out / "srl_verl.yaml"))
    assert config["data"]["train_batch_size"] == 128 and config["data"]["max_response_length"] == 4096
    assert config["algorithm"]["filter_groups"] == {"enable": True, "metric": "acc", "max_inflight_gen_batches": 1}


def test_run_configuration_uses_verl_keys_and_paper_values(tmp_path, instances):
    code, out = export(tmp_path, "--input", instances, "--n_gpus_per_node", "4", "--ppo_mini_batch_size", "128")
    assert code == 0
    config = yaml.safe_load(open(out / "srl_verl.yaml"))
    assert config["defaults"] == ["ppo_trainer", "_self_"]
    actor, rollout = config["actor_rollout_ref"]["actor"], config["actor_rollout_ref"]["rollout"]
    assert config["data"]["train_batch_size"] == 512 and actor["ppo_mini_batch_size"] == 128  # prompts
    assert (actor["optim"]["lr"], rollout["n"], rollout["temperature"], actor["grad_clip"]) == (5e-7, 8, 1.0, 1.0)
    assert actor["use_kl_loss"] is False and config["algorithm"]["use_kl_in_reward"] is False
    assert config["algorithm"]["adv_estimator"] == "grpo"
    assert config["algorithm"]["filter_groups"]["metric"] == "score"
    assert config["trainer"]["n_gpus_per_node"] == 4 and "custom_reward_function" not in config
    script = (out / "run_srl.sh").read_text()
    assert 'reward.custom_reward_function.path="$HERE/srl_reward.py"' in script  # verl 0.9.x key
    assert 'data.val_files="$HERE/train.parquet"' in script  # no validation split asked for
    assert os.access(out / "run_srl.sh", os.X_OK)


def test_score_decimals_rounds_the_score_only(tmp_path, instances):
    code, out = export(tmp_path, "--input", instances, "--score_decimals", "2")
    assert code == 0
    row = rows_of(out / "train.parquet")[0]
    step = row["reward_model"]["ground_truth"]
    text = f"<think>t</think>{step[:-3]}"
    got = load_reward_module(out)("srl_step", text, step, row["extra_info"])
    assert got["score"] == round(srl_reward(text, step), 2) != got["similarity"] == srl_reward(text, step)


def test_refuses_to_replace_what_it_did_not_write(tmp_path, instances):
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("keep me")
    code, _ = export(tmp_path, "--input", instances, name="theirs")
    assert code == 2 and os.listdir(theirs) == ["notes.txt"]
    code, out = export(tmp_path, "--input", instances)
    assert code == 0
    code, out = export(tmp_path, "--input", instances, "--validation_fraction", "0.1")  # a previous export: replaced
    assert code == 0 and (out / "val.parquet").exists()
    (out / "mine.txt").write_text("added by the user")
    code, _ = export(tmp_path, "--input", instances)
    assert code == 2 and (out / "mine.txt").exists()
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".srl-export-")]  # no half-written folder left


@pytest.mark.parametrize("flags, field", [
    (["--rollout_n", "1"], "rollout_n"),
    (["--ppo_mini_batch_size", "100"], "ppo_mini_batch_size"),  # does not divide 512
    (["--train_batch_size", "3", "--rollout_n", "2"], "train_batch_size"),  # 6 completions on 8 GPUs
    (["--validation_fraction", "1"], "validation_fraction"),
    (["--to", "openrlhf"], "to"),
])
def test_bad_options_exit_2_before_writing(tmp_path, instances, capsys, flags, field):
    code, out = export(tmp_path, "--input", instances, *flags)
    err = capsys.readouterr().err
    assert code == 2 and not out.exists() and field in err and len(err.strip().splitlines()) == 1


def test_agent_instances_score_with_the_action_reward(tmp_path):
    """Agent instances (SWE-Gym OpenHands trajectories): the action-reward options travel in `extra_info`, and the
    exported `compute_score` gives `action_reward` with them (tool name must match, shell whitespace normalised)."""
    from srl.rewards import action_reward

    source = os.path.join(os.path.dirname(__file__), "data", "swe", "swe-gym_openhands_sampled_trajectories.rows.json")
    inst = tmp_path / "agent.jsonl"
    assert main(["data", "build", "--format", "openhands", "--input", source, "--output", str(inst)]) == 0
    code, out = export(tmp_path, "--input", str(inst), "--action_structure", "true", "--action_shell", "true",
                       "--ability", "agent")
    assert code == 0
    rows = rows_of(out / "train.parquet")
    assert rows and rows[0]["ability"] == "agent" and rows[0]["extra_info"]["action_structure"] is True
    compute_score = load_reward_module(out)
    scores = set()
    for i, row in enumerate(rows[:40]):
        expert, other = row["reward_model"]["ground_truth"], rows[(i + 1) % len(rows)]["reward_model"]["ground_truth"]
        for text in (f"<think>next</think>\n{expert}", f"<think>t</think>{other}", expert,
                     f"<think>t</think>{expert.replace('=', '= ', 1)}"):
            got = compute_score("srl_step", text, expert, row["extra_info"])
            want = action_reward(text, expert, structure=True, shell=True)
            assert got["score"] == want, (text, got, want)
            scores.add(want)
    assert -1.0 in scores and 1.0 in scores and len(scores) > 3
