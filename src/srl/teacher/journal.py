"""The resumable record of a teacher run: an append-only JSONL journal, one whole line per finished call.

A run appends one line per answered request and nothing else, so that

- a rerun skips every request whose key is already there (the key is the problem id, the sample number and a
  hash of the model, prompt template and sampling settings: `settings_hash`);
- a kill (even SIGKILL) loses at most the calls in flight: each line is written with a single `os.write` on a
  file opened with O_APPEND, then `fsync`ed;
- the file is never left half-written for the next run: a torn last line (the machine died inside a write) is
  cut off when the journal is opened again (`Journal.open`), and a line that is not JSON anywhere else is an
  `InputError` naming the file and line.

The files users read (the kept solutions) are derived from the journal and written whole, atomically
(`srl.io.write_jsonl`), at the end of every run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterable
from typing import Any

from srl.errors import InputError
from srl.io import check_output_target, check_writable_folder
from srl.json_text import json_bytes

# The field every row we write carries: it tells our files from user data (`check_output`).
MARK = "teacher_settings"


def settings_hash(**settings: Any) -> str:
    """A short, stable hash of the settings that decide a call's answer (model, prompt template, sampling).

    >>> settings_hash(model="m", temperature=1.0) == settings_hash(temperature=1.0, model="m")
    True
    >>> settings_hash(model="m", temperature=1.0) == settings_hash(model="m", temperature=0.7)
    False
    """
    text = json.dumps(settings, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def request_key(item_id: Any, sample: int, settings: str, content: str | None = None) -> str:
    """The journal key of one call: `<id>#<sample>@<settings hash>`, or `<id>#<sample>:<content hash>@<settings>`
    when the call also depends on an input text that could change under the same id (a solution to rewrite)."""
    if content is None:
        return f"{item_id}#{sample}@{settings}"
    return f"{item_id}#{sample}:{hashlib.sha256(content.encode('utf-8')).hexdigest()[:8]}@{settings}"


class Journal:
    """An append-only JSONL file of finished calls, keyed by `row["key"]`.

    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "j.jsonl")
    >>> with Journal.open(path) as j:
    ...     j.append({"key": "a#0@h", MARK: "h", "text": "x"})
    >>> open(path, "a").write('{"key": "b#0@h", "te')  # a torn last line, as a kill inside a write leaves it
    20
    >>> j = Journal.open(path); sorted(j.rows), j.repaired_bytes
    (['a#0@h'], 20)
    >>> j.close()
    """

    def __init__(self, path: str, rows: dict[str, dict], repaired_bytes: int, writable: bool):
        self.path, self.rows, self.repaired_bytes, self._writable = path, rows, repaired_bytes, writable
        self._fd: int | None = None

    @classmethod
    def open(cls, path: str, *, read_only: bool = False) -> Journal:
        """Read the finished rows of `path` and cut off a torn last line. The file is opened for appending (and
        created) with the first `append`: a run in which no call was answered leaves no journal. `read_only`:
        only read (a missing file is empty; a torn line is ignored, not cut off)."""
        rows: dict[str, dict] = {}
        repaired = 0
        if os.path.exists(path):
            if not os.path.isfile(path):
                raise InputError("exists and is not a regular file", path=path)
            with open(path, "rb") as f:
                data = f.read()
            end = data.rfind(b"\n") + 1  # everything after the last newline is a torn write
            if end < len(data) and not read_only:
                repaired = len(data) - end
                with open(path, "r+b") as f:
                    f.truncate(end)
                    f.flush()
                    os.fsync(f.fileno())
            for line_no, raw in enumerate(data[:end].splitlines(), start=1):
                if not raw.strip():
                    continue
                try:
                    row = json.loads(raw)
                except (json.JSONDecodeError, UnicodeDecodeError) as e:
                    raise InputError(f"not a line written by srl (invalid JSON: {e}); use another output",
                                     path=path, line=line_no) from None
                if not isinstance(row, dict) or not isinstance(row.get("key"), str) or MARK not in row:
                    raise InputError("not a line written by srl (no key); use another output", path=path,
                                     line=line_no)
                rows[row["key"]] = row
        return cls(path, rows, repaired, not read_only)

    def append(self, row: dict) -> None:
        """Append one row as one whole line (a single write, then fsync). A write that fails (a full disk) is
        cut off again before the error goes on: the journal keeps whole lines only."""
        if self._fd is None:
            if not self._writable:
                raise ValueError(f"{self.path} was opened read-only")
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)  # the umask applies
        data = json_bytes(row) + b"\n"
        size = os.fstat(self._fd).st_size
        try:
            written = os.write(self._fd, data)
            while written < len(data):  # a regular file takes it in one go; this is for the odd short write
                written += os.write(self._fd, data[written:])
            os.fsync(self._fd)
        except OSError as e:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, size)
            e.filename = e.filename or self.path
            raise
        self.rows[row["key"]] = row

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def check_output(path: str, inputs: Iterable[str | None] = (), field: str = "output") -> None:
    """Refuse (InputError, before any call) an output that is an input, one that cannot be written (a read-only
    or full disk, no permission, a path through a file), or an existing non-empty file that we did not write (its
    first line lacks our `MARK` field): nothing of the user's is ever overwritten, and no call is wasted
    (`srl.io.check_output_target`)."""
    check_output_target(path, inputs, ours=_has_mark, written_by="`srl data generate/rewrite`", kind="file",
                        field=field)
    check_writable_folder(os.path.dirname(os.path.abspath(path)), field)


def _has_mark(path: str) -> bool:
    with open(path, "rb") as f:
        first = f.readline()
    try:
        return not first.strip() or MARK in json.loads(first)
    except (json.JSONDecodeError, UnicodeDecodeError, TypeError):
        return False
