"""`SRLTrainer`: TRL's `GRPOTrainer` plus the paper's dynamic sampling, extended at TRL's generation seam.

Everything but the methods below — the loss, the optimizer step, generation, gradient accumulation,
DDP/DeepSpeed/FSDP — is TRL's and transformers' own. The TRL methods it overrides (tests/test_trainer_seams.py
fails when the pinned TRL no longer has one of them, or when this list misses one):

- `__init__`: starts the generation backend (srl.generation.vllm) and SRL's state.
- `_generate_and_score_completions`: dynamic sampling, below (TRL's maintainers' advice for changing what a batch
  holds).
- `_calculate_rewards`: keeps the rewards TRL computes (and gathers), for the filter and the completions table.
- `_tokenize_prompts`: a pre-filled `<think>` at the start of the response (--think_prefill).
- `_generate`: the think budget's forced tokens go into TRL's `tool_mask` (in context, out of the loss).
- `_generate_single_turn`: the think budget (srl.generation.think_budget), and with --shared_prefix on the hf
  backend, rollouts that prefill each distinct prompt once (srl.generation.shared_prefill).
- `log`: the run folder's completions.jsonl (prompt tail, expert step, parsed action, reward). TRL's own
  `log_completions` is not used for it: it prints a table to the console at every logging step, writes one
  parquet file per step under completions/, and has no parsed action; and the format-error rate is counted here
  over every generation round from the rewards already gathered, for any reward function, where TRL's
  `log_metric` would only reach our own reward functions.
- `_get_per_token_logps_and_entropies`: each distinct prompt forwarded once for the rows that share it, for the
  policy, reference model and old log-probs (srl.training.shared_prefix); TRL's layout where that cannot apply
  (multimodal inputs, MoE aux loss, gradient checkpointing, sliding windows, no KV cache), said once in the log.
- `_prepare_inputs`: with --shared_prefix, the generation batch is shuffled by whole groups (runs of rows with
  the same prompt) instead of by rows before TRL cuts it into micro-batches, so a group's rows stay together.
- `_save_checkpoint`: the complete marker, and rotation only after it (srl.training.checkpoints).
- `_load_from_checkpoint`: the refill stream's position, from the marker.

Dynamic sampling, per generation batch of P prompts x G rollouts (P = `generation_batch_size / G`):

1. TRL generates and scores the batch; its rewards are gathered over all processes.
2. Groups whose population reward std is <= ε are dropped (`srl.training.sampling.informative_groups`). The decision is
   taken on the gathered rewards, so every process takes the same one, even when one prompt's G rollouts are
   spread over several processes.
3. While fewer than P informative groups are kept, fresh prompts are drawn (a seeded stream over the training
   set, resumable) and steps 1-2 repeat, up to `max_generation_rounds` rounds. If the cap is hit, the batch is
   completed with uninformative groups whose tokens are masked out of the loss, and a warning is logged.
4. The kept rows of all processes are concatenated and each process takes its slice, so the global batch is
   exactly P groups and `num_items_in_batch` (the token count TRL's loss divides by) is recomputed for it.

Checkpoints are marked complete only once every file is written (`srl.training.checkpoints`), and old ones are
rotated only after that, so a run killed at any moment resumes from its last complete checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections import defaultdict

import torch
from trl import GRPOTrainer
from trl.trainer.utils import split_tensor_dict

from srl.generation.vllm import colocate_generation_class, resolve_backend
from srl.generation.think_budget import generate_with_think_budget
from srl.rewards.format import OutputFormat, completion_text
from srl.rewards import FORMAT_PENALTY
from srl.training.checkpoints import FilesFollowUmask, mark_complete, read_marker, rotate_complete_checkpoints
from srl.training.reporting import completion_row
from srl.training.shared_prefix import (NoCache, group_permutation, permute_rows, prompt_runs, shared_prefill_rollouts,
                                        shared_prefill_unavailable, shared_prefix_logps, shares_prompts,
                                        unsupported_reason, unwrap)
from srl.training.sampling import RIGHT_PADDED, LEFT_PADDED, concat_rows, informative_groups, take_rows, trim_padding

logger = logging.getLogger("srl")

REFILL_SEED_OFFSET = 7919  # the refill stream's seed is args.seed + this, so it differs from TRL's sampler


class SRLTrainer(FilesFollowUmask, GRPOTrainer):
    """GRPOTrainer with dynamic sampling and SRL's logs (and saved files that follow the umask). Takes TRL's arguments plus:

    Args:
        output_format: the response format the rewards check (used for the format-error rate in the logs).
        completions_path: a JSONL file that receives a few rows per logging step (`completion_row`: SRL's
            expert step and action, RLVR's gold answer and answer, with the reward); None to disable.
    """

    def __init__(self, *args, output_format: OutputFormat | None = None, completions_path: str | None = None,
                 **kwargs):
        super().__init__(*args, **kwargs)
        self.backend = self._start_backend()
        self.output_format = output_format or OutputFormat()
        self.completions_path = completions_path
        self._refill_drawn = 0  # prompts drawn from the refill stream so far (saved in checkpoints)
        self._round_rewards: torch.Tensor | None = None
        self._round_rows: list[dict] = []
        self._fallbacks_logged: set[str] = set()

    # ------------------------------------------------------------------------------------------------------
    # Generation backend (srl.generation.vllm): `hf` is TRL's transformers path; `vllm` is TRL's colocated vLLM path
    # with an engine that runs on a CPU too. TRL then syncs weights after every optimizer step and applies its
    # importance-sampling correction with the engine's log-probs, as with its own vLLM integration.
    def _start_backend(self) -> str:
        if self.args.use_vllm:  # TRL's own vLLM integration (e.g. a server on GPUs), configured by TRL's flags
            return "trl-vllm"
        backend = resolve_backend(self.args.backend)
        if backend == "vllm":
            args = self.args
            self.vllm_generation = colocate_generation_class()(
                model=self.model, accelerator=self.accelerator, processing_class=self.processing_class,
                mode="colocate", max_model_length=args.vllm_max_model_length,
                max_num_seqs=args.per_device_train_batch_size * args.steps_per_generation,
                model_impl=args.vllm_model_impl, trust_remote_code=args.trust_remote_code,
                repetition_penalty=self.repetition_penalty, temperature=self.temperature, top_p=self.top_p,
                top_k=self.top_k, min_p=self.min_p, max_completion_length=self.max_completion_length, logprobs=0,
                generation_kwargs=args.generation_kwargs, eos_token_ids=self.eos_token_ids, seed=args.seed,
                enforce_eager=not args.vllm_compile)
            self.use_vllm, self.vllm_mode, self._last_loaded_step = True, "colocate", -1
        return backend

    # ------------------------------------------------------------------------------------------------------
    # Rewards: keep what TRL gathers, for the filter and the logs.
    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        weights = self.reward_weights.to(rewards_per_func.device).unsqueeze(0)
        self._round_rewards = (rewards_per_func * weights).nansum(dim=1)  # (world * local_rows,)
        if self.accelerator.is_main_process and self.completions_path and self.model.training:
            local = self._round_rewards[:len(completions)].tolist()  # process 0's rows come first
            for inp, completion, reward in zip(inputs, completions, local):
                self._round_rows.append({"step": self.state.global_step + 1, **completion_row(
                    inp, completion_text(completion), self.output_format), "reward": reward})
        return rewards_per_func

    # ------------------------------------------------------------------------------------------------------
    def _generate_and_score_completions(self, inputs):
        if not self.model.training:
            return super()._generate_and_score_completions(inputs)
        start = time.perf_counter()
        if not self.args.dynamic_sampling:  # plain GRPO, plus SRL's metrics (what the filter *would* drop)
            out = super()._generate_and_score_completions(inputs)
            tokens = int(self.accelerator.gather(out["completion_mask"].sum()).sum())
            keep = informative_groups(self._round_rewards, self.num_generations, self.args.dynamic_sampling_eps)
            self._log_round_metrics(1, keep.numel(), int((~keep).sum()), False, tokens, time.perf_counter() - start,
                                    self._round_rewards, self._gather_column(inputs, "step_index"))
            return out
        G = self.num_generations
        world, rank, local_rows = self.accelerator.num_processes, self.accelerator.process_index, len(inputs)
        target_rows = world * local_rows  # the global generation batch, in rows (= completions)
        kept, fillers = [], []  # chunks of global rows
        n_kept = n_fill = n_groups = n_dropped = rounds = tokens = 0
        rewards_seen, step_index = [], []
        batch = inputs
        while True:
            rounds += 1
            out = super()._generate_and_score_completions(batch)
            rewards = self._round_rewards  # (target_rows,), gathered: the same on every process
            rows = self._gather_rows(out)  # every per-row tensor, all processes' rows in global order
            tokens += int(rows["completion_mask"].sum())
            rewards_seen.append(rewards)
            step_index.append(self._gather_column(batch, "step_index"))
            keep = informative_groups(rewards, G, self.args.dynamic_sampling_eps)  # (target_rows / G,)
            n_groups += keep.numel()
            n_dropped += int((~keep).sum())
            keep_rows = keep.repeat_interleave(G).to(rows["advantages"].device)  # (target_rows,)
            if keep.any():
                kept.append(take_rows(rows, keep_rows))
                n_kept += int(keep_rows.sum())
            if n_fill < target_rows and not keep.all():
                fillers.append(take_rows(rows, ~keep_rows))
                n_fill += int((~keep_rows).sum())
            if n_kept >= target_rows or rounds >= self.args.max_generation_rounds:
                break
            batch = self._refill_inputs(local_rows)

        cap_hit = n_kept < target_rows
        if cap_hit:
            for chunk in fillers:  # uninformative: advantage 0 already, and now no tokens in the loss
                chunk["tool_mask"] = torch.zeros_like(chunk["tool_mask"])
            logger.warning("dynamic sampling: only %d of %d groups informative after %d rounds "
                           "(max_generation_rounds); the rest of the batch is masked out of the loss",
                           n_kept // G, target_rows // G, rounds)
        pad = {"prompt_ids": self._tokenizer.pad_token_id, "completion_ids": self._tokenizer.pad_token_id}
        full = take_rows(concat_rows(kept + fillers, pad), slice(0, target_rows))  # exactly target_rows rows
        output = trim_padding(take_rows(full, slice(rank * local_rows, (rank + 1) * local_rows)))
        output["num_items_in_batch"] = (full["completion_mask"] * full["tool_mask"]).sum()  # global, as TRL's
        step_index = torch.cat(step_index) if step_index[0] is not None else None
        self._log_round_metrics(rounds, n_groups, n_dropped, cap_hit, tokens, time.perf_counter() - start,
                                torch.cat(rewards_seen), step_index)
        return output

    # ------------------------------------------------------------------------------------------------------
    # Shared prefixes (srl.training.shared_prefix): one forward per distinct prompt in the loss and log-probs.
    def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep, batch_size=None,
                                           compute_entropy=False, compute_aux_loss=False, **multimodal):
        prompt_width = input_ids.size(1) - logits_to_keep
        prompt_ids, prompt_mask = input_ids[:, :prompt_width], attention_mask[:, :prompt_width]
        runs = prompt_runs(prompt_ids, prompt_mask)
        reason = self._shared_prefix_unavailable(model, prompt_mask, runs, compute_aux_loss, multimodal)
        if reason is None:
            try:
                with self.accelerator.autocast():
                    logps, entropies = shared_prefix_logps(
                        model, prompt_ids, prompt_mask, input_ids[:, prompt_width:], attention_mask[:, prompt_width:],
                        batch_size=batch_size, compute_entropy=compute_entropy, runs=runs)
                return logps, entropies, None
            except NoCache as e:
                reason = str(e)
        if reason:
            self._log_fallback(reason)
        return super()._get_per_token_logps_and_entropies(model, input_ids, attention_mask, logits_to_keep,
                                                          batch_size, compute_entropy, compute_aux_loss, **multimodal)

    def _shared_prefix_unavailable(self, model, prompt_mask, runs, compute_aux_loss, multimodal) -> str | None:
        """Why this call takes TRL's layout ("" when the user chose it), or None for the shared-prefix route."""
        if not self.args.shared_prefix:
            return ""
        if any(value is not None for value in multimodal.values()):
            return "multimodal inputs"
        if compute_aux_loss:
            return "the MoE load-balancing loss (TRL computes it over its own batch layout)"
        if torch.is_grad_enabled() and getattr(unwrap(model), "is_gradient_checkpointing", False):
            return "gradient checkpointing (it turns the KV cache off)"
        if not shares_prompts(runs) and self.accelerator.num_processes == 1:  # (processes: the same forwards on each)
            return "no consecutive rows share a prompt in this batch"
        return unsupported_reason(model, prompt_mask)

    def _log_fallback(self, reason: str) -> None:
        if reason not in self._fallbacks_logged:
            self._fallbacks_logged.add(reason)
            logger.warning("shared prefix: %s: %s", "rollouts through TRL's `generate`" if reason.startswith(
                "rollouts: ") else "TRL's layout (each row forwards its own prompt)", reason.removeprefix("rollouts: "))

    def _prepare_inputs(self, generation_batch):
        """TRL's, except that the generation batch is shuffled by whole groups, not rows (--shared_prefix)."""
        if not (self.model.training and self.args.shared_prefix) or self._is_vlm:  # images: TRL's row shuffle
            return super()._prepare_inputs(generation_batch)
        if self._step % (self.args.steps_per_generation * self.num_iterations) == 0 or self._buffered_inputs is None:
            batch = self._generate_and_score_completions(generation_batch)
            batch = permute_rows(batch, group_permutation(prompt_runs(batch["prompt_ids"], batch["prompt_mask"])))
            self._buffered_inputs = split_tensor_dict(batch, self.args.steps_per_generation)
        return self._buffered_inputs[self._step % self.args.steps_per_generation]

    # ------------------------------------------------------------------------------------------------------
    # The output format on small models: a pre-filled `<think>` and a think budget (see docs/format.md).
    def _tokenize_prompts(self, prompts):
        prompt_ids, images, multimodal_fields = super()._tokenize_prompts(prompts)
        if self.output_format.think_prefilled:  # the response starts inside the monologue
            prefill = self._tokenizer.encode(self.output_format.think_open + "\n", add_special_tokens=False)
            prompt_ids = [ids + prefill for ids in prompt_ids]
        return prompt_ids, images, multimodal_fields

    def _generate(self, prompts):
        self._forced_mask = None
        result = list(super()._generate(prompts))
        if self._forced_mask is not None:
            result[2] = self._forced_mask  # TRL's tool_mask: forced tokens stay in context, out of the loss
        return tuple(result)

    def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        """With `think_budget` N: a monologue still open after N tokens gets `</think>` forced (masked out of
        the loss) and the response continues up to `max_completion_length` tokens (srl.generation.think_budget)."""
        budget, total = self.args.think_budget, self.max_completion_length
        if not budget or budget >= total or self.output_format.think == "off" or images is not None:
            return self._generate_rows(prompt_ids, images, multimodal_fields, num_generations, has_tool_images)

        def generate(ids, max_new_tokens):
            with _max_new_tokens(self, max_new_tokens):
                return self._generate_rows(ids, None, multimodal_fields, num_generations, has_tool_images)

        close = self.output_format.think_close
        out = generate_with_think_budget(
            generate, prompt_ids, budget=budget, max_new_tokens=total,
            close_ids=self._tokenizer.encode(close + "\n", add_special_tokens=False),
            is_closed=lambda ids: close in self._tokenizer.decode(ids, skip_special_tokens=True),
            eos_ids=self.eos_token_ids)
        self._forced_mask = out.model_mask
        mode = "train" if self.model.training else "eval"
        self._metrics[mode]["think_budget/forced_fraction"].append(out.forced / max(len(prompt_ids), 1))
        return out.completion_ids, out.logprobs

    def _generate_rows(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images):
        """TRL's generation; with --shared_prefix on the hf backend, each distinct prompt prefilled once
        (srl.generation.shared_prefill)."""
        reason = shared_prefill_unavailable(self, prompt_ids, images, multimodal_fields)
        if reason is None:
            return shared_prefill_rollouts(self, prompt_ids), None
        if reason:
            self._log_fallback(f"rollouts: {reason}")
        return super()._generate_single_turn(prompt_ids, images, multimodal_fields, num_generations, has_tool_images)

    # ------------------------------------------------------------------------------------------------------
    def _gather_rows(self, out: dict) -> dict[str, torch.Tensor]:
        """All processes' rows of every per-row tensor of a TRL output dict (padded to a common width)."""
        n = out["advantages"].size(0)
        if "tool_mask" not in out:
            out["tool_mask"] = torch.ones_like(out["completion_mask"])
        rows = {}
        for key, value in out.items():
            if key == "num_items_in_batch":
                continue
            if not (torch.is_tensor(value) and value.dim() >= 1 and value.size(0) == n):
                raise NotImplementedError(f"dynamic sampling cannot batch the output field '{key}' (multimodal "
                                          "inputs are not supported); set --dynamic_sampling false")
            if value.dim() >= 2 and self.accelerator.num_processes > 1:
                pad_value = self._tokenizer.pad_token_id if key.endswith("_ids") else 0
                value = self.accelerator.pad_across_processes(value, dim=1, pad_index=pad_value,
                                                              pad_first=key in LEFT_PADDED)
            rows[key] = self.accelerator.gather(value) if self.accelerator.num_processes > 1 else value
        assert set(rows) >= {"prompt_ids", "completion_ids"} and all(k in LEFT_PADDED + RIGHT_PADDED + ("advantages",)
                                                                     for k in rows), sorted(rows)
        return rows

    def _gather_column(self, batch: list[dict], name: str) -> torch.Tensor | None:
        if not batch or name not in batch[0]:
            return None
        values = torch.tensor([int(x[name]) for x in batch], device=self.accelerator.device)
        return self.accelerator.gather(values) if self.accelerator.num_processes > 1 else values

    def _refill_inputs(self, local_rows: int) -> list[dict]:
        """This process's rows of a fresh global batch: `world * local_rows / G` prompts from a seeded stream of
        permutations of the training set (the same on every process), each repeated G times."""
        G, world, rank = self.num_generations, self.accelerator.num_processes, self.accelerator.process_index
        n_prompts = world * local_rows // G
        indices = [self._refill_index(p) for p in range(self._refill_drawn, self._refill_drawn + n_prompts)]
        self._refill_drawn += n_prompts
        global_rows = [i for i in indices for _ in range(G)]
        return [dict(self.train_dataset[i]) for i in global_rows[rank * local_rows:(rank + 1) * local_rows]]

    def _refill_index(self, position: int) -> int:
        """Dataset index at `position` of the refill stream: epoch e is a permutation seeded by seed + offset + e."""
        epoch, offset = divmod(position, len(self.train_dataset))
        if getattr(self, "_refill_epoch", None) != epoch:
            generator = torch.Generator().manual_seed(self.args.seed + REFILL_SEED_OFFSET + epoch)
            self._refill_perm = torch.randperm(len(self.train_dataset), generator=generator)
            self._refill_epoch = epoch
        return int(self._refill_perm[offset])

    def _log_round_metrics(self, rounds, n_groups, n_dropped, cap_hit, tokens, seconds, rewards, step_index):
        m = self._metrics["train"]
        m["dynamic_sampling/rounds"].append(float(rounds))
        m["dynamic_sampling/filtered_fraction"].append(n_dropped / max(n_groups, 1))
        m["dynamic_sampling/cap_hit"].append(float(cap_hit))
        m["tokens_per_second"].append(tokens / max(seconds, 1e-9))
        m["generated_tokens"].append(float(tokens))  # this step's completion tokens, every round included
        m["format_error_rate"].append(float((rewards == FORMAT_PENALTY).double().mean()))
        if step_index is not None:
            by_step = defaultdict(list)
            for k, r in zip(step_index.tolist(), rewards.tolist()):
                by_step[min(k, 10)].append(r)
            for k, values in by_step.items():
                m[f"reward_by_step/{k if k < 10 else '10+'}"].append(sum(values) / len(values))

    # ------------------------------------------------------------------------------------------------------
    # Logging: the completions table.
    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        super().log(logs, start_time)
        if self._round_rows and self.completions_path and self.accelerator.is_main_process:
            with open(self.completions_path, "a", encoding="utf-8") as f:
                for row in self._round_rows[: self.args.completions_to_log]:
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._round_rows = []

    # Checkpoints: complete-marker (saying whether training ended there), rotation after it, refill position. ----
    def _save_checkpoint(self, model, trial):
        limit, self.args.save_total_limit = self.args.save_total_limit, None  # rotate only after the marker
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self.args.save_total_limit = limit
        folder = os.path.join(self._get_output_dir(trial=trial), f"checkpoint-{self.state.global_step}")
        self.accelerator.wait_for_everyone()
        if self.args.should_save:
            mark_complete(folder, {"global_step": self.state.global_step, "refill_drawn": self._refill_drawn,
                                   "training_ended": bool(self.control.should_training_stop)})
            if limit:
                rotate_complete_checkpoints(self._get_output_dir(trial=trial), limit)
        self.accelerator.wait_for_everyone()

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        marker = read_marker(resume_from_checkpoint)
        if marker is not None:
            self._refill_drawn = marker.get("refill_drawn", 0)


@contextlib.contextmanager
def _max_new_tokens(trainer, n: int):
    """Generate at most `n` tokens within this block, whichever backend generates."""
    engine = trainer.vllm_generation if trainer.use_vllm else trainer.generation_config
    field = "max_completion_length" if trainer.use_vllm else "max_new_tokens"
    before = getattr(engine, field)
    setattr(engine, field, n)
    try:
        yield
    finally:
        setattr(engine, field, before)
