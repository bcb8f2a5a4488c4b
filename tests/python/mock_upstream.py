"""A small OpenAI-compatible upstream for the SDK tests (127.0.0.1, port 0, stdlib only).

Behaviour: when tools are offered and the conversation does not end with a tool result, it
calls the first tool (arguments streamed in fragments); otherwise it answers with text that
echoes the last user message. Every request body is recorded for assertions.
"""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class MockState:
    def __init__(self):
        self.requests = []
        self.lock = threading.Lock()


def _last_user_text(messages):
    for m in reversed(messages):
        if m.get("role") == "user":
            c = m.get("content")
            if isinstance(c, str):
                return c
            if isinstance(c, list):
                return "".join(p.get("text", "") for p in c if isinstance(p, dict))
    return ""


def _answer(body):
    messages = body.get("messages", [])
    tools = body.get("tools") or []
    last_is_tool = bool(messages) and messages[-1].get("role") == "tool"
    if tools and not last_is_tool:
        name = tools[0]["function"]["name"]
        return {"tool": {"id": "call_mock_1", "name": name, "arguments": '{"city": "Paris"}'}}
    if last_is_tool:
        return {"text": "The tool said: " + str(messages[-1].get("content"))}
    return {"text": "Hello from upstream: " + _last_user_text(messages)}


def _chunk(delta, finish=None):
    return {
        "id": "chatcmpl-py",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "mock-upstream",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # keep test output quiet
        pass

    def do_GET(self):
        if self.path.endswith("/models"):
            self._json(200, {"object": "list", "data": [{"id": "mock-upstream", "object": "model", "owned_by": "mock"}]})
        else:
            self._json(404, {"error": {"message": "not found"}})

    def do_POST(self):
        length = int(self.headers.get("content-length", "0"))
        body = json.loads(self.rfile.read(length) or b"{}")
        with self.server.state.lock:
            self.server.state.requests.append({"path": self.path, "body": body, "headers": {k.lower(): v for k, v in self.headers.items()}})
        if not self.path.endswith("/chat/completions"):
            self._json(404, {"error": {"message": "not found"}})
            return
        answer = _answer(body)
        if body.get("stream"):
            self._stream(answer)
        else:
            self._json(200, self._completion(answer))

    def _completion(self, answer):
        if "tool" in answer:
            t = answer["tool"]
            message = {"role": "assistant", "content": None, "tool_calls": [
                {"id": t["id"], "type": "function", "function": {"name": t["name"], "arguments": t["arguments"]}}]}
            finish = "tool_calls"
        else:
            message = {"role": "assistant", "content": answer["text"]}
            finish = "stop"
        return {
            "id": "chatcmpl-py", "object": "chat.completion", "created": 1700000000, "model": "mock-upstream",
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17},
        }

    def _stream(self, answer):
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        frames = [_chunk({"role": "assistant", "content": ""})]
        if "tool" in answer:
            t = answer["tool"]
            args = t["arguments"]
            frames.append(_chunk({"tool_calls": [{"index": 0, "id": t["id"], "type": "function",
                                                   "function": {"name": t["name"], "arguments": ""}}]}))
            for piece in (args[:5], args[5:11], args[11:]):
                frames.append(_chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}))
            frames.append(_chunk({}, "tool_calls"))
        else:
            for word in answer["text"].split(" "):
                frames.append(_chunk({"content": word + " "}))
            frames.append(_chunk({}, "stop"))
        usage = {"id": "chatcmpl-py", "object": "chat.completion.chunk", "created": 1700000000,
                 "model": "mock-upstream", "choices": [],
                 "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}}
        for f in frames + [usage]:
            self._chunked(("data: " + json.dumps(f) + "\n\n").encode())
        self._chunked(b"data: [DONE]\n\n")
        self._chunked(b"")

    def _chunked(self, data):
        self.wfile.write(("%x\r\n" % len(data)).encode() + data + b"\r\n")
        self.wfile.flush()

    def _json(self, status, obj):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def start():
    """Starts the mock; returns (base_url, state, server)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.state = MockState()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return "http://127.0.0.1:%d" % server.server_address[1], server.state, server
