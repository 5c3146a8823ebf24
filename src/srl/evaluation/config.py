"""`EvalConfig`: every option of `srl eval`, documented; each field is also a command-line flag and a key of a
`--config` YAML file."""

from __future__ import annotations

from dataclasses import InitVar, dataclass, field
from typing import Literal

from srl.data.answers import ANSWER_MODES
from srl.data.prompts import ThinkMode
from srl.generation.vllm import BACKEND_HELP, Backend, check_backend
from srl.errors import InputError

PAPER_SYSTEM_PROMPT = "paper"  # the value of --system_prompt that selects `srl.data.prompts.EVAL_SYSTEM_PROMPT`
NO_SYSTEM_PROMPT = "none"


@dataclass
class EvalConfig:
    """`srl eval`: generate answers to a math benchmark and score them (greedy accuracy, avg@k, pass@k)."""

    model: str = field(metadata={
        "help": "A known model name (see `srl models`, e.g. smollm2-135m-instruct), a local save_pretrained "
                "folder (a `--use_peft` run's final/ too: its base with the LoRA adapter merged), a Hugging Face "
                "id already in the local cache, or `tiny` (tests)."})
    data: str = field(metadata={
        "help": "Benchmark: a .jsonl/.json/.parquet file or datasets folder with a problem and an answer (or a "
                "solution with a \\boxed{} answer, or a GSM8K `#### n` solution), or a known benchmark name "
                "(gsm8k, math500, amc23, aime24, minerva_math, math: files under $SRL_DATA_DIR, default "
                "../shared/data next to the repository)."})
    output_dir: str | None = field(default=None, metadata={
        "help": "Where problems.jsonl (one line per problem) and summary.json are written (default: "
                "runs/eval/<benchmark>-<model>, <model> being a local model's whole path, e.g. "
                "runs/eval/gsm8k-demo_srl_final for runs/demo/srl/final). A folder holding another model's results "
                "is refused unless --overwrite."})
    overwrite: bool = field(default=False, metadata={
        "help": "Write into --output_dir even when it holds the results of another model."})
    limit: int | None = field(default=None, metadata={
        "help": "Evaluate a fixed subset of N problems: a sample drawn with --seed, the same on every run (and "
                "the subset for N is contained in the one for any larger N). Default: all problems."})
    seed: int = field(default=0, metadata={
        "help": "Seed of the --limit subset and of sampling."})
    greedy: bool = field(default=True, metadata={
        "help": "Generate one greedy answer per problem and report greedy accuracy (--no_greedy to skip)."})
    k: int = field(default=0, metadata={
        "help": "Sample k answers per problem at --temperature and report avg@k (mean accuracy of the samples) "
                "and unbiased pass@j for j = 1, 2, 4, ..., k (0: no sampling)."})
    temperature: float = field(default=1.0, metadata={
        "help": "Sampling temperature for the k samples (the paper: 1.0)."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling for the k samples (1.0: off)."})
    top_k: int = field(default=0, metadata={"help": "Top-k sampling for the k samples (0: off)."})
    max_new_tokens: int = field(default=512, metadata={
        "help": "Longest response, in tokens; a response cut there counts as truncated (and is scored as is)."})
    batch_size: int = field(default=64, metadata={
        "help": "Sequences generated together (left-padded; prompts of similar length are batched together). "
                "On CPU, tokens/s grows with the batch up to ~64 (docs/benchmarks.md)."})
    dtype: Literal["auto", "float32", "bfloat16"] = field(default="auto", metadata={
        "help": "Weights' dtype for generation: auto = bfloat16 where the hardware runs it natively (GPU, CPU "
                "with AMX/AVX512-BF16: 2.1-2.7x fp32 at batched shapes), else float32 (bf16 is 0.01-0.5x fp32 on "
                "an AVX2 CPU); measured in docs/benchmarks.md, decided by srl.precision. The run prints its choice."})
    torch_threads: int = field(default=0, metadata={
        "help": "torch CPU threads, as `srl train --torch_threads` (0: torch's default, one per core; `--threads` is "
                "the old name). Give each process its own cores: two processes with 2 threads each on 2 cores run "
                "~10x slower than with 1 each."})
    timeout: float = field(default=5.0, metadata={
        "help": "Time limit in seconds for checking one answer's equivalence (math-verify); over it = wrong."})
    problem_field: str | None = field(default=None, metadata={
        "help": "Problem field (default: `problem`, else `question`)."})
    answer_field: str | None = field(default=None, metadata={
        "help": "Gold-answer field (default: `answer` when present). A value holding `#### n` (GSM8K) or "
                "\\boxed{} is reduced to that answer."})
    solution_field: str | None = field(default=None, metadata={
        "help": "Solution field whose last \\boxed{} is the gold answer when there is no answer field "
                "(default: `solution`)."})
    id_field: str | None = field(default=None, metadata={
        "help": "Problem id field (default: `id`, `unique_id` or `idx` when present, else <file>-<line>)."})
    answer_mode: Literal["auto", "boxed", "gsm8k", "last_number"] = field(default="auto", metadata={
        "help": "How the answer is taken from a response: auto = the last \\boxed{} (nested braces), else a "
                "`#### n` line (then the last number, see --number_fallback); or only one of those."})
    number_fallback: Literal["auto", "on", "off"] = field(default="auto", metadata={
        "help": "With --answer_mode auto, fall back on the last number of the response: auto = for GSM8K-style "
                "gold answers (`#### n`) only."})
    system_prompt: str = field(default=PAPER_SYSTEM_PROMPT, metadata={
        "help": "System message: `paper` = the paper's evaluation prompt (reason step by step, answer in "
                "\\boxed{}, <think> scratch paper allowed), `none` = no system message (the chat template's "
                "default, if any), or the text itself."})
    user_template: str = field(default="{problem}", metadata={
        "help": "The user turn; `{problem}` is replaced by the problem."})
    stepwise: bool = field(default=False, metadata={
        "help": "Step-wise inference: solve each problem one step at a time under the SRL prompt (each action "
                "appended to the context as the expert's steps are in a training instance) until an action gives "
                "a final answer, a response breaks the format, or --max_steps; the actions are scored as a whole "
                "solution. --system_prompt and --user_template are not used; --max_new_tokens is per step."})
    think: ThinkMode = field(default="required", metadata={
        "help": "--stepwise: the output format of the SRL prompt, as in `srl train --think` (required: "
                "<think>...</think> then the action; optional; off: the whole response is the action)."})
    think_prefill: bool = field(default=False, metadata={
        "help": "--stepwise: `<think>` is already in each prompt (as `srl train --think_prefill`)."})
    max_steps: int = field(default=20, metadata={"help": "--stepwise: the most actions per problem."})
    template: str | None = field(default=None, metadata={
        "help": "--stepwise: the prompt template file the model was trained with (`srl data build --template`)."})
    backend: Backend = field(default="hf", metadata={
        "help": BACKEND_HELP + " With vllm, --batch_size is raised to at least 256 (the engine schedules the "
                               "sequences itself) and --torch_threads is ignored (the engine uses this process's cores)."})

    threads: InitVar[int | None] = None  # the old name of torch_threads (not an option of its own)

    def __post_init__(self, threads: int | None = None):
        def positive(name: str, allow_zero: bool = False):
            value = getattr(self, name)
            if value is None:
                return
            if value < 0 or (value == 0 and not allow_zero):
                raise InputError(f"must be {'>= 0' if allow_zero else '>= 1'}, got {value}", field=name)

        for name in ("limit", "max_new_tokens", "batch_size", "max_steps"):
            positive(name)
        if threads is not None:  # the old name (Python callers, YAML files, records)
            self.torch_threads = threads
        for name in ("k", "torch_threads", "top_k"):
            positive(name, allow_zero=True)
        if not self.greedy and self.k == 0:
            raise InputError("nothing to evaluate: --no_greedy needs --k >= 1", field="k")
        if self.k > 0 and not self.temperature > 0:
            raise InputError(f"must be > 0 for sampling, got {self.temperature}", field="temperature")
        if not 0 < self.top_p <= 1:
            raise InputError(f"must be in (0, 1], got {self.top_p}", field="top_p")
        if not self.timeout > 0:
            raise InputError(f"must be > 0, got {self.timeout}", field="timeout")
        if self.answer_mode not in ANSWER_MODES:
            raise InputError(f"unknown answer mode '{self.answer_mode}' (expected one of {', '.join(ANSWER_MODES)})",
                             field="answer_mode")
        if "{problem}" not in self.user_template:
            raise InputError("must contain {problem}", field="user_template")
        try:
            self.user_template.format(problem="")
        except (KeyError, IndexError, ValueError) as e:
            raise InputError(f"not a valid template ({e!r}); write literal braces as {{{{ }}}}",
                             field="user_template") from None
        for name in ("model", "data"):
            if not str(getattr(self, name) or "").strip():
                raise InputError("empty", field=name)
        check_backend(self.backend)
        if self.template:  # a bad template file fails now, before the model loads
            from srl.data.prompts import PromptTemplate

            PromptTemplate.from_file(self.template)
