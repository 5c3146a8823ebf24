"""Two trainers timed against each other on a shared machine: they train *at the same time, in two threads that
take strict turns* (one optimizer step each; the other thread waits), so both see the same load, and each
thread's RNG state is saved and restored at its turns, so each trainer draws exactly what it would alone. A
step's time is the wall time of its turn: generation, scoring, loss, optimizer step, logging and fetching the
next batch. `ratio_summary` compares the step times of such runs (benchmarks/trainer_overhead.py)."""

from __future__ import annotations

import random
import statistics
import threading
import time

import numpy as np
import torch
from transformers import TrainerCallback, set_seed


class Baton:
    """Two threads take strict turns; a thread that has finished no longer holds the other one up."""

    def __init__(self, first: int):
        self.cond = threading.Condition()
        self.turn, self.done = first, [False, False]

    def acquire(self, i: int) -> None:
        with self.cond:
            if not self.cond.wait_for(lambda: self.turn == i or self.done[1 - i], timeout=1800):
                raise TimeoutError("the other trainer did not hand over its turn")

    def release(self, i: int, finished: bool = False) -> None:
        with self.cond:
            self.done[i] = self.done[i] or finished
            self.turn = 1 - i
            self.cond.notify_all()


class TakeTurns(TrainerCallback):
    """One optimizer step per turn. A turn runs from a step's `on_step_begin` to the next one's (or the end of
    training), so it covers the step, its logging and fetching the next batch. Each trainer's RNG states are
    kept across turns, so the other trainer's draws do not change what it samples."""

    def __init__(self, baton: Baton, index: int, seed: int):
        self.baton, self.index, self.seed = baton, index, seed
        self.holding, self.start, self.rng, self.times = False, 0.0, None, []

    def _end_turn(self, finished: bool = False) -> None:
        if self.holding:
            self.times.append(time.perf_counter() - self.start)
            self.rng = (torch.get_rng_state(), random.getstate(), np.random.get_state())
            self.holding = False
        self.baton.release(self.index, finished)

    def on_step_begin(self, args, state, control, **kwargs):
        self._end_turn()
        self.baton.acquire(self.index)
        if self.rng is None:
            set_seed(self.seed)  # both start from the same RNG state, whatever the other thread drew meanwhile
        else:
            torch.set_rng_state(self.rng[0])
            random.setstate(self.rng[1])
            np.random.set_state(self.rng[2])
        self.holding, self.start = True, time.perf_counter()

    def on_train_end(self, args, state, control, **kwargs):
        self._end_turn(finished=True)


def train_in_turns(trainers: list, first: int, seed: int) -> list[list[float]]:
    """Train the two `trainers` in strict turns (`trainers[first]` takes the first step), both from RNG state
    `seed`; returns each one's turn times in seconds. An error in either is raised here."""
    baton = Baton(first)
    clocks = [TakeTurns(baton, i, seed) for i in range(2)]
    errors = [None, None]
    for trainer, clock in zip(trainers, clocks):
        trainer.add_callback(clock)

    def train(i):
        try:
            trainers[i].train()
        except BaseException as e:  # noqa: BLE001 - re-raised in the main thread
            errors[i] = e
        finally:
            baton.release(i, finished=True)

    threads = [threading.Thread(target=train, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for e in errors:
        if e is not None:
            raise e
    return [clock.times for clock in clocks]


def median(xs) -> float:
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else float("nan")


def ratio_summary(a_runs: list[list[float]], b_runs: list[list[float]], seed: int = 0) -> dict:
    """The per-step time ratios a/b of paired runs (each a list of per-step times of the same steps): their median
    with its 95% bootstrap interval, the per-step quartiles, and each run's median ratio."""
    ratios = [x / y for a, b in zip(a_runs, b_runs) for x, y in zip(a, b)]
    q = statistics.quantiles(ratios, n=4) if len(ratios) >= 2 else [float("nan")] * 3
    rng = random.Random(seed)
    boot = sorted(median(rng.choices(ratios, k=len(ratios))) for _ in range(2000))
    return {"median": median(ratios), "ci95": (boot[49], boot[1949]), "iqr": (q[0], q[2]),
            "per_run": [median([x / y for x, y in zip(a, b)]) for a, b in zip(a_runs, b_runs)]}
