import os

import pytest

HERE = os.path.dirname(__file__)
DATA = os.path.join(HERE, "data")
REPO = os.path.dirname(HERE)
BUNDLED_GSM8K = os.path.join(REPO, "src", "srl", "data", "gsm8k_train_sample.jsonl")
SHARED_DATA = os.path.abspath(os.path.join(REPO, "..", "shared", "data"))


@pytest.fixture
def gsm8k_sample():
    return BUNDLED_GSM8K


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """The tests' models are tiny: a second thread buys nothing, and on a busy 2-core machine two OpenMP
    threads per process mostly wait for each other (measured here: 10x slower steps under load)."""
    import torch

    threads, env = torch.get_num_threads(), os.environ.get("SRL_TORCH_THREADS")
    torch.set_num_threads(1)
    os.environ["SRL_TORCH_THREADS"] = "1"  # what run_stage would otherwise choose (srl.training.threads)
    yield
    torch.set_num_threads(threads)
    if env is None:
        os.environ.pop("SRL_TORCH_THREADS", None)
    else:
        os.environ["SRL_TORCH_THREADS"] = env

