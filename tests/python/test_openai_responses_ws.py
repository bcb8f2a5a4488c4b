"""Responses WebSocket mode (`GET /v1/responses`, as Codex CLI uses it) driven by the
`websockets` client against an OpenAI-compatible upstream: turns on one connection continued
with `previous_response_id`, a tool-call round trip, an error turn that leaves the connection
usable, and the upgrade refused without the client key."""

import json

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from conftest import openai_backend_config

KEY = "client-key-for-ws-tests"
TOOLS = [{"type": "function", "name": "get_weather", "description": "Weather for a city",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]


@pytest.fixture
def ws_url(upstream, start_proxy):
    url, _ = upstream
    proxy = start_proxy(openai_backend_config(url) + "auth:\n  api_keys: [%s]\n" % KEY)
    return proxy.url.replace("http://", "ws://", 1) + "/v1/responses"


def open_ws(url):
    return connect(url, additional_headers={"Authorization": "Bearer " + KEY,
                                            "OpenAI-Beta": "responses_websockets=2026-02-06"})


def turn(ws, **body):
    """Sends one response.create; the turn's events up to its last one."""
    ws.send(json.dumps({"type": "response.create", "model": "gpt-4o", "store": False, **body}))
    events = []
    while True:
        event = json.loads(ws.recv(timeout=30))
        events.append(event)
        if event["type"] in ("response.completed", "response.failed", "response.incomplete"):
            return events
        if event["type"] == "error" and "status" in event:
            return events


def completed(events):
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert events[0]["type"] == "response.created"
    assert events[-1]["type"] == "response.completed", events
    return events[-1]["response"]


def text_of(response):
    # The mock streams word by word, each followed by a space.
    return "".join(part["text"] for item in response["output"] if item["type"] == "message"
                   for part in item["content"]).strip()


def test_turns_continue_with_previous_response_id(ws_url, upstream):
    _, state = upstream
    with open_ws(ws_url) as ws:
        first = completed(turn(ws, instructions="Be brief.", input="first question"))
        assert text_of(first) == "Hello from upstream: first question"
        deltas = "".join(e["delta"] for e in turn(ws, input="second question",
                                                   previous_response_id=first["id"])
                         if e["type"] == "response.output_text.delta")
        assert deltas.strip() == "Hello from upstream: second question"
    sent = state.requests[-1]["body"]["messages"]
    # As with OpenAI, `instructions` are not carried over to the next turn.
    assert [m["role"] for m in sent] == ["user", "assistant", "user"], sent
    assert sent[0]["content"] == "first question"
    assert sent[2]["content"] == "second question"


def test_tool_call_round_trip(ws_url):
    with open_ws(ws_url) as ws:
        first = completed(turn(ws, input="weather in Paris?", tools=TOOLS))
        call = next(item for item in first["output"] if item["type"] == "function_call")
        assert call["name"] == "get_weather"
        assert json.loads(call["arguments"]) == {"city": "Paris"}
        second = completed(turn(ws, previous_response_id=first["id"], tools=TOOLS, input=[
            {"type": "function_call_output", "call_id": call["call_id"], "output": "sunny"}]))
        assert text_of(second) == "The tool said: sunny"


def test_an_error_turn_leaves_the_connection_usable(ws_url):
    with open_ws(ws_url) as ws:
        events = turn(ws, input="hi", previous_response_id="resp_nope")
        assert len(events) == 1
        assert events[0]["status"] == 400
        assert events[0]["error"]["code"] == "previous_response_not_found"
        assert text_of(completed(turn(ws, input="again"))) == "Hello from upstream: again"


def test_the_upgrade_needs_the_client_key(ws_url):
    with pytest.raises(InvalidStatus) as refused:
        connect(ws_url)
    assert refused.value.response.status_code == 401
