"""A bubblewrap sandbox for an agent's shell commands: the task's copy of the repository is the only place it can
write, it has no network, and each command runs under time, memory, file-size, process and output limits.

Every command runs in a fresh `bwrap` (bubblewrap, Debian/Ubuntu package `bubblewrap`) with:

- **its own namespaces** (`--unshare-all`: user, pid, network, ipc, uts, cgroup) and no capabilities: the only
  network device is the sandbox's own loopback, so `127.0.0.1` is not the host's;
- **a filesystem of read-only system folders** (`/usr`, `/bin`, `/lib*`, `/sbin`, `/etc`), the Python install the
  tests need (the folder of `python`, read-only), a private `/tmp`, and the task's copy bound read-write at
  `/testbed` (the working directory). Nothing else of the host is there: not the user's home, not the other
  tasks' copies, not the run folder;
- **limits**: the wall-clock `timeout` (the whole process tree is killed when it passes: bwrap's pid namespace
  dies with it), `ulimit -v` (address space, `memory_mb`), `ulimit -f` (largest file written, `file_mb`), a
  process cap (`processes`: a `pids` cgroup when the host allows one, which is the only cap that holds for root,
  else `ulimit -u`), and at most `output_chars` of output kept (the rest is counted and dropped).

`Sandbox.run` returns a `CommandResult`; it never raises for what a command does (a timeout, a kill, a limit hit),
so an agent run goes on after a hostile command. A missing `bwrap` is an `InputError` that says how to install it.

>>> SandboxLimits(timeout=5).timeout
5
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field

from srl.errors import InputError

MOUNT = "/testbed"  # where the task's copy appears inside the sandbox (SWE-bench's convention)
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/etc")
INSTALL_HINT = ("bubblewrap is not installed: `sudo apt-get install -y bubblewrap` (Debian/Ubuntu; scripts/install.sh "
                "does it when run as root) or your distribution's `bubblewrap` package")


@dataclass(frozen=True)
class SandboxLimits:
    """What one command may use."""

    timeout: int = field(default=60, metadata={"help": "Seconds one command may run before its process tree is killed."})
    memory_mb: int = field(default=4096, metadata={"help": "Address-space limit of each process (ulimit -v), MiB."})
    file_mb: int = field(default=256, metadata={"help": "Largest file a command may write (ulimit -f), MiB."})
    processes: int = field(default=256, metadata={"help": "Processes and threads a command may have at once."})
    output_chars: int = field(default=200_000, metadata={"help": "Characters of a command's output kept; the rest "
                                                                 "is dropped and counted."})

    def __post_init__(self):
        for name in ("timeout", "memory_mb", "file_mb", "processes", "output_chars"):
            if getattr(self, name) < 1:
                raise InputError("must be >= 1", field=name)


@dataclass
class CommandResult:
    """What a command did: its output (cut to the limit), exit code (-9 when it was killed), and which limit ended
    it, if any (`timeout`); `dropped_chars` counts the output left out."""

    output: str
    returncode: int
    seconds: float
    timed_out: bool = False
    dropped_chars: int = 0

    @property
    def limit_note(self) -> str:
        notes = []
        if self.timed_out:
            notes.append("the command was killed: it ran past the sandbox's time limit")
        if self.dropped_chars:
            notes.append(f"{self.dropped_chars:,} characters of output were dropped (output limit)")
        return "; ".join(notes)


def bwrap_missing_reason() -> str | None:
    """None when `bwrap` is on PATH and can make a sandbox here, else why not (one line)."""
    exe = shutil.which("bwrap")
    if exe is None:
        return INSTALL_HINT
    probe = subprocess.run([exe, "--unshare-all", "--die-with-parent", *_ro_binds(), "--proc", "/proc",
                            "--dev", "/dev", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        return (f"bwrap cannot create a sandbox here ({probe.stderr.strip() or 'exit ' + str(probe.returncode)}); "
                f"unprivileged user namespaces may be disabled (sysctl kernel.unprivileged_userns_clone=1)")
    return None


def _ro_binds() -> list[str]:
    args = []
    for d in SYSTEM_DIRS:
        if os.path.islink(d):  # merged /usr: /bin -> usr/bin
            args += ["--symlink", os.readlink(d), d]
        elif os.path.isdir(d):
            args += ["--ro-bind", d, d]
    return args


def _python_dirs(python: str) -> list[str]:
    """The folders a `python` needs: its environment and, for a virtual environment, the base install."""
    probe = subprocess.run([python, "-c", "import sys; print(sys.prefix); print(sys.base_prefix)"],
                           capture_output=True, text=True, check=True)
    dirs = []
    for d in probe.stdout.split():
        d = os.path.realpath(d)
        if d not in dirs and not any(d.startswith(s + "/") or d == s for s in SYSTEM_DIRS):
            dirs.append(d)
    return dirs


class _PidsCgroup:
    """A `pids` cgroup (v1 `/sys/fs/cgroup/pids`, or v2 with the pids controller) for one sandbox, when the host
    lets us make one (root, usually). RLIMIT_NPROC does not hold for root, so a fork bomb is capped here."""

    def __init__(self, limit: int):
        self.path = None
        for root in ("/sys/fs/cgroup/pids", "/sys/fs/cgroup"):
            if not os.path.exists(os.path.join(root, "cgroup.procs")):
                continue
            if root == "/sys/fs/cgroup" and not self._v2_pids_enabled(root):
                continue
            path = os.path.join(root, f"srl-sandbox-{os.getpid()}-{uuid.uuid4().hex[:8]}")
            try:
                os.mkdir(path)
                with open(os.path.join(path, "pids.max"), "w") as f:
                    f.write(str(limit))
            except OSError:
                try:
                    os.rmdir(path)
                except OSError:
                    pass
                continue
            self.path = path
            return

    @staticmethod
    def _v2_pids_enabled(root: str) -> bool:
        """cgroup v2: the pids controller is on for the children of `root` (turned on when it is available)."""
        try:
            with open(os.path.join(root, "cgroup.subtree_control")) as f:
                if "pids" in f.read().split():
                    return True
            with open(os.path.join(root, "cgroup.controllers")) as f:
                if "pids" not in f.read().split():
                    return False
            with open(os.path.join(root, "cgroup.subtree_control"), "w") as f:
                f.write("+pids")
            return True
        except OSError:
            return False

    def kill_all(self) -> None:
        if self.path is None:
            return
        for _ in range(50):
            try:
                with open(os.path.join(self.path, "cgroup.procs")) as f:
                    pids = [int(p) for p in f.read().split()]
            except OSError:
                return
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.05)

    def remove(self) -> None:
        if self.path is not None:
            self.kill_all()
            try:
                os.rmdir(self.path)
            except OSError:
                pass
            self.path = None


class Sandbox:
    """Runs shell commands in `workdir` (seen as /testbed) under bubblewrap with `limits`.

    Args:
        workdir: the task's copy; the only folder the commands can write (besides their private /tmp).
        limits: `SandboxLimits`.
        python: the interpreter made available (read-only) on PATH as `python` (default: this one).
        env: extra environment variables for the commands.
    """

    def __init__(self, workdir: str, limits: SandboxLimits = SandboxLimits(), *, python: str | None = None,
                 env: dict[str, str] | None = None):
        reason = bwrap_missing_reason()
        if reason is not None:
            raise InputError(reason)
        self.workdir = os.path.realpath(workdir)
        if not os.path.isdir(self.workdir):
            raise InputError(f"no such folder: {workdir}", field="workdir")
        self.limits = limits
        self.python = python or sys.executable
        self.python_dirs = _python_dirs(self.python)
        self.env = {"PATH": ":".join([os.path.dirname(os.path.abspath(self.python)),
                                      "/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"]),
                    "HOME": "/tmp", "LANG": "C.UTF-8", "TERM": "dumb", "PAGER": "cat", "MANPAGER": "cat",
                    "GIT_PAGER": "cat", "PYTHONDONTWRITEBYTECODE": "1", "PIP_PROGRESS_BAR": "off",
                    "TQDM_DISABLE": "1", **(env or {})}
        self.cgroup = _PidsCgroup(limits.processes)
        if self.cgroup.path is None and os.geteuid() == 0:
            raise InputError("cannot cap the sandbox's processes: running as root (where `ulimit -u` does not hold) "
                             "and no writable pids cgroup under /sys/fs/cgroup; run as a normal user")
        self.events: list[dict] = []  # commands that hit a limit: {"command", "limit"}

    def _argv(self, command: str, cwd: str) -> list[str]:
        args = ["bwrap", "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
                "--hostname", "sandbox", "--clearenv", *_ro_binds(), "--proc", "/proc", "--dev", "/dev",
                "--tmpfs", "/tmp"]  # the private /tmp first: a Python installed below /tmp is bound over it next
        if os.path.isdir("/usr/local") and not os.path.islink("/usr/local"):
            args += ["--ro-bind", "/usr/local", "/usr/local"]
        for d in self.python_dirs:
            args += ["--ro-bind", d, d]
        args += ["--bind", self.workdir, MOUNT, "--remount-ro", "/", "--chdir", cwd]  # the root read-only
        for key, value in self.env.items():
            args += ["--setenv", key, value]
        limits = [f"ulimit -v {self.limits.memory_mb * 1024}", f"ulimit -f {self.limits.file_mb * 2048}"]
        if self.cgroup.path is None:
            limits.append(f"ulimit -u {self.limits.processes}")
        script = "; ".join(limits) + " || exit 125\n" + command
        args += ["bash", "-c", script]
        if self.cgroup.path is not None:  # enter the cgroup, then become bwrap
            args = ["sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', self.cgroup.path, *args]
        return args

    def run(self, command: str, cwd: str = MOUNT, timeout: int | None = None) -> CommandResult:
        """Run `command` with bash in the sandbox; never raises for what the command does."""
        timeout = timeout or self.limits.timeout
        started = time.monotonic()
        proc = subprocess.Popen(self._argv(command, cwd), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True)
        kept: list[bytes] = []
        counts = {"kept": 0, "dropped": 0}
        cap = self.limits.output_chars * 4  # bytes; cut to characters after decoding

        def drain():
            while chunk := proc.stdout.read1(65536):
                room = cap - counts["kept"]
                if room > 0:
                    kept.append(chunk[:room])
                    counts["kept"] += min(room, len(chunk))
                counts["dropped"] += max(0, len(chunk) - max(room, 0))

        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        timed_out = False
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            if proc.poll() is None or timed_out:
                self._kill(proc)
            proc.wait()
            self.cgroup.kill_all()
            reader.join(timeout=5)
        text = b"".join(kept).decode("utf-8", errors="replace")
        dropped = counts["dropped"] // 4 + max(0, len(text) - self.limits.output_chars)
        text = text[:self.limits.output_chars]
        result = CommandResult(text, -9 if timed_out else proc.returncode, time.monotonic() - started,
                               timed_out, dropped)
        if timed_out:
            self.events.append({"command": command, "limit": "timeout"})
        if dropped:
            self.events.append({"command": command, "limit": "output"})
        return result

    @staticmethod
    def _kill(proc: subprocess.Popen) -> None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # bwrap; its pid namespace dies with it (--die-with-parent)
        except ProcessLookupError:
            pass

    def close(self) -> None:
        self.cgroup.remove()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
