"""One exception for bad user input, rendered by the CLI as a single line and exit code 2."""

from __future__ import annotations


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
