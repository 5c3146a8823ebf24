import torch

from srl.training.sampling import concat_rows, group_std, informative_groups, take_rows, trim_padding


def test_population_std_and_filter():
    rewards = torch.tensor([0.5, 0.5, 0.5, 0.5, 1.0, 0.0, 1.0, 0.0, -1.0, -1.0, -1.0, -1.0])
    assert group_std(rewards, 4).tolist() == [0.0, 0.5, 0.0]  # population std: sqrt(mean((r - 0.5)^2)) = 0.5
    assert informative_groups(rewards, 4).tolist() == [False, True, False]
    assert informative_groups(rewards, 4, eps=0.5).tolist() == [False, False, False]  # strictly greater than eps


def test_float_noise_in_equal_rewards_is_not_informative():
    r = torch.full((8,), 0.1, dtype=torch.float32) * torch.tensor(3.0) / torch.tensor(3.0)
    assert not informative_groups(r, 8).any()


def test_nan_rewards_do_not_make_a_group_informative_alone():
    assert informative_groups(torch.tensor([float("nan"), 0.0, 0.0, 0.0]), 4).tolist() == [False]


def test_concat_pads_prompts_left_and_completions_right():
    a = {"prompt_ids": torch.tensor([[1, 2]]), "prompt_mask": torch.tensor([[1, 1]]),
         "completion_ids": torch.tensor([[5]]), "completion_mask": torch.tensor([[1]]), "advantages": torch.tensor([1.])}
    b = {"prompt_ids": torch.tensor([[3, 4, 5]]), "prompt_mask": torch.tensor([[1, 1, 1]]),
         "completion_ids": torch.tensor([[6, 7, 8]]), "completion_mask": torch.tensor([[1, 1, 1]]),
         "advantages": torch.tensor([2.])}
    out = concat_rows([a, b], {"prompt_ids": 0, "completion_ids": 0})
    assert out["prompt_ids"].tolist() == [[0, 1, 2], [3, 4, 5]]
    assert out["prompt_mask"].tolist() == [[0, 1, 1], [1, 1, 1]]
    assert out["completion_ids"].tolist() == [[5, 0, 0], [6, 7, 8]]
    assert out["completion_mask"].tolist() == [[1, 0, 0], [1, 1, 1]]
    first = trim_padding(take_rows(out, slice(0, 1)))
    assert first["prompt_ids"].tolist() == [[1, 2]] and first["completion_ids"].tolist() == [[5]]
