"""The official OpenAI Python SDK drives llm-proxy against an OpenAI-compatible upstream."""

import json

import openai
import pytest

from conftest import openai_backend_config


@pytest.fixture
def client(upstream, start_proxy):
    url, _ = upstream
    proxy = start_proxy(openai_backend_config(url))
    return openai.OpenAI(base_url=proxy.url + "/v1", api_key="unused", max_retries=0)


def test_chat(client, upstream):
    _, state = upstream
    r = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi there"}])
    assert r.choices[0].message.content == "Hello from upstream: hi there"
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.total_tokens == 17
    assert state.requests[-1]["body"]["model"] == "gpt-4o"
    assert state.requests[-1]["headers"]["authorization"] == "Bearer sk-upstream-test-key-0000"


def test_streaming(client):
    stream = client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "stream please"}], stream=True,
        stream_options={"include_usage": True},
    )
    text, finish, usage = "", None, None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for choice in chunk.choices:
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
    assert text.strip() == "Hello from upstream: stream please"
    assert finish == "stop"
    assert usage.completion_tokens == 5


TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]


@pytest.mark.parametrize("stream", [False, True])
def test_tool_calls_two_turns(client, upstream, stream):
    _, state = upstream
    messages = [{"role": "user", "content": "weather in Paris?"}]
    if stream:
        calls = {}
        for chunk in client.chat.completions.create(model="gpt-4o", messages=messages, tools=TOOLS, stream=True):
            for choice in chunk.choices:
                for tc in choice.delta.tool_calls or []:
                    slot = calls.setdefault(tc.index, {"id": None, "name": None, "arguments": ""})
                    slot["id"] = tc.id or slot["id"]
                    if tc.function and tc.function.name:
                        slot["name"] = tc.function.name
                    if tc.function and tc.function.arguments:
                        slot["arguments"] += tc.function.arguments
        call = calls[0]
        call_id, name, arguments = call["id"], call["name"], call["arguments"]
    else:
        r = client.chat.completions.create(model="gpt-4o", messages=messages, tools=TOOLS)
        assert r.choices[0].finish_reason == "tool_calls"
        tc = r.choices[0].message.tool_calls[0]
        call_id, name, arguments = tc.id, tc.function.name, tc.function.arguments
    assert name == "get_weather"
    assert json.loads(arguments) == {"city": "Paris"}
    messages += [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}]},
        {"role": "tool", "tool_call_id": call_id, "content": "sunny, 21C"},
    ]
    r = client.chat.completions.create(model="gpt-4o", messages=messages, tools=TOOLS)
    assert r.choices[0].message.content == "The tool said: sunny, 21C"
    sent = state.requests[-1]["body"]["messages"]
    assert sent[-1] == {"role": "tool", "tool_call_id": call_id, "content": "sunny, 21C"}
    assert sent[-2]["tool_calls"][0]["id"] == call_id


def test_errors_arrive_as_sdk_exceptions(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="nosuch:model", messages=[{"role": "user", "content": "x"}])
    assert "Available backends" in str(e.value)


def test_offline_mock_backend(start_proxy):
    proxy = start_proxy("")
    c = openai.OpenAI(base_url=proxy.url + "/v1", api_key="unused", max_retries=0)
    r = c.chat.completions.create(model="mock-model", messages=[{"role": "user", "content": "ping"}])
    assert r.choices[0].message.content == "You said: ping"
