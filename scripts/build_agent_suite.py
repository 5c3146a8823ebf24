"""Build the local agent task suite (src/srl/agent/suite/tasks.jsonl) from a pure-Python library's sdist, with
SWE-smith's method: inject a bug, keep it if some tests fail; the statement describes the failure, not the fix.

    python scripts/build_agent_suite.py                       # toolz 1.0.0, 24 tasks, into src/srl/agent/suite/
    python scripts/build_agent_suite.py --sdist toolz-1.0.0.tar.gz --count 30 --output /tmp/suite

Steps (deterministic: the candidates are ordered by a seeded shuffle):
1. the sdist (`pip download --no-deps --no-binary :all: toolz==1.0.0`, or --sdist) is extracted, and its test
   suite must pass untouched;
2. candidate bugs are small single-line mutations of the library's functions, as SWE-smith's procedural
   modifications: a comparison flipped (`<` / `<=`, `==` / `!=`, `in` / `not in`, `is` / `is not`), `+` / `-`,
   `and` / `or`, a `not` dropped, an integer constant moved by one, `True` / `False`;
3. a candidate is kept when 1-12 tests fail and none errors (a localized bug), at most one per function and
   --per_module per module;
4. the statement quotes the failing test ids and the first failure's short traceback (what a user would report);
5. every kept task is verified (`srl.agent.tasks.verify_task`, in the sandbox): the FAIL_TO_PASS tests fail
   before and every listed test passes after the gold patch; unverified ones are dropped.
"""

from __future__ import annotations

import argparse
import ast
import os
import random
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

from srl.io import write_jsonl
from srl.agent.tasks import (TEST_COMMAND, Task, diff_trees, extract_source, load_tasks, parse_pytest_report,
                             verify_task)

SUITE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src", "srl", "agent", "suite")
MODULES = ("toolz/itertoolz.py", "toolz/functoolz.py", "toolz/dicttoolz.py", "toolz/recipes.py")
TESTS = "toolz/tests"
COMPARE_SWAPS = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq,
                 ast.NotEq: ast.Eq, ast.In: ast.NotIn, ast.NotIn: ast.In, ast.Is: ast.IsNot, ast.IsNot: ast.Is}
BINOP_SWAPS = {ast.Add: ast.Sub, ast.Sub: ast.Add}
BOOL_SWAPS = {ast.And: ast.Or, ast.Or: ast.And}


def mutations(node: ast.AST) -> list[ast.AST]:
    """The mutated copies of one expression node (empty when none applies)."""
    import copy

    out = []
    if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in COMPARE_SWAPS:
        new = copy.deepcopy(node)
        new.ops = [COMPARE_SWAPS[type(node.ops[0])]()]
        out.append(new)
    elif isinstance(node, ast.BinOp) and type(node.op) in BINOP_SWAPS:
        new = copy.deepcopy(node)
        new.op = BINOP_SWAPS[type(node.op)]()
        out.append(new)
    elif isinstance(node, ast.BoolOp) and type(node.op) in BOOL_SWAPS:
        new = copy.deepcopy(node)
        new.op = BOOL_SWAPS[type(node.op)]()
        out.append(new)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        out.append(copy.deepcopy(node.operand))
    elif isinstance(node, ast.Constant) and isinstance(node.value, bool):
        out.append(ast.Constant(not node.value))
    elif isinstance(node, ast.Constant) and type(node.value) is int and 0 <= node.value <= 2:
        out.append(ast.Constant(node.value + 1))
    return out


def candidates(path: str, rel: str) -> list[dict]:
    """Every single-line mutation inside a function of the file: where, the function, old and new line."""
    with open(path, encoding="utf-8") as f:
        source = f.read()
    lines = source.splitlines(keepends=True)
    tree = ast.parse(source)
    found = []
    for fn in ast.walk(tree):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        body_start = fn.body[0]
        skip_docstring = isinstance(body_start, ast.Expr) and isinstance(getattr(body_start, "value", None),
                                                                         ast.Constant)
        for stmt in fn.body[1 if skip_docstring else 0:]:
            for node in ast.walk(stmt):
                if not hasattr(node, "lineno") or node.lineno != node.end_lineno:
                    continue
                for new in mutations(node):
                    line = lines[node.lineno - 1].encode()
                    old_seg = line[node.col_offset:node.end_col_offset].decode()
                    new_seg = ast.unparse(new)
                    if isinstance(node, (ast.Compare, ast.BinOp, ast.BoolOp)) and new_seg[:1] != "(" \
                            and old_seg[:1] == "(":
                        new_seg = f"({new_seg})"
                    new_line = (line[:node.col_offset] + new_seg.encode() + line[node.end_col_offset:]).decode()
                    if new_line != lines[node.lineno - 1]:
                        found.append({"file": rel, "function": fn.name, "lineno": node.lineno,
                                      "old": lines[node.lineno - 1], "new": new_line})
    return found


def run_pytest(repo: str, python: str) -> tuple[dict[str, str], str]:
    argv = [python, *shlex.split(TEST_COMMAND)[1:], TESTS]  # no shell: a timeout kills pytest itself
    proc = subprocess.run(argv, cwd=repo, capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"))
    return parse_pytest_report(proc.stdout), proc.stdout


def first_failure(output: str, max_lines: int = 40) -> str:
    """The first block of pytest's FAILURES section (its short traceback)."""
    section = output.split("= FAILURES =", 1)[-1]
    blocks = re.split(r"^_{3,} .+ _{3,}$", section, flags=re.M)
    block = blocks[1] if len(blocks) > 1 else ""
    block = re.split(r"^=+ ", block, flags=re.M)[0].strip("\n")
    lines = block.splitlines()
    return "\n".join(lines[:max_lines] + (["..."] if len(lines) > max_lines else []))


def statement(library: str, failing: list[str], output: str) -> str:
    tests = "\n".join(f"- `{t}`" for t in failing)
    return (f"The test suite of this repository ({library}) fails. Running\n\n    python -m pytest {TESTS}\n\n"
            f"reports {len(failing)} failing test(s):\n\n{tests}\n\nThe first failure:\n\n```\n"
            f"{first_failure(output)}\n```\n\nFind the cause in the library's code and fix it. The tests are "
            f"correct: do not change them.")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--package", default="toolz==1.0.0")
    p.add_argument("--sdist", default=None, help="the sdist .tar.gz (default: pip download --package)")
    p.add_argument("--count", type=int, default=24)
    p.add_argument("--per_module", type=int, default=9)
    p.add_argument("--max_failing", type=int, default=12)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", default=SUITE_DIR)
    args = p.parse_args(argv)
    os.makedirs(args.output, exist_ok=True)
    work = tempfile.mkdtemp(prefix="srl-suite-")
    try:
        sdist = args.sdist
        if sdist is None:
            subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
                            args.package, "-d", work], check=True)
            sdist = next(os.path.join(work, f) for f in os.listdir(work) if f.endswith(".tar.gz"))
        archive = os.path.join(args.output, os.path.basename(sdist))
        if os.path.abspath(sdist) != os.path.abspath(archive):
            shutil.copy2(sdist, archive)
        library = os.path.basename(archive)[:-len(".tar.gz")]
        pristine = extract_source(archive, work)
        status, _ = run_pytest(pristine, sys.executable)
        if not status or any(s not in ("PASSED", "XFAIL") for s in status.values()):
            raise SystemExit(f"the pristine test suite does not pass ({len(status)} results)")
        print(f"{library}: {len(status)} tests pass untouched", flush=True)
        cands = [c for rel in MODULES for c in candidates(os.path.join(pristine, rel), rel)]
        random.Random(args.seed).shuffle(cands)
        print(f"{len(cands)} candidate mutations", flush=True)
        rows, used_functions, per_module, tried = [], set(), {}, 0
        buggy = os.path.join(work, "buggy")
        shutil.copytree(pristine, buggy)
        for c in cands:
            if len(rows) >= args.count:
                break
            key = (c["file"], c["function"])
            if key in used_functions or per_module.get(c["file"], 0) >= args.per_module:
                continue
            path = os.path.join(buggy, c["file"])
            with open(path, encoding="utf-8") as f:
                lines = f.read().splitlines(keepends=True)
            lines[c["lineno"] - 1] = c["new"]
            with open(path, "w", encoding="utf-8") as f:
                f.write("".join(lines))
            tried += 1
            try:
                after, output = run_pytest(buggy, sys.executable)
            except subprocess.TimeoutExpired:
                after, output = {}, ""
            failing = sorted(t for t, s in after.items() if s in ("FAILED", "ERROR"))
            ok = (after and 1 <= len(failing) <= args.max_failing
                  and not any(after[t] == "ERROR" for t in failing) and set(after) == set(status))
            if ok:
                used_functions.add(key)
                per_module[c["file"]] = per_module.get(c["file"], 0) + 1
                module = os.path.splitext(os.path.basename(c["file"]))[0]
                rows.append({
                    "instance_id": f"{library}__{module}-{c['function']}",
                    "problem_statement": statement(library, failing, output),
                    "source": os.path.basename(archive),
                    "bug_patch": diff_trees(pristine, buggy),
                    "patch": diff_trees(buggy, pristine),
                    "FAIL_TO_PASS": failing,
                    "PASS_TO_PASS": sorted(t for t in status if t not in failing),
                    "test_paths": [TESTS],
                    "mutation": {"file": c["file"], "function": c["function"], "line": c["lineno"]},
                })
                print(f"kept {rows[-1]['instance_id']}: {len(failing)} failing", flush=True)
            shutil.copy2(os.path.join(pristine, c["file"]), path)  # undo
        print(f"{len(rows)} kept of {tried} tried", flush=True)
        out_path = os.path.join(args.output, "tasks.jsonl")
        candidates_path = os.path.join(work, "tasks.jsonl")  # beside a copy of the archive: load_tasks finds it
        shutil.copy2(archive, work)
        write_jsonl(candidates_path, rows)
        verified = []
        for task, row in zip(load_tasks(candidates_path), rows):
            problem = verify_task(task, work)
            print(f"verify {task.instance_id}: {problem or 'ok'}", flush=True)
            if problem is None:
                verified.append(row)
        write_jsonl(out_path, verified)
        print(f"{len(verified)} verified tasks -> {out_path}")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
