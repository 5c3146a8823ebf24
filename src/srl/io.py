"""Every file the package reads or writes goes through here.

Reading:
    `read_records(source)`   the rows of a .jsonl / .json / .parquet file, a `datasets` folder or a Dataset, each
                             a `Record` that knows its file and line, so that any problem with it is an
                             `InputError` naming file, line and field
    `read_mapping(path)`     a YAML (or JSON) mapping, e.g. a `--config` file, a template or a chat format file
Writing, atomically (a temporary file beside the target, flushed and fsynced, renamed over it at the end; removed
if anything fails, so a reader never sees half a file):
    `atomic_path(path)`      the primitive: a temporary path to write (a file or a folder) that replaces `path`
    `atomic_open(path)`      a text file opened on such a path
    `write_json`, `write_jsonl`, `write_text`, `write_parquet` (streamed in row groups)
    `remove_stale_temporaries(path)`  what a run killed with SIGKILL left beside `path`
Checking before the work starts (one line, exit code 2, nothing written):
    `check_output_target(path, inputs, ours=...)`  never replace user data or an input
    `check_writable_folder(path)`                  a folder that can be written
Locking:
    `file_lock(path)`        an inter-process lock (`filelock`), e.g. for a cache two ranks may fill at once
JSON text itself (parsed with its errors located, written as UTF-8 bytes) is `srl.json_text`.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import shutil
import sys
import tempfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from srl.errors import InputError, file_system_error
from srl.json_text import json_bytes, parse_json


# --- reading records ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Record:
    """A raw input row and where it came from (1-based `line` for JSONL, `record` number otherwise)."""

    data: dict[str, Any]
    path: str
    line: int
    unit: str = "line"

    def error(self, message: str, field: str | None = None) -> InputError:
        return InputError(message, path=self.path, line=self.line, field=field, unit=self.unit)

    def text(self, name: str, *, required: bool = True, max_chars: int | None = None) -> str | None:
        """The string field `name`, checked: present, a string (numbers are converted), not empty."""
        if name not in self.data or self.data[name] is None:
            if required:
                raise self.error("missing (use the field-name options if it has another name)", name)
            return None
        value = self.data[name]
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            raise self.error(f"expected a string, got {type(value).__name__}", name)
        if required and not value.strip():
            raise self.error("empty", name)
        if max_chars is not None and len(value) > max_chars:
            raise self.error(f"{len(value):,} characters, over the limit of {max_chars:,} (raise --max-chars)", name)
        return value


COMPRESSIONS = {".gz": "gzip", ".zst": "zstandard"}


def file_stem(path: str) -> str:
    """The file name without its extension, and without a compression suffix first: `a/train.jsonl.gz` -> `train`."""
    name = os.path.basename(str(path))
    if os.path.splitext(name)[1].lower() in COMPRESSIONS:
        name = os.path.splitext(name)[0]
    return os.path.splitext(name)[0]


def _open_binary(path: str):
    """`path` opened for reading bytes, decompressed on the fly when it ends in `.gz` (stdlib) or `.zst` (the
    `zstandard` package, if installed)."""
    ext = os.path.splitext(path)[1].lower()
    if ext == ".gz":
        import gzip

        return gzip.open(path, "rb")
    if ext == ".zst":
        try:
            import zstandard
        except ImportError:
            raise InputError("reading .zst needs the zstandard package: pip install zstandard", path=path) from None
        return zstandard.open(path, "rb")
    return open(path, "rb")


@contextlib.contextmanager
def _decompressing(path: str, lines_read: Callable[[], int] = lambda: 0):
    """A corrupt or cut-off `.gz` / `.zst` file as one `InputError` (gzip, zlib and zstandard raise their own
    exceptions, EOFError for a file that ends early)."""
    compressed = os.path.splitext(path)[1].lower() in COMPRESSIONS
    try:
        yield
    except Exception as e:
        known = isinstance(e, (EOFError, zlib.error, gzip.BadGzipFile)) or type(e).__name__ == "ZstdError"
        if not compressed or not known:
            raise
        after = f" after line {lines_read():,}" if lines_read() else ""
        if isinstance(e, EOFError):
            reason = "the compressed data ends early (a partial download or copy?)"
        else:
            reason = f"not valid {COMPRESSIONS[os.path.splitext(path)[1].lower()]} data ({str(e) or type(e).__name__})"
        raise InputError(f"cannot decompress{after}: {reason}", path=path) from None


def _read_jsonl(path: str) -> Iterator[Record]:
    line_no = 0
    with _decompressing(path, lambda: line_no), _open_binary(path) as f:
        for line_no, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise InputError(f"not UTF-8 (byte 0x{raw[e.start]:02x} at column {e.start + 1})",
                                 path=path, line=line_no) from None
            if not line.strip():
                continue
            data = parse_json(line, path, line_no)
            if not isinstance(data, dict):
                raise InputError(f"expected a JSON object, got {type(data).__name__}", path=path, line=line_no)
            yield Record(data, path, line_no)


def _read_json(path: str) -> Iterator[Record]:
    with _decompressing(path), _open_binary(path) as f:
        raw = f.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line_no = raw.count(b"\n", 0, e.start) + 1
        raise InputError(f"not UTF-8 (byte 0x{raw[e.start]:02x})", path=path, line=line_no) from None
    data = parse_json(text, path, None)
    if isinstance(data, dict):  # {"data": [...]} or a single record
        lists = [v for v in data.values() if isinstance(v, list) and v and all(isinstance(x, dict) for x in v)]
        data = lists[0] if len(lists) == 1 else [data]
    if not isinstance(data, list):
        raise InputError("expected a JSON list of objects", path=path)
    for i, item in enumerate(data, start=1):
        if not isinstance(item, dict):
            raise InputError(f"expected a JSON object, got {type(item).__name__}", path=path, line=i, unit="record")
        yield Record(item, path, i, unit="record")


def _read_rows(rows: Iterable[dict[str, Any]], name: str) -> Iterator[Record]:
    for i, item in enumerate(rows, start=1):
        yield Record(dict(item), name, i, unit="record")


def read_records(source: Any, fmt: str | None = None) -> Iterator[Record]:
    """Yield the raw records of `source`: a path (`.jsonl`, `.json` — also `.gz`/`.zst`-compressed —, `.parquet`,
    a `save_to_disk` folder) or
    a `datasets.Dataset` / list of dicts. `fmt` forces the file type ("jsonl", "json", "parquet", "arrow")."""
    if not isinstance(source, (str, os.PathLike)):
        yield from _read_rows(source, getattr(source, "info", None) and source.info.dataset_name or "<dataset>")
        return
    path = os.fspath(source)
    if not path.strip():
        raise InputError("an empty file name: name the file to read")
    if not os.path.exists(path):
        raise InputError("no such file or folder", path=path)
    stem = path[: -len(os.path.splitext(path)[1])] if os.path.splitext(path)[1].lower() in COMPRESSIONS else path
    kind = fmt or ("arrow" if os.path.isdir(path) else os.path.splitext(stem)[1].lstrip(".").lower())
    if stem != path and kind not in ("jsonl", "ndjson", "json"):
        raise InputError("only .jsonl and .json files are read compressed", path=path)
    if kind in ("jsonl", "ndjson"):
        yield from _read_jsonl(path)
    elif kind == "json":
        yield from _read_json(path)
    elif kind == "parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except Exception as e:  # pyarrow raises several types for corrupt files
            raise InputError(f"cannot read parquet: {e}", path=path) from None
        yield from _read_rows(table.to_pylist(), path)
    elif kind == "arrow":
        import datasets

        try:
            ds = datasets.load_from_disk(path)
        except Exception as e:
            raise InputError(f"cannot read a datasets folder: {e}", path=path) from None
        if isinstance(ds, datasets.DatasetDict):
            ds = ds["train"] if "train" in ds else next(iter(ds.values()))
        yield from _read_rows(ds, path)
    else:
        raise InputError(f"unknown file type '{kind}' (expected .jsonl, .json, .parquet or a datasets folder)",
                         path=path)


# --- reading a mapping (config, template, format files) -------------------------------------------------------
def read_mapping(path: str, known: Iterable[str] | None = None, what: str = "file") -> dict[str, Any]:
    """The mapping held by a YAML file (JSON when the name ends in `.json`); an empty file is `{}`.

    Args:
        known: if given, every key must be one of these (else an `InputError` naming the key).
        what: what the file is, for the error when it does not exist ("config file", "template file", ...).

    Errors (missing file, not UTF-8, a syntax error with its line, not a mapping) are one-line `InputError`s.
    """
    if not os.path.exists(path):
        raise InputError(f"no such {what}", path=path)
    if os.path.isdir(path):
        raise InputError(f"is a folder; a {what} was expected", path=path)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError:
        raise InputError("not UTF-8", path=path) from None
    except OSError as e:
        raise file_system_error(e) or e from None
    if path.endswith(".json"):
        data = parse_json(text, path, None) if text.strip() else {}
    else:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            line = getattr(getattr(e, "problem_mark", None), "line", None)
            raise InputError(f"invalid YAML: {getattr(e, 'problem', None) or str(e).splitlines()[0]}", path=path,
                             line=line + 1 if line is not None else None) from None
        except RecursionError:
            raise InputError("invalid YAML: nested too deeply", path=path) from None
        data = {} if data is None else data
    known = None if known is None else set(known)
    if not isinstance(data, dict):
        expected = f"a mapping with keys among {sorted(known)}" if known else "a mapping of option: value"
        raise InputError(f"expected {expected}", path=path)
    for key in data:
        if known is not None and key not in known:
            raise InputError(f"unknown key (expected one of {sorted(known)})", path=path, field=key)
    return data


def read_string_fields(cls, path: str, what: str):
    """`cls()` (a dataclass) with the fields given in a YAML/JSON file replaced; every value must be a string."""
    from dataclasses import fields, replace

    values = read_mapping(path, {f.name for f in fields(cls)}, what)
    for key, value in values.items():
        if not isinstance(value, str):
            raise InputError("expected a string", path=path, field=key)
    return replace(cls(), **values)


# --- checking before the work starts ----------------------------------------------------------------------------
def check_output_target(path: str, inputs: Iterable[str | None] = (), *, ours: Callable[[str], bool],
                        written_by: str, kind: Literal["file", "folder", "any"] = "any", field: str = "output") -> None:
    """Refuse (InputError on `field`, before any work) to write `path` where that would destroy user
    data. Replaced are only: nothing, an empty file or folder, or a previous output of ours (`ours(path)`: our
    marker, our fields); never an input of the run (`inputs`), nor a folder that contains one, nor (`kind`) a
    folder where a file is written or a file where a folder is. `written_by` names the command in the message."""
    target = os.path.abspath(path)
    for source in inputs:
        if not source:
            continue
        source = os.path.abspath(source)
        if source == target or source.startswith(target.rstrip(os.sep) + os.sep):
            raise InputError("is also an input (or contains one); choose another output", path=path, field=field)
    if not os.path.lexists(path):
        return
    if os.path.isdir(path) and not os.path.islink(path):
        if kind == "file":
            raise InputError("is a folder, but a file was asked for; choose another output", path=path,
                             field=field)
        if not os.listdir(path):
            return
    elif os.path.isfile(path) and not os.path.islink(path):
        if kind == "folder":
            raise InputError("exists and is a file, but a folder was asked for: remove it yourself or choose another "
                             "output", path=path, field=field)
        if os.path.getsize(path) == 0:
            return
    else:
        raise InputError("exists and is not a regular file or folder; choose another output", path=path,
                         field=field)
    if not ours(path):
        raise InputError(f"exists and was not written by {written_by}; refusing to replace it (remove it yourself "
                         "or choose another output)", path=path, field=field)


def check_writable_folder(path: str, field: str = "output_dir") -> None:
    """Refuse (InputError, one line) a folder that cannot be written, before any work: `path` must be a folder,
    or not exist yet under a folder, and a file must be creatable in the nearest folder that exists (a probe
    file is created and removed; nothing else is left behind). Catches a path under a file, a read-only or
    full disk, and a folder without write permission."""
    target = os.path.abspath(path)
    if os.path.exists(target) and not os.path.isdir(target):
        raise InputError("exists and is not a folder", path=path, field=field)
    existing = target
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise InputError(f"cannot be created: {existing} is a file, not a folder", path=path, field=field)
    try:
        fd, probe = tempfile.mkstemp(prefix=".srl-write-check-", dir=existing)
    except OSError as e:
        raise InputError(f"cannot be written ({e.strerror or e}{': ' + existing if existing != target else ''})",
                         path=path, field=field) from None
    os.close(fd)
    os.unlink(probe)


# --- writing atomically -----------------------------------------------------------------------------------------
PARTIAL = "srl-partial"  # in the names of the writers' temporary files: `.<name>.srl-partial-<random>`


def partial_prefix(path: str) -> str:
    """The start of the name of a temporary file or folder that is to become `path`: hidden, and saying what it is
    (`.out.jsonl.srl-partial-`). A command killed with SIGKILL can leave one beside its output; it is safe to
    delete, and `srl data build` removes those of its output when it starts (`remove_stale_temporaries`)."""
    return f".{os.path.basename(os.path.normpath(path))}.{PARTIAL}-"


@contextlib.contextmanager
def atomic_path(path: str, *, folder: bool = False) -> Iterator[str]:
    """A temporary path beside `path` (in the same folder, so the rename is atomic) for the block to write a file,
    or a folder with `folder=True` (created empty). When the block ends, it replaces `path` (a folder at `path` is
    removed first); if the block raises, the temporary path and the folders made for it are removed, and `path` is
    left as it was. An OSError about the temporary path (a full or read-only disk) names `path` instead."""
    directory = os.path.dirname(os.path.abspath(path))
    made, missing = [], directory  # the folders os.makedirs makes, deepest first
    while not os.path.lexists(missing):
        made.append(missing)
        missing = os.path.dirname(missing)
    tmp = None
    try:
        os.makedirs(directory, exist_ok=True)
        if folder:
            tmp = tempfile.mkdtemp(prefix=partial_prefix(path), dir=directory)
        else:
            fd, tmp = tempfile.mkstemp(prefix=partial_prefix(path), suffix=os.path.splitext(path)[1], dir=directory)
            os.close(fd)
        os.chmod(tmp, (0o777 if folder else 0o666) & ~_umask())  # mk*temp makes it private; the result is not
        yield tmp
        if folder and os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None and os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp is not None and os.path.lexists(tmp):
            os.unlink(tmp)
        for folder_made in made:
            with contextlib.suppress(OSError):  # not empty (something else wrote there): kept
                os.rmdir(folder_made)
        about_tmp = e.filename is None if isinstance(e, OSError) else False
        if isinstance(e, OSError) and e.filename is not None:
            name = str(e.filename)
            about_tmp = bool(tmp and name.startswith(tmp)) or os.path.basename(name).startswith(partial_prefix(path))
        if about_tmp and e.errno is not None:
            e.filename = path
        raise


def follow_umask(folder: str) -> None:
    """Give the regular files of `folder` (not below it) the mode a file created there now gets: 0666 (0777 for an
    executable) less the umask. For writers that make their files private: safetensors >= 0.8 writes through a
    temporary file of mode 0600 and renames it (safetensors PR 764, issue 782), so a saved model's weights were
    0600 where every other file follows the umask."""
    mask = _umask()
    for name in os.listdir(folder):
        file = os.path.join(folder, name)
        if os.path.isfile(file) and not os.path.islink(file):
            executable = os.stat(file).st_mode & 0o100
            os.chmod(file, (0o777 if executable else 0o666) & ~mask)


def _umask() -> int:
    mask = os.umask(0o077)  # read by setting it: a restrictive value, should another thread create a file meanwhile
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_open(path: str, mode: str = "w", encoding: str | None = "utf-8"):
    """A file opened for writing on `atomic_path(path)`: flushed and fsynced before it replaces `path`."""
    with atomic_path(path) as tmp:
        with open(tmp, mode, encoding=None if "b" in mode else encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())


def write_text(path: str, text: str) -> None:
    with atomic_open(path) as f:
        f.write(text)


def write_json(path: str, data: Any, *, indent: int | None = 1) -> None:
    """`data` as JSON (`json_bytes`)."""
    with atomic_open(path, "wb") as f:
        f.write(json_bytes(data, indent=indent))


def write_jsonl(path: str, rows: Iterable[dict]) -> int:
    """One JSON object per line (`json_bytes`); returns the number of rows."""
    count = 0
    with atomic_open(path, "wb") as f:
        for row in rows:
            f.write(json_bytes(row) + b"\n")
            count += 1
    return count


def write_parquet(rows: Iterable[dict[str, Any]], path: str, row_group: int = 1_000) -> int:
    """Rows to a parquet file streamed in row groups of `row_group` rows (`pyarrow.parquet.ParquetWriter`), so
    memory holds one group, not the whole table. The schema is the first group's, with columns that were all
    null there typed as strings (e.g. `final_answer` of agent instances). No rows: a file with no columns.
    Returns the number of rows."""
    import itertools

    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = iter(rows)
    count, writer, schema = 0, None, None
    with atomic_path(path) as tmp:
        try:
            while True:
                batch = list(itertools.islice(rows, row_group))
                if not batch:
                    break
                if schema is None:
                    inferred = pa.Table.from_pylist(batch).schema
                    schema = pa.schema([f.with_type(pa.string()) if pa.types.is_null(f.type) else f
                                        for f in inferred])
                    writer = pq.ParquetWriter(tmp, schema)
                writer.write_table(pa.Table.from_pylist(batch, schema=schema), row_group_size=row_group)
                count += len(batch)
            if writer is None:
                pq.write_table(pa.table({}), tmp)
        finally:
            if writer is not None:
                writer.close()
    return count


def remove_stale_temporaries(path: str) -> None:
    """A command killed with SIGKILL leaves its temporary file or folder beside its output
    (`.<name>.srl-partial-*`, `partial_prefix`); the next one writing the same output removes them."""
    import glob

    target = os.path.abspath(path)
    pattern = glob.escape(os.path.join(os.path.dirname(target), partial_prefix(target))) + "*"
    for stale in glob.glob(pattern):
        if os.path.isdir(stale) and not os.path.islink(stale):
            shutil.rmtree(stale, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                os.unlink(stale)


# --- locking ------------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def file_lock(path: str, waiting_message: str | None = None):
    """Hold an exclusive inter-process lock on the file `path` (created if needed) within the block. If another
    process holds it, print `waiting_message` (once, on stderr) and wait."""
    from filelock import FileLock, Timeout

    lock = FileLock(path)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if waiting_message:
            print(f"srl: {waiting_message}", file=sys.stderr, flush=True)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def read_value(text: str, what: str = "value") -> Any:
    """A YAML value written on a command line (`--seeds "[0, 1]"`); numbers as Python reads them (YAML 1.1 reads
    `2e-3` as a string). A syntax error is a one-line `InputError` naming `what`."""
    for number in (int, float):
        try:
            return number(text)
        except ValueError:
            pass
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise InputError(f"not YAML: {str(e).splitlines()[0]}", field=what) from None
