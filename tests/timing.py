"""Timing helpers for the tests: relative checks that hold on a busy machine."""

import time


def time_ratio(fn, small, large, repeats: int = 3, min_seconds: float = 0.05) -> float:
    """Best time per call of `fn(large)` over that of `fn(small)`: how work grows with the input, which holds on a
    busy machine where absolute times do not (with `large` twice `small`, linear work gives ~2, quadratic ~4).
    Fast calls are repeated until a measurement lasts `min_seconds`, so that the clock's noise does not count."""
    loops = 1
    while True:  # calibrate on the small input
        start = time.perf_counter()
        for _ in range(loops):
            fn(small)
        if time.perf_counter() - start >= min_seconds or loops >= 1 << 16:
            break
        loops *= 4

    def best(arg):
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(loops):
                fn(arg)
            times.append((time.perf_counter() - start) / loops)
        return min(times)

    return best(large) / best(small)
