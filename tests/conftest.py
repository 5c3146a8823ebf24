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


@pytest.fixture
def disks(tmp_path):
    """Mount `tmp_path/full` (64 KiB tmpfs) and `tmp_path/ro` (read-only tmpfs); unmounted afterwards."""
    import subprocess

    if os.geteuid() != 0:
        pytest.skip("mounting a full or read-only file system needs root (CI runs the tests as root)")
    mounted = []
    try:
        for name, options in (("full", "size=64k"), ("ro", "size=64k,ro")):
            (tmp_path / name).mkdir()
            result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(tmp_path / name)],
                                    capture_output=True, text=True)
            if result.returncode:
                pytest.skip(f"cannot mount a tmpfs here (root without CAP_SYS_ADMIN?): {result.stderr.strip()}")
            mounted.append(tmp_path / name)
        yield tmp_path
    finally:
        for path in mounted:
            subprocess.run(["umount", str(path)], check=True)
