import json
import os

import datasets
import pytest

from srl.data.instances import InstanceOptions, build_instances, to_dataset, trajectory_instances, write_rows, BuildSummary
from srl.data.prompts import SYSTEM_PROMPT, SYSTEM_PROMPT_NO_THINK
from srl.data.build import load_trajectories
from srl.data.trajectories import Step, Trajectory

COLUMNS = {"prompt", "expert_step", "step_index", "num_steps", "trajectory_id", "final_answer"}


def natalia(gsm8k_sample):
    return load_trajectories(gsm8k_sample, "gsm8k")[0]


def test_first_gsm8k_row_gives_n_minus_1_instances(gsm8k_sample):
    traj = natalia(gsm8k_sample)
    assert [s.text for s in traj.steps] == ["Natalia sold 48/2 = 24 clips in May.",
                                            "Natalia sold 48+24 = 72 clips altogether in April and May."]
    assert traj.final_answer == "72"
    rows = trajectory_instances(traj)
    assert len(rows) == 1
    row = rows[0]
    assert COLUMNS <= set(row)
    assert row["expert_step"] == "Natalia sold 48/2 = 24 clips in May."
    assert (row["step_index"], row["num_steps"], row["final_answer"]) == (1, 2, "72")
    assert row["prompt"][0] == {"role": "system", "content": SYSTEM_PROMPT}
    user = row["prompt"][1]["content"]
    assert "Natalia sold clips to 48 of her friends in April" in user
    assert "(no steps yet)" in user and "Write step 1 only." in user


def test_instance_k_shows_steps_1_to_k_minus_1(gsm8k_sample):
    trajs = list(load_trajectories(gsm8k_sample, "gsm8k", max_chars=10_000))
    traj = next(t for t in trajs if len(t.steps) >= 4)
    rows = trajectory_instances(traj)
    assert len(rows) == len(traj.steps) - 1
    for k, row in enumerate(rows, start=1):
        user = row["prompt"][1]["content"]
        assert row["step_index"] == k and row["expert_step"] == traj.steps[k - 1].text
        for j, step in enumerate(traj.steps, start=1):
            assert (f"{j}. {step.text}" in user) == (j < k)


def test_options_last_step_window_and_think_off():
    steps = [Step(f"step {i} text", title=f"T{i}") for i in range(1, 6)]
    traj = Trajectory("t", "P", steps, final_answer="5")
    assert len(trajectory_instances(traj, InstanceOptions(include_last_step=True))) == 5
    rows = trajectory_instances(traj, InstanceOptions(max_previous_steps=2))
    last = rows[-1]["prompt"][1]["content"]  # target step 4: shows steps 2 and 3 only, with their own numbers
    assert "2. **T2** step 2 text\n3. **T3** step 3 text" in last and "1. **T1**" not in last
    assert rows[0]["prompt"][1]["content"].count("(no steps yet)") == 1
    off = trajectory_instances(traj, InstanceOptions(think="off"))
    assert off[0]["prompt"][0]["content"] == SYSTEM_PROMPT_NO_THINK


def test_title_hint_gives_title_and_targets_the_rest():
    traj = Trajectory("t", "P", [Step("Let x = 2.", "Set up"), Step("So 2x = 4.", "Double it")])
    (row,) = trajectory_instances(traj, InstanceOptions(title_hint=True))
    assert row["expert_step"] == "Let x = 2."
    assert "Its title is: Set up" in row["prompt"][1]["content"]
    (plain,) = trajectory_instances(traj)
    assert plain["expert_step"] == "**Set up** Let x = 2."


def test_short_trajectories_are_counted_by_reason():
    trajs = [Trajectory("a", "P", []), Trajectory("b", "P", [Step("one")]),
             Trajectory("c", "P", [Step("one"), Step("two"), Step("three")]), ("skip", "in --exclude")]
    summary = BuildSummary()
    rows = list(build_instances(trajs, summary=summary))
    assert len(rows) == 2
    assert summary.read == 4 and summary.kept == 1 and summary.instances == 2
    assert summary.skipped == {"no steps": 1, "only 1 step": 1, "in --exclude": 1}
    assert summary.steps_stats() == {"min": 3, "median": 3, "mean": 3.0, "max": 3}


@pytest.mark.parametrize("ext", [".jsonl", ".json", ".parquet", ""])
def test_write_and_read_back(tmp_path, gsm8k_sample, ext):
    rows = list(build_instances(load_trajectories(gsm8k_sample, "gsm8k")))
    path = str(tmp_path / f"out{ext}")
    assert write_rows(iter(rows), path) == len(rows)
    if ext == ".jsonl":
        back = [json.loads(line) for line in open(path)]
    elif ext == ".json":
        back = json.load(open(path))
    elif ext == ".parquet":
        back = datasets.Dataset.from_parquet(path).to_list()
    else:
        back = datasets.load_from_disk(path).to_list()
    assert back[5] == rows[5]
    assert [p.name for p in tmp_path.iterdir()] == [f"out{ext}"]  # no temporary file left


def test_failed_write_leaves_nothing(tmp_path):
    def rows():
        yield {"a": 1}
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        write_rows(rows(), str(tmp_path / "out.jsonl"))
    assert list(tmp_path.iterdir()) == []


def test_to_dataset_has_chat_prompts(gsm8k_sample):
    ds = to_dataset(build_instances(load_trajectories(gsm8k_sample, "gsm8k")))
    assert COLUMNS <= set(ds.column_names)
    assert ds[0]["prompt"][1]["role"] == "user"


def test_parquet_is_streamed_in_row_groups(tmp_path):
    """Issue 12: parquet output is written in row groups of 1,000 rows (`ParquetWriter`), not built in memory
    as one table; a column null in the first group (agent `final_answer`) is a string column."""
    import pyarrow.parquet as pq

    rows = [{"prompt": [{"role": "user", "content": f"q{i}"}], "expert_step": f"s{i}", "step_index": i,
             "final_answer": None if i < 1500 else str(i)} for i in range(2500)]
    path = str(tmp_path / "out.parquet")
    assert write_rows(iter(rows), path) == 2500
    meta = pq.ParquetFile(path).metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == \
        [1000, 1000, 500]
    assert pq.read_table(path).to_pylist() == rows
    assert os.listdir(tmp_path) == ["out.parquet"]
