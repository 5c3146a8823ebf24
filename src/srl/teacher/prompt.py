"""The prompt of a teacher call: a system text and a user template, read from a YAML/JSON file.

The defaults are package files (`srl/teacher/prompts/generate.yaml`, `rewrite.yaml`); `--template FILE` replaces
them with a file holding the same keys. Placeholders (`{problem}`, `{solution}`) are replaced literally, so LaTeX
braces in a prompt need no escaping.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from srl.errors import InputError

PROMPTS_DIR = os.path.join(os.path.dirname(__file__), "prompts")


@dataclass(frozen=True)
class TeacherPrompt:
    """`system` (empty: no system message) and `user`, a template with `{name}` placeholders.

    >>> p = TeacherPrompt(system="", user="Solve {problem} in \\\\boxed{}.")
    >>> p.messages(problem="$1+1$")
    [{'role': 'user', 'content': 'Solve $1+1$ in \\\\boxed{}.'}]
    """

    system: str = ""
    user: str = "{problem}"

    @classmethod
    def load(cls, path: str | None, default: str, placeholders: tuple[str, ...]) -> TeacherPrompt:
        """The prompt in `path` (or the package's `default` file); every placeholder must be in `user`."""
        from srl.io import read_string_fields

        source = path or os.path.join(PROMPTS_DIR, default)
        prompt = read_string_fields(cls, source, "prompt template")
        for name in placeholders:
            if "{" + name + "}" not in prompt.user:
                raise InputError(f"the user template must contain {{{name}}}", path=source, field="user")
        return prompt

    def messages(self, **values: str) -> list[dict[str, str]]:
        # one pass, so that a `{solution}` written inside the problem text is not replaced in turn
        pattern = re.compile("|".join(re.escape("{" + name + "}") for name in values))
        user = pattern.sub(lambda m: values[m.group(0)[1:-1]], self.user) if values else self.user
        head = [{"role": "system", "content": self.system}] if self.system.strip() else []
        return head + [{"role": "user", "content": user}]

    def as_dict(self) -> dict[str, str]:
        return {"system": self.system, "user": self.user}
