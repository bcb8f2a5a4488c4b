#!/usr/bin/env python3
"""A scripted LLM upstream for the coding-agent end-to-end runs (scripts/agents-e2e).

Speaks OpenAI chat (`/v1/chat/completions`), OpenAI Responses (`/v1/responses`), Anthropic
(`/v1/messages`) and Gemini (`/v1beta/models/{model}:generateContent` /
`:streamGenerateContent`) on 127.0.0.1:0, streamed or not. The script, whatever the dialect:
  * once a request carries the marker file's content, answer with the final phrase;
  * else, when a file-reading tool is offered, call it on the marker file's absolute path, or
    when only a shell tool is (Codex's `shell` / `shell_command` / `exec_command`), run
    `cat <marker file>` with it;
  * else (titles, quota probes, ...), answer a short text.
Every request (a JSON line with its path and headers, then the body) is written to --dump-dir;
GET /_state reports whether the marker arrived.
Stdlib only. Prints `listening on http://127.0.0.1:PORT` once ready.
"""

import argparse
import json
import os
import shlex
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

READ_TOOL_NAMES = ("read", "read_file", "readfile", "view", "read_many_files")
SHELL_TOOL_NAMES = ("shell", "shell_command", "exec_command", "container.exec")


class Script:
    def __init__(self, marker_path, marker_text, phrase, dump_dir):
        self.marker_path = marker_path
        self.marker_text = marker_text
        self.phrase = phrase
        self.dump_dir = dump_dir
        self.lock = threading.Lock()
        self.count = 0
        self.marker_seen = False
        self.tool_calls = 0

    def record(self, path, headers, body_bytes):
        with self.lock:
            self.count += 1
            n = self.count
            seen = self.marker_text.encode() in body_bytes
            self.marker_seen = self.marker_seen or seen
        if self.dump_dir:
            with open(os.path.join(self.dump_dir, "%03d.json" % n), "wb") as f:
                head = {"path": path, "headers": dict(headers)}
                f.write(json.dumps(head).encode() + b"\n" + body_bytes)
        return seen

    def decide(self, marker_in_request, tools):
        """(kind, value): ("text", str) or ("tool", (name, args))."""
        if marker_in_request:
            return "text", "Done. %s" % self.phrase
        tool = pick_read_tool(tools)
        if tool is not None:
            name, path_param = tool
            args = {path_param: self.marker_path}
        else:
            tool = pick_shell_tool(tools, self.marker_path)
            if tool is None:
                return "text", "ok"
            name, args = tool
        with self.lock:
            self.tool_calls += 1
        return "tool", (name, args)


def pick_read_tool(tools):
    """(name, path parameter) of the first file-reading tool among (name, schema) pairs."""
    for name, schema in tools:
        if name.lower() not in READ_TOOL_NAMES:
            continue
        props = (schema or {}).get("properties") or {}
        for key in ("file_path", "absolute_path", "filePath", "path"):
            if key in props:
                return name, key
        for key in props:
            if "path" in key.lower():
                return name, key
    return None


def pick_shell_tool(tools, path):
    """(name, arguments) running `cat path` with the first shell tool, by its schema: an argv
    array or a command string in `command`, or a string in `cmd`."""
    argv = ["cat", path]
    line = "cat " + shlex.quote(path)
    for name, schema in tools:
        if name.lower() not in SHELL_TOOL_NAMES:
            continue
        props = (schema or {}).get("properties") or {}
        command = props.get("command")
        if command is not None:
            return name, {"command": argv if command.get("type") == "array" else line}
        if "cmd" in props:
            return name, {"cmd": line}
    return None


# ---- OpenAI chat ---------------------------------------------------------------------------

def openai_tools(body):
    out = []
    for t in body.get("tools") or []:
        f = t.get("function") or {}
        out.append((f.get("name", ""), f.get("parameters")))
    return out


def openai_reply(handler, body, kind, value):
    model = body.get("model", "mock")
    if kind == "tool":
        name, args = value
        call = {"id": "call_e2e_1", "type": "function",
                "function": {"name": name, "arguments": json.dumps(args)}}
        message = {"role": "assistant", "content": None, "tool_calls": [call]}
        finish = "tool_calls"
    else:
        message = {"role": "assistant", "content": value}
        finish = "stop"
    usage = {"prompt_tokens": 50, "completion_tokens": 10, "total_tokens": 60}
    if not body.get("stream"):
        handler.send_json(200, {"id": "chatcmpl-e2e", "object": "chat.completion", "created": 1,
                                "model": model, "usage": usage,
                                "choices": [{"index": 0, "message": message, "finish_reason": finish}]})
        return

    def chunk(delta, finish_reason=None):
        return {"id": "chatcmpl-e2e", "object": "chat.completion.chunk", "created": 1, "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}

    frames = [chunk({"role": "assistant", "content": ""})]
    if kind == "tool":
        c = message["tool_calls"][0]
        frames.append(chunk({"tool_calls": [{"index": 0, "id": c["id"], "type": "function",
                                             "function": {"name": c["function"]["name"], "arguments": ""}}]}))
        frames.append(chunk({"tool_calls": [{"index": 0, "function": {"arguments": c["function"]["arguments"]}}]}))
    else:
        frames.append(chunk({"content": value}))
    frames.append(chunk({}, finish))
    frames.append({"id": "chatcmpl-e2e", "object": "chat.completion.chunk", "created": 1, "model": model,
                   "choices": [], "usage": usage})
    handler.send_sse(["data: %s\n\n" % json.dumps(f) for f in frames] + ["data: [DONE]\n\n"])


# ---- OpenAI Responses ----------------------------------------------------------------------

def responses_tools(body):
    return [(t.get("name", ""), t.get("parameters")) for t in body.get("tools") or []
            if t.get("type") == "function"]


def responses_reply(handler, body, kind, value):
    model = body.get("model", "mock")
    if kind == "tool":
        name, args = value
        item = {"id": "fc_e2e_1", "type": "function_call", "status": "completed",
                "call_id": "call_e2e_1", "name": name, "arguments": json.dumps(args)}
    else:
        item = {"id": "msg_e2e_1", "type": "message", "status": "completed", "role": "assistant",
                "content": [{"type": "output_text", "text": value, "annotations": []}]}
    usage = {"input_tokens": 50, "input_tokens_details": {"cached_tokens": 0},
             "output_tokens": 10, "output_tokens_details": {"reasoning_tokens": 0},
             "total_tokens": 60}
    response = {"id": "resp_e2e", "object": "response", "created_at": 1, "status": "completed",
                "model": model, "output": [item], "usage": usage}
    if not body.get("stream"):
        handler.send_json(200, response)
        return
    events = [("response.created", {"response": dict(response, status="in_progress", output=[], usage=None)}),
              ("response.output_item.added", {"output_index": 0, "item": item}),
              ("response.output_item.done", {"output_index": 0, "item": item}),
              ("response.completed", {"response": response})]
    frames = []
    for n, (name, data) in enumerate(events):
        data = dict(data, type=name, sequence_number=n)
        frames.append("event: %s\ndata: %s\n\n" % (name, json.dumps(data)))
    handler.send_sse(frames)


# ---- Anthropic -----------------------------------------------------------------------------

def anthropic_tools(body):
    return [(t.get("name", ""), t.get("input_schema")) for t in body.get("tools") or []]


def anthropic_reply(handler, body, kind, value):
    model = body.get("model", "mock")
    if kind == "tool":
        name, args = value
        block = {"type": "tool_use", "id": "toolu_e2e_1", "name": name, "input": args}
        stop = "tool_use"
    else:
        block = {"type": "text", "text": value}
        stop = "end_turn"
    usage = {"input_tokens": 50, "output_tokens": 10}
    if not body.get("stream"):
        handler.send_json(200, {"id": "msg_e2e", "type": "message", "role": "assistant", "model": model,
                                "content": [block], "stop_reason": stop, "stop_sequence": None,
                                "usage": usage})
        return
    start = dict(block, input={}) if kind == "tool" else dict(block, text="")
    delta = ({"type": "input_json_delta", "partial_json": json.dumps(block["input"])} if kind == "tool"
             else {"type": "text_delta", "text": value})
    events = [
        ("message_start", {"type": "message_start", "message": {
            "id": "msg_e2e", "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 50, "output_tokens": 1}}}),
        ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": start}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                           "usage": {"output_tokens": 10}}),
        ("message_stop", {"type": "message_stop"}),
    ]
    handler.send_sse(["event: %s\ndata: %s\n\n" % (e, json.dumps(d)) for e, d in events])


# ---- Gemini --------------------------------------------------------------------------------

def gemini_tools(body):
    out = []
    for t in body.get("tools") or []:
        for f in t.get("functionDeclarations") or t.get("function_declarations") or []:
            out.append((f.get("name", ""), f.get("parameters") or f.get("parametersJsonSchema")))
    return out


def gemini_reply(handler, stream, kind, value):
    if kind == "tool":
        name, args = value
        part = {"functionCall": {"name": name, "args": args}}
    else:
        part = {"text": value}
    resp = {"candidates": [{"content": {"role": "model", "parts": [part]}, "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": 50, "candidatesTokenCount": 10, "totalTokenCount": 60},
            "modelVersion": "mock"}
    if stream:
        handler.send_sse(["data: %s\r\n\r\n" % json.dumps(resp)])
    else:
        handler.send_json(200, resp)


# ---- server --------------------------------------------------------------------------------

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_HEAD(self):
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def do_GET(self):
        s = self.server.script
        path = self.path.split("?", 1)[0]
        if path == "/_state":
            with s.lock:
                self.send_json(200, {"requests": s.count, "marker_seen": s.marker_seen,
                                     "tool_calls": s.tool_calls})
        elif path.endswith("/models"):
            self.send_json(200, {"object": "list", "data": [{"id": "mock", "object": "model"}],
                                 "models": [{"name": "models/mock"}]})
        else:
            self.send_json(404, {"error": {"message": "not found: " + path}})

    def do_POST(self):
        s = self.server.script
        raw = self.rfile.read(int(self.headers.get("content-length", "0")))
        path = self.path.split("?", 1)[0]
        marker = s.record(self.path, self.headers.items(), raw)
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            self.send_json(400, {"error": {"message": "invalid json"}})
            return
        if path.endswith("/chat/completions"):
            kind, value = s.decide(marker, openai_tools(body))
            openai_reply(self, body, kind, value)
        elif path.endswith("/responses"):
            kind, value = s.decide(marker, responses_tools(body))
            responses_reply(self, body, kind, value)
        elif path.endswith("/messages/count_tokens"):
            self.send_json(200, {"input_tokens": 100})
        elif path.endswith("/messages"):
            kind, value = s.decide(marker, anthropic_tools(body))
            anthropic_reply(self, body, kind, value)
        elif path.endswith(":generateContent") or path.endswith(":streamGenerateContent"):
            kind, value = s.decide(marker, gemini_tools(body))
            gemini_reply(self, path.endswith(":streamGenerateContent"), kind, value)
        elif path.endswith(":countTokens"):
            self.send_json(200, {"totalTokens": 100})
        else:
            self.send_json(404, {"error": {"message": "not found: " + path}})

    def send_json(self, status, obj):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def send_sse(self, frames):
        data = "".join(frames).encode()
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--marker-file", required=True, help="absolute path of the file to read")
    p.add_argument("--phrase", required=True, help="text of the final answer")
    p.add_argument("--dump-dir", help="write every request body here")
    args = p.parse_args()
    with open(args.marker_file) as f:
        marker_text = f.read().strip()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.script = Script(args.marker_file, marker_text, args.phrase, args.dump_dir)
    print("listening on http://127.0.0.1:%d" % server.server_address[1], flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
