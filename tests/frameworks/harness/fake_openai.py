"""agentmeter's fake OpenAI-compatible server: scripted agent turns, deterministic usage, a log that is the truth.

Standard library only, so it runs under any interpreter (`python fake_openai.py --port P --log FILE`).
It answers the two OpenAI APIs the frameworks use, each plain and streamed:

* `POST /v1/chat/completions`: the `chat.completion` object, or `chat.completion.chunk` server-sent events
  (usage in a last chunk with empty `choices` only when the client asked `stream_options.include_usage`, as
  the real API does: openai-python `types/chat/chat_completion_chunk.py`);
* `POST /v1/responses`: the `response` object, or the Responses event stream (`response.created` ...
  `response.output_item.added` / `.done`, text and function-call argument deltas, `response.completed`
  carrying the whole response with its usage; openai-python `types/responses/response_stream_event.py`).

The script, the same for every framework (the scenario of tests/frameworks/README.md), decides from the
request alone: the model names the agent (`gpt-4.1`: the orchestrator, `gpt-4o-mini`: the researcher), and
the tool results already in the conversation say how far its loop is:

* orchestrator: no tool result yet -> call the offered tool whose name contains "research" (the framework's
  agent-as-tool), else answer;
* researcher: fewer than two tool results -> call the offered tool whose name contains "search", else answer.

So a task is 5 calls: orchestrator, researcher x 3, orchestrator. Usage is a function of the server's call
sequence number `n` alone, with cached prompt tokens on most calls and reasoning tokens on some; every call
is appended to the JSON-lines log (`--log`) with the usage exactly as sent and the task the driver announced
(`POST /control/task {"task": "..."}` before each task).
"""

from __future__ import annotations

import argparse
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DATED_MODELS = {"gpt-4.1": "gpt-4.1-2025-04-14", "gpt-4o-mini": "gpt-4o-mini-2024-07-18"}
AGENT_OF_MODEL = {"gpt-4.1": "orchestrator", "gpt-4o-mini": "researcher"}
RESEARCH_TOOL = re.compile("research", re.IGNORECASE)
SEARCH_TOOL = re.compile("search", re.IGNORECASE)
RESEARCHER_SEARCHES = 2


class Script:
    """The server's state: the call counter, the announced task, the log file."""

    def __init__(self, log_path: str) -> None:
        self.log_path = log_path
        self.lock = threading.Lock()
        self.calls = 0
        self.task: str | None = None

    def next_call(self) -> tuple[int, str | None]:
        with self.lock:
            self.calls += 1
            return self.calls, self.task

    def log(self, record: dict) -> None:
        with self.lock, open(self.log_path, "a", encoding="utf-8") as out:
            out.write(json.dumps(record, sort_keys=True) + "\n")


def usage_of(n: int) -> dict[str, int]:
    """Deterministic usage of call n: prompt includes cached; completion includes reasoning."""
    prompt = 900 + 37 * n
    cached = 128 * (n % 4)  # OpenAI caches in 128-token steps; 0 on every fourth call
    reasoning = 16 * (n % 3)  # 0 on every third call
    completion = 40 + 9 * n + reasoning
    return {"input": prompt, "cached": cached, "output": completion, "reasoning": reasoning}


def bare_model(model: str) -> str:
    """`openai/gpt-4.1` (LiteLLM's form) reaches us as `gpt-4.1`; accept either."""
    return model.rsplit("/", 1)[-1]


def tools_chat(tools: list | None) -> dict[str, dict]:
    """Offered function tools: name -> JSON schema of the parameters."""
    offered = {}
    for tool in tools or []:
        function = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(function, dict) and function.get("name"):
            offered[function["name"]] = function.get("parameters") or {}
    return offered


def tools_responses(tools: list | None) -> dict[str, dict]:
    return {
        t["name"]: t.get("parameters") or {}
        for t in tools or []
        if isinstance(t, dict) and t.get("type") == "function" and t.get("name")
    }


def tool_arguments(schema: dict, n: int) -> str:
    """The tool call's JSON arguments: the schema's first required (else first) parameter gets the topic."""
    required = schema.get("required") or list(schema.get("properties") or {}) or ["query"]
    return json.dumps({required[0]: f"topic {n}"})


def decide(agent: str, tool_results: int, tools: dict[str, dict]) -> tuple[str, str | None]:
    """("tool", name) or ("answer", None) for this turn of the agent's loop."""
    wanted, limit = (RESEARCH_TOOL, 1) if agent == "orchestrator" else (SEARCH_TOOL, RESEARCHER_SEARCHES)
    tool = next((name for name in tools if wanted.search(name)), None)
    if tool is not None and tool_results < limit:
        return "tool", tool
    return "answer", None


def answer_text(agent: str, n: int) -> str:
    if agent == "orchestrator":
        return f"Final report {n}: the researcher's findings, summarised for the user."
    return f"Findings {n}: three sources agree on the answer."


class Handler(BaseHTTPRequestHandler):
    script: Script  # set on the class by serve()
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the base class's name)
        return  # quiet: the JSON-lines log is the record

    # -- plumbing --------------------------------------------------------------------------------------
    def _body(self) -> dict:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"{}")

    def _json(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _start_events(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True

    def _event(self, data: dict | str, event: str | None = None) -> None:
        head = f"event: {event}\n" if event else ""
        body = data if isinstance(data, str) else json.dumps(data)
        self.wfile.write(f"{head}data: {body}\n\n".encode())
        self.wfile.flush()

    # -- routes ----------------------------------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if self.path == "/health":
            self._json(200, {"ok": True, "calls": self.script.calls})
        else:
            self._json(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self) -> None:  # noqa: N802
        body = self._body()
        path = self.path.split("?")[0].rstrip("/")
        if path.endswith("/control/task"):
            with self.script.lock:
                self.script.task = body.get("task")
            self._json(200, {"task": self.script.task})
        elif path.endswith("/chat/completions"):
            self.chat_api(body)
        elif path.endswith("/responses"):
            self.responses_api(body)
        else:
            self._json(404, {"error": {"message": f"no route {path}"}})

    def _record(
        self,
        n: int,
        task: str | None,
        api: str,
        body: dict,
        agent: str,
        action: tuple,
        rid: str,
        stream: bool,
        usage_sent: bool,
    ) -> dict:
        usage = usage_of(n)
        self.script.log({
            "seq": n, "task": task, "api": api, "stream": stream, "usage_sent": usage_sent,
            "request_model": body.get("model"), "response_model": DATED_MODELS.get(bare_model(body.get("model", ""))),
            "response_id": rid, "agent": agent, "action": action[0], "tool": action[1], "usage": usage,
            "time_ns": time.time_ns(),
        })  # fmt: skip
        return usage

    def chat_api(self, body: dict) -> None:
        n, task = self.script.next_call()
        model = bare_model(body.get("model", ""))
        agent = AGENT_OF_MODEL.get(model, "unknown")
        tool_results = sum(1 for m in body.get("messages", []) if isinstance(m, dict) and m.get("role") == "tool")
        offered = tools_chat(body.get("tools"))
        action = decide(agent, tool_results, offered)
        rid = f"chatcmpl-fake{n:04d}"
        stream = bool(body.get("stream"))
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        counts = self._record(
            n, task, "chat.completions", body, agent, action, rid, stream, not stream or include_usage
        )
        usage = {
            "prompt_tokens": counts["input"],
            "completion_tokens": counts["output"],
            "total_tokens": counts["input"] + counts["output"],
            "prompt_tokens_details": {"cached_tokens": counts["cached"], "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": counts["reasoning"],
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }
        dated = DATED_MODELS.get(model, model)
        created = int(time.time())
        if action[0] == "tool":
            call = {"id": f"call_fake{n:04d}", "type": "function",
                    "function": {"name": action[1], "arguments": tool_arguments(offered[action[1]], n)}}  # fmt: skip
            message = {"role": "assistant", "content": None, "refusal": None, "tool_calls": [call]}
            finish = "tool_calls"
        else:
            message = {"role": "assistant", "content": answer_text(agent, n), "refusal": None}
            finish = "stop"
        if not stream:
            self._json(200, {
                "id": rid, "object": "chat.completion", "created": created, "model": dated,
                "system_fingerprint": "fp_fake", "service_tier": "default",
                "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
                "usage": usage,
            })  # fmt: skip
            return
        base = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": dated,
                "system_fingerprint": "fp_fake", "service_tier": "default"}  # fmt: skip
        extra = {"usage": None} if include_usage else {}

        def chunk(delta: dict, finish_reason: str | None = None) -> None:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            self._event({**base, "choices": [choice], **extra})

        self._start_events()
        chunk({"role": "assistant", "content": None if action[0] == "tool" else ""})
        if action[0] == "tool":
            call = message["tool_calls"][0]
            chunk({"tool_calls": [{"index": 0, "id": call["id"], "type": "function",
                                   "function": {"name": call["function"]["name"], "arguments": ""}}]})  # fmt: skip
            arguments = call["function"]["arguments"]
            for part in (arguments[: len(arguments) // 2], arguments[len(arguments) // 2 :]):
                chunk({"tool_calls": [{"index": 0, "function": {"arguments": part}}]})
        else:
            for word in message["content"].split(" "):
                chunk({"content": word + " "})
        chunk({}, finish)
        if include_usage:
            self._event({**base, "choices": [], "usage": usage})
        self._event("[DONE]")

    def responses_api(self, body: dict) -> None:
        n, task = self.script.next_call()
        model = bare_model(body.get("model", ""))
        agent = AGENT_OF_MODEL.get(model, "unknown")
        items = body.get("input") if isinstance(body.get("input"), list) else []
        tool_results = sum(1 for i in items if isinstance(i, dict) and i.get("type") == "function_call_output")
        offered = tools_responses(body.get("tools"))
        action = decide(agent, tool_results, offered)
        rid = f"resp_fake{n:04d}"
        stream = bool(body.get("stream"))
        counts = self._record(n, task, "responses", body, agent, action, rid, stream, True)
        usage = {
            "input_tokens": counts["input"],
            "input_tokens_details": {"cached_tokens": counts["cached"]},
            "output_tokens": counts["output"],
            "output_tokens_details": {"reasoning_tokens": counts["reasoning"]},
            "total_tokens": counts["input"] + counts["output"],
        }
        if action[0] == "tool":
            item = {"type": "function_call", "id": f"fc_fake{n:04d}", "call_id": f"call_fake{n:04d}",
                    "name": action[1], "arguments": tool_arguments(offered[action[1]], n), "status": "completed"}  # fmt: skip
        else:
            item = {"type": "message", "id": f"msg_fake{n:04d}", "role": "assistant", "status": "completed",
                    "content": [{"type": "output_text", "text": answer_text(agent, n), "annotations": [],
                                 "logprobs": []}]}  # fmt: skip
        response = {
            "id": rid, "object": "response", "created_at": int(time.time()), "status": "completed",
            "model": DATED_MODELS.get(model, model), "output": [item], "usage": usage,
            "parallel_tool_calls": True, "tool_choice": body.get("tool_choice", "auto"), "tools": body.get("tools", []),
            "temperature": 1.0, "top_p": 1.0, "truncation": "disabled", "error": None, "incomplete_details": None,
            "instructions": body.get("instructions"), "metadata": {}, "previous_response_id": None,
            "reasoning": {"effort": None, "summary": None}, "service_tier": "default",
            "text": {"format": {"type": "text"}}, "max_output_tokens": None, "user": None,
        }  # fmt: skip
        if not stream:
            self._json(200, response)
            return
        self._start_events()
        seq = iter(range(1_000_000))
        pending = {**response, "status": "in_progress", "output": [], "usage": None}

        def event(kind: str, **fields: object) -> None:
            self._event({"type": kind, "sequence_number": next(seq), **fields}, kind)

        event("response.created", response=pending)
        event("response.in_progress", response=pending)
        if item["type"] == "function_call":
            event("response.output_item.added", output_index=0, item={**item, "arguments": "", "status": "in_progress"})
            event("response.function_call_arguments.delta", item_id=item["id"], output_index=0, delta=item["arguments"])
            event("response.function_call_arguments.done", item_id=item["id"], output_index=0,
                  arguments=item["arguments"])  # fmt: skip
        else:
            text = item["content"][0]["text"]
            event("response.output_item.added", output_index=0, item={**item, "content": [], "status": "in_progress"})
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            event("response.content_part.added", item_id=item["id"], output_index=0, content_index=0, part=part)
            for word in text.split(" "):
                event("response.output_text.delta", item_id=item["id"], output_index=0, content_index=0,
                      delta=word + " ", logprobs=[])  # fmt: skip
            event("response.output_text.done", item_id=item["id"], output_index=0, content_index=0, text=text,
                  logprobs=[])  # fmt: skip
            event("response.content_part.done", item_id=item["id"], output_index=0, content_index=0,
                  part={**part, "text": text})  # fmt: skip
        event("response.output_item.done", output_index=0, item=item)
        event("response.completed", response=response)


def serve(port: int, log_path: str) -> ThreadingHTTPServer:
    Handler.script = Script(log_path)
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", required=True)
    args = parser.parse_args()
    serve(args.port, args.log).serve_forever()


if __name__ == "__main__":
    main()
