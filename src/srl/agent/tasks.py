"""Local bug-fix tasks: the task file, preparing a task's repository, patches, and scoring a patch by its tests.

A task file is JSONL, one task a line, in SWE-bench's field names where they exist:

| field | meaning |
|---|---|
| `instance_id` | unique name, e.g. `toolz-1.0.0__itertoolz-003` |
| `problem_statement` | what the agent is told: the failure (a test and its error), never the fix |
| `source` | the library's source archive (an sdist `.tar.gz`), relative to the task file |
| `bug_patch` | the injected bug: a diff applied to the pristine source to make the task's repository |
| `patch` | the gold fix: a diff from the buggy repository back to the pristine source |
| `FAIL_TO_PASS` | pytest ids that fail on the buggy repository and pass with the gold fix |
| `PASS_TO_PASS` | pytest ids that pass on both |
| `test_paths` | the test folders/files run to score a patch; restored to their pristine text before scoring, so a patch that edits the tests gains nothing |

A patch *resolves* a task when it applies and every FAIL_TO_PASS and PASS_TO_PASS test passes (SWE-bench's rule).
Tests run in the bubblewrap sandbox (`srl.agent.sandbox`): a patch is code from a model.

The shipped suite (`SUITE`, built by scripts/build_agent_suite.py from toolz 1.0.0; see suite/SOURCE.md) has 24
such tasks; `verify_task` checks one (the listed tests fail before and pass after the gold patch).
"""

from __future__ import annotations

import difflib
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import threading
from dataclasses import dataclass, field

from srl.agent.sandbox import MOUNT, Sandbox, SandboxLimits
from srl.errors import InputError
from srl.io import atomic_path, read_records

SUITE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "suite", "tasks.jsonl")
TEST_COMMAND = "python -m pytest -p no:cacheprovider -q -rA --tb=short --no-header"
_RESULT_RE = re.compile(r"^(PASSED|FAILED|ERROR|XFAIL|XPASS) (\S+)")
_SKIP_PARTS = ("__pycache__", ".pytest_cache")


@dataclass
class Task:
    instance_id: str
    problem_statement: str
    source: str  # absolute path of the source archive
    bug_patch: str
    patch: str
    FAIL_TO_PASS: list[str]
    PASS_TO_PASS: list[str]
    test_paths: list[str] = field(default_factory=list)

    @property
    def files(self) -> list[str]:
        """The files the gold patch changes (the oracle-file setting gives them to the model)."""
        return patch_files(self.patch)


def load_tasks(path: str = SUITE, ids: list[str] | None = None, limit: int | None = None) -> list[Task]:
    """The tasks of a task file (see the module docstring); `ids` keeps those (in the file's order), `limit` the
    first n. Bad rows raise `InputError` naming the file, line and field."""
    tasks, seen = [], set()
    folder = os.path.dirname(os.path.abspath(path))
    for rec in read_records(path):
        tid = rec.text("instance_id")
        if tid in seen:
            raise rec.error(f"duplicate instance_id {tid!r}", "instance_id")
        seen.add(tid)
        lists = {}
        for name in ("FAIL_TO_PASS", "PASS_TO_PASS", "test_paths"):
            value = rec.data.get(name, [])
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise rec.error("must be a list of strings", name)
            lists[name] = value
        if not lists["FAIL_TO_PASS"]:
            raise rec.error("must list at least one test", "FAIL_TO_PASS")
        source = os.path.join(folder, rec.text("source"))
        if not os.path.isfile(source):
            raise rec.error(f"no such file: {source}", "source")
        tasks.append(Task(tid, rec.text("problem_statement"), source, rec.text("bug_patch"), rec.text("patch"),
                          lists["FAIL_TO_PASS"], lists["PASS_TO_PASS"], lists["test_paths"]))
    if ids:
        missing = sorted(set(ids) - seen)
        if missing:
            raise InputError(f"no task named {', '.join(missing)}", path=path, field="instance_id")
        tasks = [t for t in tasks if t.instance_id in set(ids)]
    return tasks[:limit] if limit else tasks


_EXTRACT_LOCK = threading.Lock()


def extract_source(archive: str, cache_dir: str) -> str:
    """The archive's top folder, extracted once under `cache_dir` (tar's `data` filter: no links out, no devices)."""
    name = os.path.basename(archive)
    for ext in (".tar.gz", ".tgz", ".tar"):
        if name.endswith(ext):
            name = name[:-len(ext)]
    dest = os.path.join(cache_dir, name)
    with _EXTRACT_LOCK:
        if not os.path.isdir(dest):
            with atomic_path(dest, folder=True) as tmp, tarfile.open(archive) as tar:
                tar.extractall(tmp, filter="data")
    return os.path.join(dest, sorted(os.listdir(dest))[0])


def copy_tree(src: str, dest: str) -> None:
    shutil.copytree(src, dest, symlinks=True, ignore=shutil.ignore_patterns(*_SKIP_PARTS, "*.pyc"))


def prepare_repo(task: Task, dest: str, cache_dir: str) -> str:
    """Make `dest` the task's buggy repository: the pristine source with the bug patch applied."""
    copy_tree(extract_source(task.source, cache_dir), dest)
    ok, message = apply_patch(task.bug_patch, dest)
    if not ok:
        raise InputError(f"the bug patch does not apply to {os.path.basename(task.source)}: {message}",
                         field="bug_patch")
    return dest


def _tree_files(root: str) -> set[str]:
    files = set()
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d not in _SKIP_PARTS and d != ".git"]
        for n in names:
            if not n.endswith(".pyc"):
                files.add(os.path.relpath(os.path.join(folder, n), root))
    return files


def _read_text(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (UnicodeDecodeError, IsADirectoryError):
        return None
    except FileNotFoundError:
        return ""


def diff_trees(base: str, work: str) -> str:
    """A git-style unified diff from folder `base` to folder `work` (text files; new and deleted files too),
    computed in Python: never running tools on a folder a model wrote."""
    parts = []
    for rel in sorted(_tree_files(base) | _tree_files(work)):
        a_path, b_path = os.path.join(base, rel), os.path.join(work, rel)
        if os.path.islink(b_path) or os.path.islink(a_path):
            continue
        a, b = _read_text(a_path) if os.path.exists(a_path) else None, \
            _read_text(b_path) if os.path.exists(b_path) else None
        if a == b or (a is None and not os.path.exists(b_path) and b is None):
            continue
        if (os.path.exists(a_path) and a is None) or (os.path.exists(b_path) and b is None):
            continue  # binary
        header = [f"diff --git a/{rel} b/{rel}\n"]
        if a is None:
            header.append("new file mode 100644\n")
        elif b is None:
            header.append("deleted file mode 100644\n")
        lines = list(difflib.unified_diff((a or "").splitlines(keepends=True), (b or "").splitlines(keepends=True),
                                          "/dev/null" if a is None else f"a/{rel}",
                                          "/dev/null" if b is None else f"b/{rel}", n=3))
        if not lines:
            continue
        body = []
        for line in lines:
            body.append(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
        parts.append("".join(header + body))
    return "".join(parts)


def patch_files(patch: str) -> list[str]:
    """The files a diff changes, in order."""
    files = []
    for m in re.finditer(r"^diff --git a/(\S+) b/(\S+)$", patch, re.M):
        if m.group(2) not in files:
            files.append(m.group(2))
    return files


def apply_patch(patch: str, dest: str) -> tuple[bool, str]:
    """Apply a diff to folder `dest` with `git apply` (not as a git repository: discovery stops at `dest`).
    Returns (applied, git's message)."""
    if not patch.strip():
        return True, "empty patch"
    env = dict(os.environ, GIT_CEILING_DIRECTORIES=os.path.dirname(os.path.abspath(dest)),
               GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull)
    proc = subprocess.run(["git", "apply", "--whitespace=nowarn", "-"], input=patch, text=True, cwd=dest, env=env,
                          capture_output=True)
    return proc.returncode == 0, (proc.stderr or proc.stdout).strip()


def parse_pytest_report(output: str) -> dict[str, str]:
    """Test id -> PASSED/FAILED/ERROR/XFAIL/XPASS from pytest's `-rA` summary lines."""
    status = {}
    for line in output.splitlines():
        m = _RESULT_RE.match(line)
        if m:
            status[m.group(2)] = m.group(1)
    return status


@dataclass
class TestRun:
    status: dict[str, str]
    output: str
    timed_out: bool

    def passed(self, test_id: str) -> bool:
        return self.status.get(test_id) in ("PASSED", "XFAIL")


def run_tests(task: Task, repo: str, limits: SandboxLimits, tests: list[str] | None = None) -> TestRun:
    """Run the task's tests (or `tests`) in `repo`, inside the sandbox."""
    targets = tests if tests is not None else (task.test_paths or [])
    command = f"{TEST_COMMAND} " + " ".join(f"'{t}'" for t in targets)
    with Sandbox(repo, limits) as box:
        result = box.run(command, cwd=MOUNT)
    return TestRun(parse_pytest_report(result.output), result.output, result.timed_out)


@dataclass
class Evaluation:
    """How a patch fared on its task: applied?, resolved?, and the tests that failed."""

    applied: bool
    resolved: bool
    failed_fail_to_pass: list[str]
    failed_pass_to_pass: list[str]
    message: str = ""

    def as_dict(self) -> dict:
        return {"applied": self.applied, "resolved": self.resolved,
                "failed_FAIL_TO_PASS": self.failed_fail_to_pass, "failed_PASS_TO_PASS": self.failed_pass_to_pass,
                "message": self.message}


def evaluate_patch(task: Task, patch: str, scratch: str, limits: SandboxLimits = SandboxLimits(timeout=300),
                   cache_dir: str | None = None) -> Evaluation:
    """Apply `patch` to a fresh copy of the task's buggy repository (under `scratch`, removed after), restore the
    test files to their pristine text, run the tests in the sandbox and apply SWE-bench's resolved rule.
    `cache_dir` holds the extracted sources (default `scratch/.sources`)."""
    if not patch.strip():  # nothing changed: the FAIL_TO_PASS tests fail there (verified), no need to run them
        return Evaluation(True, False, list(task.FAIL_TO_PASS), [], "empty patch")
    cache = cache_dir or os.path.join(scratch, ".sources")
    os.makedirs(cache, exist_ok=True)
    repo = tempfile.mkdtemp(dir=scratch, prefix="eval-")
    try:
        os.rmdir(repo)
        prepare_repo(task, repo, cache)
        ok, message = apply_patch(patch, repo)
        if not ok:
            return Evaluation(False, False, list(task.FAIL_TO_PASS), [], f"patch does not apply: {message}")
        pristine = extract_source(task.source, cache)  # the bug patch never touches the tests
        for rel in task.test_paths:
            target, origin = os.path.join(repo, rel), os.path.join(pristine, rel)
            if os.path.isdir(target) and not os.path.islink(target):
                shutil.rmtree(target)
            elif os.path.lexists(target):
                os.remove(target)
            (copy_tree if os.path.isdir(origin) else shutil.copy2)(origin, target)
        run = run_tests(task, repo, limits)
        f2p = [t for t in task.FAIL_TO_PASS if not run.passed(t)]
        p2p = [t for t in task.PASS_TO_PASS if not run.passed(t)]
        note = "tests timed out" if run.timed_out else ""
        return Evaluation(True, not f2p and not p2p, f2p, p2p, note)
    finally:
        shutil.rmtree(repo, ignore_errors=True)


def verify_task(task: Task, scratch: str, limits: SandboxLimits = SandboxLimits(timeout=300)) -> str | None:
    """None when the task is sound: every FAIL_TO_PASS test fails on the buggy repository, and the gold patch
    resolves it; else what is wrong (one line)."""
    cache = os.path.join(scratch, ".sources")
    os.makedirs(cache, exist_ok=True)
    repo = tempfile.mkdtemp(dir=scratch, prefix="verify-")
    try:
        os.rmdir(repo)
        prepare_repo(task, repo, cache)
        before = run_tests(task, repo, limits)
        passing = [t for t in task.FAIL_TO_PASS if before.passed(t)]
        if passing:
            return f"{task.instance_id}: passes before the fix: {', '.join(passing)}"
        broken = [t for t in task.PASS_TO_PASS if not before.passed(t)]
        if broken:
            return f"{task.instance_id}: PASS_TO_PASS fails before the fix: {', '.join(broken[:3])}"
    finally:
        shutil.rmtree(repo, ignore_errors=True)
    after = evaluate_patch(task, task.patch, scratch, limits, cache)
    if not after.resolved:
        return (f"{task.instance_id}: the gold patch does not resolve it ({after.message or 'failing: '}"
                f"{', '.join((after.failed_fail_to_pass + after.failed_pass_to_pass)[:3])})")
    return None
