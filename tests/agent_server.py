"""A scripted OpenAI-compatible chat server on 127.0.0.1 for the agent tests: `/v1/chat/completions` answers with
the text a *script* returns for the request's messages (mini-swe-agent's text format: a THOUGHT, then one
```` ```mswea_bash_command ```` block), with token usage; `/v1/models` lists the one model.

Scripts: `oracle_script(tasks)` applies the task's gold patch, runs the tests and submits; `null_script` submits
at once; `hostile_script(commands, tasks)` sends each hostile command, then applies the gold patch and submits.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SUBMIT = "echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT"


def reply(command: str, thought: str = "THOUGHT: the next step.") -> str:
    return f"{thought}\n\n```mswea_bash_command\n{command}\n```"


def srl_reply(command: str) -> str:
    """The form an SRL-trained model writes: its thinking, then the command alone."""
    return f"<think>\nThe next step.\n</think>\n{command}"


def _turn(messages) -> int:
    return sum(1 for m in messages if m.get("role") == "assistant")


def _task_of(messages, tasks):
    text = next(m["content"] for m in messages if m.get("role") == "user")
    return next(t for t in tasks if t.problem_statement in text)


def oracle_commands(task) -> list[str]:
    return [f"git apply - <<'SRL_PATCH_END'\n{task.patch}SRL_PATCH_END",
            "python -m pytest -q -p no:cacheprovider toolz/tests 2>&1 | tail -1", SUBMIT]


def oracle_script(tasks, style=reply):
    def script(messages):
        commands = oracle_commands(_task_of(messages, tasks))
        return style(commands[min(_turn(messages), len(commands) - 1)])
    return script


def null_script(messages):
    return reply(SUBMIT, "THOUGHT: I give up.")


def hostile_script(hostile: list[str], tasks):
    def script(messages):
        apply, _, submit = oracle_commands(_task_of(messages, tasks))
        commands = hostile + [apply, submit]
        return reply(commands[min(_turn(messages), len(commands) - 1)])
    return script


class ScriptedServer:
    """`with ScriptedServer(script) as url:` serves on a free port of 127.0.0.1; `requests` counts the calls."""

    def __init__(self, script, model: str = "scripted"):
        self.script, self.model, self.requests = script, model, 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, payload: dict, code: int = 200):
                body = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                self._send({"object": "list", "data": [{"id": server.model, "object": "model"}]})

            def do_POST(self):
                request = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                server.requests += 1
                text = server.script(request["messages"])
                prompt = sum(len(str(m.get("content", ""))) for m in request["messages"]) // 4
                self._send({"id": f"chatcmpl-{server.requests}", "object": "chat.completion", "created": 0,
                            "model": server.model,
                            "choices": [{"index": 0, "finish_reason": "stop",
                                         "message": {"role": "assistant", "content": text}}],
                            "usage": {"prompt_tokens": prompt, "completion_tokens": len(text) // 4,
                                      "total_tokens": prompt + len(text) // 4}})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> "ScriptedServer":
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        return False
