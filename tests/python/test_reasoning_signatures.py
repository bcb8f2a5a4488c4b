"""Reasoning signatures across protocols through the official SDKs, over two turns: the
Anthropic SDK on a Gemini upstream (the `functionCall` part's thought signature reaches the
client on its thinking block and goes back on the call) and the google-genai SDK on an
Anthropic upstream (another provider's signature rides in `thoughtSignature` as valid base64,
and the Anthropic upstream gets its own signature back)."""

import base64

import anthropic
import pytest
from google import genai
from google.genai import types

import mock_upstream

TOOLS = [{"name": "get_weather", "description": "Weather for a city",
          "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]


def gemini_backend_config(url):
    return ("backends:\n  default_backend: gemini\n  gemini:\n"
            "    api_url: %s\n    api_key: AIza-upstream-test-key-0000\n" % url)


def anthropic_backend_config(url):
    return ("backends:\n  default_backend: anthropic\n  anthropic:\n"
            "    api_url: %s/v1\n    api_key: sk-ant-upstream-test-key-0000\n" % url)


def all_strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for v in value:
            yield from all_strings(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from all_strings(v)


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_sdk_on_gemini_tool_turn_keeps_the_call_signature(upstream, start_proxy, stream):
    url, state = upstream
    proxy = start_proxy(gemini_backend_config(url))
    client = anthropic.Anthropic(base_url=proxy.url, api_key="unused", max_retries=0)
    args = dict(model="gemini-2.5-pro", max_tokens=4096, tools=TOOLS,
                thinking={"type": "enabled", "budget_tokens": 2048})
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    if stream:
        with client.messages.stream(messages=messages, **args) as s:
            final = s.get_final_message()
    else:
        final = client.messages.create(messages=messages, **args)
    assert final.stop_reason == "tool_use"
    thinking = [b for b in final.content if b.type == "thinking"]
    assert [b.thinking for b in thinking] == ["I need the tool for this."]
    # The thinking block carries the signature Gemini put on the call, sealed.
    assert thinking[0].signature
    assert mock_upstream.GEMINI_SIGNATURE not in thinking[0].signature
    use = [b for b in final.content if b.type == "tool_use"][0]

    messages += [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in final.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny, 21C"}]},
    ]
    r = client.messages.create(messages=messages, **args)
    assert r.content[-1].text == "The tool answered."
    sent = state.requests[-1]["body"]
    calls = [p for c in sent["contents"] for p in c["parts"] if "functionCall" in p]
    assert len(calls) == 1
    assert calls[0]["functionCall"]["name"] == "get_weather"
    assert calls[0]["thoughtSignature"] == mock_upstream.GEMINI_SIGNATURE


@pytest.mark.parametrize("stream", [False, True])
def test_genai_sdk_on_anthropic_upstream_sends_the_signature_back(upstream, start_proxy, stream):
    url, state = upstream
    proxy = start_proxy(anthropic_backend_config(url))
    client = genai.Client(api_key="unused", http_options=types.HttpOptions(base_url=proxy.url))
    config = types.GenerateContentConfig(
        thinking_config=types.ThinkingConfig(include_thoughts=True, thinking_budget=2048))
    contents = [types.Content(role="user", parts=[types.Part.from_text(text="What is 2+2?")])]
    # The SDK validates `thoughtSignature` as base64 bytes: a raw-JSON signature fails here.
    if stream:
        chunks = list(client.models.generate_content_stream(model="claude-mock", contents=contents, config=config))
        parts = [p for c in chunks if c.candidates and c.candidates[0].content
                 for p in (c.candidates[0].content.parts or [])]
    else:
        r = client.models.generate_content(model="claude-mock", contents=contents, config=config)
        parts = r.candidates[0].content.parts
    signed = [p for p in parts if p.thought_signature]
    assert signed, parts
    for p in signed:
        assert isinstance(p.thought_signature, bytes)
        assert mock_upstream.ANTHROPIC_SIGNATURE.encode() not in p.thought_signature
        assert base64.b64decode(mock_upstream.ANTHROPIC_SIGNATURE) not in p.thought_signature
    assert "".join(p.text or "" for p in parts if p.thought) == "The user asks for a sum."
    assert "".join(p.text or "" for p in parts if not p.thought) == "Four."

    contents += [
        types.Content(role="model", parts=parts),
        types.Content(role="user", parts=[types.Part.from_text(text="And 4+4?")]),
    ]
    r = client.models.generate_content(model="claude-mock", contents=contents, config=config)
    assert r.text == "Eight."
    sent = state.requests[-1]["body"]
    assistant = [m for m in sent["messages"] if m["role"] == "assistant"]
    assert len(assistant) == 1
    thinking = [b for b in assistant[0]["content"] if b["type"] == "thinking"]
    assert thinking == [{"type": "thinking", "thinking": "The user asks for a sum.",
                         "signature": mock_upstream.ANTHROPIC_SIGNATURE}]
    assert not any("llmproxy" in s for s in all_strings(sent))


def two_provider_config(url):
    return ("backends:\n  default_backend: anthropic\n"
            "  anthropic:\n    api_url: %s/v1\n    api_key: sk-ant-upstream-test-key-0000\n"
            "  gemini:\n    api_url: %s\n    api_key: AIza-upstream-test-key-0000\n" % (url, url))


def b64_equal(a, b):
    """Equal as base64 bytes, whichever alphabet each uses (google-genai re-encodes URL-safe)."""
    return base64.urlsafe_b64decode(a.replace("+", "-").replace("/", "_")) == \
        base64.urlsafe_b64decode(b.replace("+", "-").replace("/", "_"))


def is_sealed(s):
    if s.startswith("llmproxy"):
        return True
    try:
        return base64.b64decode(s).startswith(b"llmproxy")
    except ValueError:
        return False


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_sdk_switching_anthropic_gemini_anthropic(upstream, start_proxy, stream):
    url, state = upstream
    proxy = start_proxy(two_provider_config(url))
    client = anthropic.Anthropic(base_url=proxy.url, api_key="unused", max_retries=0)

    def turn(model, messages):
        args = dict(model=model, max_tokens=4096, tools=TOOLS, messages=messages,
                    thinking={"type": "enabled", "budget_tokens": 2048})
        if stream:
            with client.messages.stream(**args) as s:
                final = s.get_final_message()
        else:
            final = client.messages.create(**args)
        messages.append({"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in final.content]})
        return final, state.requests[-1]

    messages = [{"role": "user", "content": "What is 2+2?"}]
    turn("anthropic:claude-mock", messages)
    messages.append({"role": "user", "content": "Weather in Paris?"})
    final, sent = turn("gemini:gemini-2.5-pro", messages)
    assert "enerateContent" in sent["path"]
    assert not any(mock_upstream.ANTHROPIC_SIGNATURE in s or is_sealed(s) for s in all_strings(sent["body"]))
    use = [b for b in final.content if b.type == "tool_use"][0]
    messages.append({"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny"}]})
    _, sent = turn("anthropic:claude-mock", messages)
    assert sent["path"].endswith("/messages")
    signatures = [b["signature"] for m in sent["body"]["messages"] if isinstance(m["content"], list)
                  for b in m["content"] if b["type"] == "thinking"]
    assert signatures == [mock_upstream.ANTHROPIC_SIGNATURE]
    assert not any(mock_upstream.GEMINI_SIGNATURE in s or "llmproxy" in s for s in all_strings(sent["body"]))
    messages.append({"role": "user", "content": "And tomorrow?"})
    _, sent = turn("gemini:gemini-2.5-pro", messages)
    calls = [p for c in sent["body"]["contents"] for p in c["parts"] if "functionCall" in p]
    assert [c["thoughtSignature"] for c in calls] == [mock_upstream.GEMINI_SIGNATURE]
    assert not any(mock_upstream.ANTHROPIC_SIGNATURE in s or is_sealed(s) for s in all_strings(sent["body"]))


def test_genai_sdk_switching_anthropic_gemini_anthropic(upstream, start_proxy):
    url, state = upstream
    proxy = start_proxy(two_provider_config(url))
    client = genai.Client(api_key="unused", http_options=types.HttpOptions(base_url=proxy.url))
    weather = types.FunctionDeclaration(
        name="get_weather", description="Weather for a city",
        parameters=types.Schema(type="OBJECT", properties={"city": types.Schema(type="STRING")}, required=["city"]))
    config = types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=[weather])],
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
        thinking_config=types.ThinkingConfig(include_thoughts=True, thinking_budget=2048))

    def turn(model, contents):
        r = client.models.generate_content(model=model, contents=contents, config=config)
        contents.append(r.candidates[0].content)
        return r, state.requests[-1]

    contents = [types.Content(role="user", parts=[types.Part.from_text(text="What is 2+2?")])]
    turn("anthropic:claude-mock", contents)
    contents.append(types.Content(role="user", parts=[types.Part.from_text(text="Weather in Paris?")]))
    r, sent = turn("gemini:gemini-2.5-pro", contents)
    assert not any(mock_upstream.ANTHROPIC_SIGNATURE in s or is_sealed(s) for s in all_strings(sent["body"]))
    assert r.function_calls[0].name == "get_weather"
    contents.append(types.Content(role="user", parts=[types.Part.from_function_response(
        name="get_weather", response={"result": "sunny"})]))
    r, sent = turn("anthropic:claude-mock", contents)
    assert r.text == "Eight."
    signatures = [b["signature"] for m in sent["body"]["messages"] if isinstance(m["content"], list)
                  for b in m["content"] if b["type"] == "thinking"]
    assert signatures == [mock_upstream.ANTHROPIC_SIGNATURE]
    assert not any("llmproxy" in s for s in all_strings(sent["body"]))
    contents.append(types.Content(role="user", parts=[types.Part.from_text(text="And tomorrow?")]))
    _, sent = turn("gemini:gemini-2.5-pro", contents)
    calls = [p for c in sent["body"]["contents"] for p in c["parts"] if "functionCall" in p]
    assert len(calls) == 1 and b64_equal(calls[0]["thoughtSignature"], mock_upstream.GEMINI_SIGNATURE)
    assert not any(mock_upstream.ANTHROPIC_SIGNATURE in s or is_sealed(s) for s in all_strings(sent["body"]))
