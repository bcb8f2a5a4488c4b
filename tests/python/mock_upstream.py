"""A small OpenAI-compatible upstream for the SDK tests (127.0.0.1, port 0, stdlib only).

Chat dialect (`/chat/completions`): when tools are offered and the conversation does not end
with a tool result, it calls the first tool (arguments streamed in fragments); otherwise it
answers with text that echoes the last user message.

Responses dialect (`/responses`): a request whose input holds no reasoning item is answered
with a reasoning item (`REASONING_ID`, opaque `ENCRYPTED` content) and a message; a request
whose input holds reasoning items is answered with a message echoing their
`encrypted_content` (`ECHO_PREFIX` + JSON list). Streamed answers use the official event names
with `sequence_number`s.

Anthropic dialect (`/v1/messages`): a request whose history holds no thinking block is
answered with signed thinking (`ANTHROPIC_SIGNATURE`) and a text; one that holds thinking
blocks is answered with a text. Gemini dialect (`models/{m}:generateContent`,
`:streamGenerateContent?alt=sse`): with tools and no function response yet it thinks (an
unsigned thought part) and calls the first tool, signing the `functionCall` part
(`GEMINI_SIGNATURE`), as Gemini does when a turn ends in a tool call; otherwise it answers
with a text. Under `/cache/` (`/cache/v1/messages`) the Anthropic dialect instead answers
"Hello from anthropic: <last user text>" with usage that read `ANTHROPIC_CACHE_READ` tokens
from the cache, for the prompt-caching tests. Every request body is recorded for assertions.
"""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


# Opaque like OpenAI's, with characters a careless re-encoding would change.
ENCRYPTED = "gAAAAABo+Xy/Z9_r-EnC==\u00e9\U0001f600\\n\"x\"\u2028"
REASONING_ID = "rs_mock_0123"
ECHO_PREFIX = "received encrypted_content: "
# Opaque, base64 like the real ones.
ANTHROPIC_SIGNATURE = "EqQBCkYIBxgCKkDmock+anthropic/signature=="
GEMINI_SIGNATURE = "CiQB0e2Kb6sH0ZP1mockGeminiSignature+/w=="


# What the Anthropic endpoint reports: prompt tokens read from the cache and uncached ones.
ANTHROPIC_CACHE_READ = 900
ANTHROPIC_FRESH_INPUT = 50


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
        if self.path.endswith("/messages") and not self.path.startswith("/cache/"):
            blocks = _anthropic_answer(body)
            if body.get("stream"):
                self._sse(_anthropic_stream(blocks))
            else:
                self._json(200, _anthropic_message(blocks))
            return
        if ":generateContent" in self.path or ":streamGenerateContent" in self.path:
            parts = _gemini_answer(body)
            if ":streamGenerateContent" in self.path:
                frames = [_gemini_response([p], None) for p in parts] + [_gemini_response([{"text": ""}], "STOP")]
                self._sse(["data: %s\n\n" % json.dumps(f) for f in frames])
            else:
                self._json(200, _gemini_response(parts, "STOP"))
            return
        if self.path.endswith("/responses"):
            items = _responses_answer(body)
            if body.get("stream"):
                self._sse(_responses_stream(items))
            else:
                self._json(200, _response_object(items))
            return
        if self.path.endswith("/messages"):
            self._anthropic(body)
            return
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

    def _anthropic(self, body):
        """An Anthropic Messages answer that read `ANTHROPIC_CACHE_READ` prompt tokens from the
        cache (and `ANTHROPIC_FRESH_INPUT` more), streamed or not."""
        text = "Hello from anthropic: " + _last_user_text(body.get("messages", []))
        usage = {"input_tokens": ANTHROPIC_FRESH_INPUT, "output_tokens": 5,
                 "cache_read_input_tokens": ANTHROPIC_CACHE_READ, "cache_creation_input_tokens": 0}
        message = {"id": "msg_py", "type": "message", "role": "assistant", "model": "claude-mock",
                   "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
                   "stop_sequence": None, "usage": usage}
        if not body.get("stream"):
            self._json(200, message)
            return

        def event(data):
            return "event: %s\ndata: %s\n\n" % (data["type"], json.dumps(data))

        start = dict(message, content=[], stop_reason=None, usage=dict(usage, output_tokens=1))
        self._sse([
            event({"type": "message_start", "message": start}),
            event({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            event({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}),
            event({"type": "content_block_stop", "index": 0}),
            event({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                   "usage": {"output_tokens": 5}}),
            event({"type": "message_stop"}),
        ])

    def _sse(self, frames):
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        for f in frames:
            self._chunked(f.encode())
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


def _responses_answer(body):
    """The output items answering a Responses request."""
    items = body.get("input")
    if not isinstance(items, list):
        items = []
    received = [i.get("encrypted_content") for i in items if isinstance(i, dict) and i.get("type") == "reasoning"]
    if received:
        return [_message_item("msg_mock_echo", ECHO_PREFIX + json.dumps(received))]
    return [
        {"id": REASONING_ID, "type": "reasoning",
         "summary": [{"type": "summary_text", "text": "The user greets me."}],
         "encrypted_content": ENCRYPTED},
        _message_item("msg_mock_0", "Hello from the Responses upstream."),
    ]


def _message_item(item_id, text):
    return {"id": item_id, "type": "message", "status": "completed", "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": []}]}


def _response_object(items, status="completed"):
    return {
        "id": "resp_mock_upstream", "object": "response", "created_at": 1700000000,
        "status": status, "error": None, "incomplete_details": None, "model": "mock-responses",
        "output": items,
        "usage": None if status != "completed" else {
            "input_tokens": 11, "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 7, "output_tokens_details": {"reasoning_tokens": 3}, "total_tokens": 18},
    }


def _responses_stream(items):
    """SSE frames (`event:` + `data:`) streaming `items` with the official event names."""
    frames = []

    def push(kind, body):
        body = dict(body, type=kind, sequence_number=len(frames))
        frames.append("event: %s\ndata: %s\n\n" % (kind, json.dumps(body)))

    def halves(text):
        mid = len(text) // 2
        return [text[:mid], text[mid:]]

    push("response.created", {"response": _response_object([], "in_progress")})
    push("response.in_progress", {"response": _response_object([], "in_progress")})
    for i, item in enumerate(items):
        at = {"item_id": item["id"], "output_index": i}
        if item["type"] == "reasoning":
            summary = item["summary"][0]["text"]
            push("response.output_item.added", {"output_index": i, "item": {"id": item["id"], "type": "reasoning", "summary": []}})
            push("response.reasoning_summary_part.added", dict(at, summary_index=0, part={"type": "summary_text", "text": ""}))
            for d in halves(summary):
                push("response.reasoning_summary_text.delta", dict(at, summary_index=0, delta=d))
            push("response.reasoning_summary_text.done", dict(at, summary_index=0, text=summary))
            push("response.reasoning_summary_part.done", dict(at, summary_index=0, part={"type": "summary_text", "text": summary}))
        else:
            text = item["content"][0]["text"]
            push("response.output_item.added", {"output_index": i, "item": dict(item, status="in_progress", content=[])})
            push("response.content_part.added", dict(at, content_index=0, part={"type": "output_text", "text": "", "annotations": []}))
            for d in halves(text):
                push("response.output_text.delta", dict(at, content_index=0, delta=d, logprobs=[]))
            push("response.output_text.done", dict(at, content_index=0, text=text, logprobs=[]))
            push("response.content_part.done", dict(at, content_index=0, part=item["content"][0]))
        push("response.output_item.done", {"output_index": i, "item": item})
    push("response.completed", {"response": _response_object(items)})
    return frames


def _anthropic_answer(body):
    """Content blocks answering an Anthropic Messages request."""
    seen = any(isinstance(m.get("content"), list) and any(b.get("type") == "thinking" for b in m["content"])
               for m in body.get("messages", []) if m.get("role") == "assistant")
    if seen:
        return [{"type": "text", "text": "Eight."}]
    return [{"type": "thinking", "thinking": "The user asks for a sum.", "signature": ANTHROPIC_SIGNATURE},
            {"type": "text", "text": "Four."}]


def _anthropic_message(blocks):
    return {"id": "msg_mock_0", "type": "message", "role": "assistant", "model": "claude-mock",
            "content": blocks, "stop_reason": "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": 11, "output_tokens": 7}}


def _anthropic_stream(blocks):
    """The SSE transcript of `blocks` (`event:` + `data:`), as Anthropic streams it."""
    frames = []

    def push(kind, body):
        frames.append("event: %s\ndata: %s\n\n" % (kind, json.dumps(dict(body, type=kind))))

    start = _anthropic_message([])
    start.update(stop_reason=None, usage={"input_tokens": 11, "output_tokens": 0})
    push("message_start", {"message": start})
    for i, b in enumerate(blocks):
        if b["type"] == "thinking":
            push("content_block_start", {"index": i, "content_block": {"type": "thinking", "thinking": "", "signature": ""}})
            push("content_block_delta", {"index": i, "delta": {"type": "thinking_delta", "thinking": b["thinking"]}})
            push("content_block_delta", {"index": i, "delta": {"type": "signature_delta", "signature": b["signature"]}})
        else:
            push("content_block_start", {"index": i, "content_block": {"type": "text", "text": ""}})
            push("content_block_delta", {"index": i, "delta": {"type": "text_delta", "text": b["text"]}})
        push("content_block_stop", {"index": i})
    push("message_delta", {"delta": {"stop_reason": "end_turn", "stop_sequence": None}, "usage": {"output_tokens": 7}})
    push("message_stop", {})
    return frames


def _gemini_answer(body):
    """Parts answering a Gemini `generateContent` request."""
    parts = [p for c in body.get("contents", []) for p in c.get("parts", [])]
    decls = [d for t in body.get("tools") or [] for d in t.get("functionDeclarations") or []]
    if any("functionResponse" in p for p in parts):
        return [{"text": "The tool answered."}]
    if decls:
        return [{"text": "I need the tool for this.", "thought": True},
                {"functionCall": {"name": decls[0]["name"], "args": {"city": "Paris"}},
                 "thoughtSignature": GEMINI_SIGNATURE}]
    return [{"text": "Hello from Gemini."}]


def _gemini_response(parts, finish):
    candidate = {"content": {"role": "model", "parts": parts}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    return {"candidates": [candidate], "modelVersion": "gemini-mock", "responseId": "gemini-mock-0",
            "usageMetadata": {"promptTokenCount": 11, "candidatesTokenCount": 7, "totalTokenCount": 18}}


def start():
    """Starts the mock; returns (base_url, state, server)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.state = MockState()
    # A short poll interval: shutdown() waits for it, once per test.
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    return "http://127.0.0.1:%d" % server.server_address[1], server.state, server
