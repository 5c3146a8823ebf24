"""One exception for bad user input, rendered by the CLI as a single line and exit code 2."""

from __future__ import annotations

import contextlib
import errno


class InputError(Exception):
    """Bad input data or configuration, located as precisely as we can.

    Args:
        message: what is wrong and, where possible, how to fix it.
        path: the file (or dataset name) the problem is in.
        line: 1-based line number (JSONL) or record number (JSON list, parquet, datasets), if known.
        field: the field (column) at fault, if any.
        unit: what `line` counts: "line" or "record".

    >>> str(InputError("missing field", path="train.jsonl", line=3, field="answer"))
    "train.jsonl:3: field 'answer': missing field"
    """

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None,
                 field: str | None = None, unit: str = "line"):
        self.message, self.path, self.line, self.field, self.unit = message, path, line, field, unit
        super().__init__(self.render())

    def render(self) -> str:
        where = ""
        if self.path is not None:
            where = str(self.path)
            if self.line is not None:
                where += f":{self.line}" if self.unit == "line" else f": record {self.line}"
            where += ": "
        elif self.line is not None:
            where = f"{self.unit} {self.line}: "
        what = f"field '{self.field}': " if self.field else ""
        return f"{where}{what}{self.message}"


# Errors of the file system that are the user's to fix (a full or read-only disk, a permission, a path through a
# file), with how they are worded; any other OSError is a bug and keeps its traceback.
_FILE_SYSTEM_ERRORS = {
    errno.ENOSPC: "no space left on the device (disk full)",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large for the file system",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOTDIR: "a folder on its path is a file",
    errno.EEXIST: "exists and is not a folder",  # os.makedirs through a file
    errno.EISDIR: "is a folder, not a file",
    errno.ENOENT: "no such file or folder",
    errno.ENAMETOOLONG: "file name too long",
    errno.EIO: "input/output error (a failing disk or a network file system)",
}


def file_system_error(e: OSError, what: str = "") -> InputError | None:
    """The one-line `InputError` for a file-system error (None for any other OSError): the file and what happened,
    then `what` (e.g. "; nothing was written").

    >>> import errno
    >>> str(file_system_error(OSError(errno.EROFS, "Read-only file system", "/mnt/out.jsonl")))
    '/mnt/out.jsonl: read-only file system'
    """
    import os

    if e.errno not in _FILE_SYSTEM_ERRORS:
        return None
    path = os.fspath(e.filename) if isinstance(e.filename, (str, os.PathLike)) else None
    return InputError(_FILE_SYSTEM_ERRORS[e.errno] + what, path=path)


@contextlib.contextmanager
def file_system_errors_reported(what: str = ""):
    """Within the block, a file-system error (`file_system_error`) becomes its one-line `InputError`."""
    try:
        yield
    except OSError as e:
        error = file_system_error(e, what)
        if error is None:
            raise
        raise error from None
