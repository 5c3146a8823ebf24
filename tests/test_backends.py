"""Generation backends (srl.generation.vllm): choosing one, and — where vLLM is installed and runs — that the vLLM engine
agrees with transformers: greedy outputs, weights after a sync, and the engine's log-probs.

The vLLM tests share one engine over a tiny local Llama (head size 32, which vLLM's CPU attention supports),
started eagerly (no torch.compile) in this process; they are skipped, with the reason, where vLLM cannot run."""

import logging
import os

import pytest
import torch

from srl.generation import vllm as backends
from srl.models import plain_weights
from srl.generation.vllm import resolve_backend, vllm_unavailable_reason
from srl.errors import InputError
from srl.tiny import synthetic_trajectories, tiny_model, tiny_tokenizer

REASON = vllm_unavailable_reason()
needs_vllm = pytest.mark.skipif(REASON is not None, reason=f"vLLM cannot run here: {REASON}")


# --- choosing a backend -------------------------------------------------------------------------------------
def test_auto_falls_back_to_hf_once_with_the_reason(monkeypatch, caplog):
    monkeypatch.setattr(backends, "vllm_unavailable_reason", lambda: "vLLM is not installed")
    monkeypatch.setattr(backends, "_said_fallback", False)
    with caplog.at_level(logging.WARNING, logger="srl"):
        assert resolve_backend("auto") == "hf"
        assert resolve_backend("auto") == "hf"
    assert [r.getMessage() for r in caplog.records] == [
        "backend auto: generating with transformers (hf) because vLLM is not installed"]
    with pytest.raises(InputError, match="field 'backend': vllm cannot run here: vLLM is not installed"):
        resolve_backend("vllm")
    assert resolve_backend("hf") == "hf"


def test_bad_backend_is_an_input_error_naming_the_field():
    from srl.training.config import SRLConfig
    from srl.evaluation import EvalConfig

    with pytest.raises(InputError, match="field 'backend': must be one of hf, vllm, auto"):
        SRLConfig(output_dir="unused", use_cpu=True, bf16=False, backend="fast")
    with pytest.raises(InputError, match="field 'backend'"):
        EvalConfig(model="tiny", data="gsm8k", backend="fast")
    with pytest.raises(InputError, match="field 'backend': --backend vllm runs its own"):
        SRLConfig(output_dir="unused", use_cpu=True, bf16=False, backend="vllm", use_vllm=True)


def test_vllm_environment_follows_the_affinity_and_respects_the_user(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 3, 5, 6, 7})
    for key in ("VLLM_CPU_OMP_THREADS_BIND", "VLLM_CPU_KVCACHE_SPACE", "VLLM_ENABLE_V1_MULTIPROCESSING",
                "VLLM_CPU_NUM_OF_RESERVED_CPU"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "7")
    env = backends.configure_vllm_environment()
    assert env == {"VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
                   "VLLM_CPU_KVCACHE_SPACE": "7", "VLLM_CPU_OMP_THREADS_BIND": "0-1,3,5-7"}


# --- vLLM against transformers ------------------------------------------------------------------------------
PROMPTS = [t.problem for t in synthetic_trajectories(12, seed=3)]


def prompt_ids(tokenizer, texts=PROMPTS):
    return [tokenizer(tokenizer.apply_chat_template([{"role": "user", "content": t}], add_generation_prompt=True,
                                                    tokenize=False), add_special_tokens=False)["input_ids"]
            for t in texts]


def hf_greedy(model, tokenizer, ids, n=12):
    out = []
    for row in ids:  # one at a time: no padding, so the only difference left is the engine's arithmetic
        x = torch.tensor([row])
        with torch.inference_mode():
            y = model.generate(input_ids=x, attention_mask=torch.ones_like(x), do_sample=False, max_new_tokens=n,
                               min_new_tokens=n, pad_token_id=tokenizer.pad_token_id)
        out.append(y[0, len(row):].tolist())
    return out


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    """(llm, model, tokenizer): a tiny model (random weights, seed 0) and a vLLM engine started from it."""
    if REASON is not None:
        pytest.skip(f"vLLM cannot run here: {REASON}")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    tokenizer = tiny_tokenizer()
    model = tiny_model(tokenizer, hidden_size=128).eval()  # 4 heads of 32
    folder = backends.save_for_engine(model, tokenizer)
    try:
        llm = backends.make_llm(folder, dtype="float32", seed=0, max_model_len=512)
    finally:
        import shutil

        shutil.rmtree(folder)
    return llm, model, tokenizer


def vllm_greedy(llm, ids, n=12):
    from vllm import SamplingParams

    params = SamplingParams(temperature=0.0, max_tokens=n, ignore_eos=True)
    return [list(o.outputs[0].token_ids) for o in llm.generate([{"prompt_token_ids": r} for r in ids], params,
                                                                   use_tqdm=False)]


@pytest.mark.slow  # starts a vLLM engine
@needs_vllm
def test_greedy_outputs_agree_with_transformers(engine, record_property):
    llm, model, tokenizer = engine
    ids = prompt_ids(tokenizer)
    hf, vl = hf_greedy(model, tokenizer, ids), vllm_greedy(llm, ids)
    agree = sum(a == b for a, b in zip(hf, vl)) / len(ids)
    record_property("greedy_agreement", agree)
    print(f"greedy agreement vllm/hf: {agree:.0%} of {len(ids)} prompts x 12 tokens")
    assert agree >= 0.9  # float32 on both sides: a rare near-tie may still flip


@pytest.mark.slow  # starts a vLLM engine
@needs_vllm
def test_weight_sync_changes_and_restores_the_outputs(engine):
    llm, model, tokenizer = engine
    ids = prompt_ids(tokenizer)
    before = vllm_greedy(llm, ids)
    original = {k: v.clone() for k, v in model.state_dict().items()}
    try:
        torch.manual_seed(1)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 0.5)
        backends.sync_weights(llm, plain_weights(model))
        after = vllm_greedy(llm, ids)
        assert after != before
        hf = hf_greedy(model, tokenizer, ids)
        assert sum(a == b for a, b in zip(hf, after)) / len(ids) >= 0.9  # the engine runs the new weights
    finally:
        model.load_state_dict(original)
        backends.sync_weights(llm, plain_weights(model))
    assert vllm_greedy(llm, ids) == before


@pytest.mark.slow  # starts a vLLM engine
@needs_vllm
def test_engine_logprobs_match_recomputed_ones(engine):
    from vllm import SamplingParams

    llm, model, tokenizer = engine
    ids = prompt_ids(tokenizer)[:6]
    temperature = 0.7
    params = SamplingParams(temperature=temperature, max_tokens=10, ignore_eos=True, logprobs=0, seed=0)
    outs = llm.generate([{"prompt_token_ids": r} for r in ids], params, use_tqdm=False)
    worst = 0.0
    for row, out in zip(ids, outs):
        completion = list(out.outputs[0].token_ids)
        engine_lp = [next(iter(d.values())).logprob if len(d) == 1 else d[t].logprob
                     for d, t in zip(out.outputs[0].logprobs, completion)]
        x = torch.tensor([row + completion])
        with torch.inference_mode():
            logits = model(input_ids=x).logits[0, len(row) - 1:-1] / temperature  # what TRL recomputes
        recomputed = torch.log_softmax(logits.float(), -1).gather(1, torch.tensor(completion)[:, None])[:, 0]
        worst = max(worst, float((recomputed - torch.tensor(engine_lp)).abs().max()))
    assert worst < 1e-3, worst  # float32 (bf16 would need ~5e-2)


@pytest.mark.slow  # starts a vLLM engine
@needs_vllm
def test_srl_eval_with_vllm_matches_hf(tmp_path):
    from srl.evaluation import EvalConfig, evaluate

    data = os.path.join(os.path.dirname(__file__), "data", "gsm8k_test_sample.jsonl")
    tokenizer = tiny_tokenizer()
    model = tiny_model(tokenizer, hidden_size=128)
    results = {}
    for backend in ("hf", "vllm"):
        cfg = EvalConfig(model="tiny", data=data, limit=3, max_new_tokens=8, backend=backend,
                         output_dir=str(tmp_path / backend))
        results[backend] = evaluate(cfg, model=model, tokenizer=tokenizer, progress=False, print_table=False)
    for a, b in zip(results["hf"].records, results["vllm"].records):
        assert a["greedy"]["tokens"] == b["greedy"]["tokens"] and a["greedy"]["response"] == b["greedy"]["response"]


@pytest.mark.slow  # starts a vLLM engine
@needs_vllm
@pytest.mark.parametrize("think_budget,lora", [(None, False), (4, True)])
def test_trainer_generates_with_vllm_and_syncs_after_every_step(tmp_path, think_budget, lora):
    from srl.training.config import SRLConfig
    from srl.data.instances import InstanceOptions, to_dataset, trajectory_instances
    from srl.rewards.format import OutputFormat
    from srl.training.trainer import SRLTrainer

    tokenizer = tiny_tokenizer()
    model = tiny_model(tokenizer, hidden_size=128)
    rows = [r for t in synthetic_trajectories(16) for r in trajectory_instances(t, InstanceOptions(think="off"))]

    def reward(completions, **kwargs):
        return [len(c[0]["content"]) / 10 for c in completions]  # varies across rollouts: nothing is filtered

    args = SRLConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, per_device_train_batch_size=8,
                     num_generations=4, max_completion_length=8, max_steps=2, learning_rate=1e-2, save_strategy="no",
                     seed=0, dataloader_pin_memory=False, disable_tqdm=True, logging_steps=1, backend="vllm",
                     think_budget=think_budget, dynamic_sampling=False)
    fmt = OutputFormat(think="optional") if think_budget else OutputFormat(think="off")
    peft = None
    if lora:
        from peft import LoraConfig

        peft = LoraConfig(r=4, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = SRLTrainer(model=model, reward_funcs=[reward], args=args, train_dataset=to_dataset(rows),
                         processing_class=tokenizer, output_format=fmt, peft_config=peft)
    assert trainer.backend == "vllm" and trainer.use_vllm
    trainer.train()
    assert trainer._last_loaded_step == 1  # synced before generating at steps 0 and 1
    ratios = [h["sampling/importance_sampling_ratio/mean"] for h in trainer.state.log_history
              if "sampling/importance_sampling_ratio/mean" in h]
    assert len(ratios) == 2 and all(abs(r - 1) < 0.01 for r in ratios)  # TRL's correction, engine == trainer
    trainer.vllm_generation.sync_weights()  # the weights after the last step (LoRA: merged)
    ids = prompt_ids(tokenizer)
    llm = trainer.vllm_generation.llm
    hf = hf_greedy(trainer.model.eval(), tokenizer, ids)
    if lora:  # the adapters were trained, so the synced (merged) weights are not the base model's
        assert any(p.abs().sum() > 0 for n, p in trainer.model.named_parameters() if "lora_B" in n)
    assert sum(a == b for a, b in zip(hf, vllm_greedy(llm, ids))) / len(ids) >= 0.9
