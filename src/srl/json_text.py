"""JSON text in and out, as every file of the package holds it.

    `parse_json(text, path, line)`  the value, or an `InputError` naming file and line: invalid JSON, NaN or
                                    Infinity, nesting deeper than Python's recursion limit, or a string holding a
                                    lone surrogate (a `\\ud800` escape without its pair: no UTF-8 file can hold it)
    `json_bytes(data)`              UTF-8 JSON, characters kept as they are; a value holding a lone surrogate (a
                                    teacher's reply may) written with `\\uXXXX` escapes, which read back the same
"""

from __future__ import annotations

import json
import re
from typing import Any

from srl.errors import InputError


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a JSON value")


def _json_error(e: ValueError) -> str:
    if isinstance(e, json.JSONDecodeError):
        return f"invalid JSON: {e.msg} (column {e.colno})"
    return f"invalid JSON: {e}"


def parse_json(text: str, path: str, line: int | None, unit: str = "line") -> Any:
    """`text` parsed, or an `InputError` at `path`:`line`: invalid JSON, NaN/Infinity, nesting deeper than Python's
    recursion limit (~1,000 levels), or a string holding a lone surrogate such as `\\ud800` (not a character: no
    UTF-8 file can hold it, so writing it out would fail later)."""
    try:
        data = json.loads(text, parse_constant=_refuse_constant)  # NaN, Infinity: not JSON
    except ValueError as e:
        raise InputError(_json_error(e), path=path, line=line if line is not None else getattr(e, "lineno", None),
                         unit=unit) from None
    except RecursionError:
        raise InputError("invalid JSON: nested too deeply (over ~1,000 levels of lists or objects)", path=path,
                         line=line, unit=unit) from None
    if "\\u" in text and _SURROGATE_ESCAPE.search(text):  # only then can a string hold a lone surrogate
        where = _lone_surrogate(data)
        if where is not None:
            raise InputError("a lone surrogate (\\ud800-\\udfff escape without its pair): not a character, and "
                             "no UTF-8 file can hold it", path=path, line=line, field=where or None, unit=unit)
    return data


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")


def _lone_surrogate(value: Any, where: str = "") -> str | None:
    """The place (`messages[1].content`, "" for the value itself) of the first string in `value` holding a lone
    surrogate, None if there is none."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return where
        return None
    if isinstance(value, dict):
        places = ((f"{where}.{key}" if where else str(key), item) for key, item in value.items())
    elif isinstance(value, list):
        places = ((f"{where}[{i}]", item) for i, item in enumerate(value))
    else:
        return None
    for place, item in places:
        found = _lone_surrogate(item, place)
        if found is not None:
            return found
    return None


def json_bytes(data: Any, *, indent: int | None = None) -> bytes:
    """`data` as UTF-8 JSON (characters kept as they are; values JSON does not know written as `str(value)`). A
    string holding a lone surrogate (no UTF-8 can hold it: a reply decoded from a `\\ud800` escape) makes the
    whole value written with `\\uXXXX` escapes instead, which reads back as exactly the same value."""
    try:
        return json.dumps(data, indent=indent, ensure_ascii=False, default=str).encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(data, indent=indent, ensure_ascii=True, default=str).encode("ascii")
