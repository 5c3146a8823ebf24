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
