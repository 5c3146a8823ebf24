"""What every `srl` subcommand shares: one-line errors with exit code 2 (`run_guarded`). The dataclass-driven
option parser (presets, `--config run.yaml`, flags) is `srl.options`, which the library uses too; the console
and progress bars are in `srl.console`."""

from __future__ import annotations

import argparse
import sys

from srl.errors import InputError, file_system_error

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it


def run_guarded(fn, *args) -> int:
    """Call `fn(*args)`; an `InputError` becomes `srl: error: <one line>` and exit code 2, Ctrl-C one line and
    exit code 130 (the writers have removed their temporary files by then; a training run resumes from its last
    complete checkpoint with --resume)."""
    try:
        return fn(*args) or 0
    except InputError as e:
        print(f"srl: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as e:  # a full or read-only disk, no permission, ...: one line too (any other: the traceback)
        error = file_system_error(e)
        if error is None:
            raise
        print(f"srl: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("srl: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


class OneLineParser(argparse.ArgumentParser):
    """An argparse parser whose errors are one `InputError` line (`srl: error: ...`, exit code 2), as those of
    `srl.options.make_parser`, instead of argparse's usage and message on two lines."""

    def error(self, message: str):
        raise InputError(f"{message} (see `{self.prog} --help`)")
