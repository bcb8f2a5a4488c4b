"""The official Anthropic Python SDK drives llm-proxy (Anthropic Messages frontend) against an
OpenAI-compatible upstream: chat, streaming, tool use over two turns, count_tokens, the model
list and errors."""

import anthropic
import pytest

from conftest import openai_backend_config

TOOLS = [{"name": "get_weather", "description": "Weather for a city",
          "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]


@pytest.fixture
def client(upstream, start_proxy):
    url, _ = upstream
    proxy = start_proxy(openai_backend_config(url))
    # The SDK appends /v1/messages to the base URL, as Claude Code does.
    return anthropic.Anthropic(base_url=proxy.url, api_key="unused", max_retries=0)


def test_chat(client, upstream):
    _, state = upstream
    r = client.messages.create(model="gpt-4o", max_tokens=256, system="Be brief.",
                               messages=[{"role": "user", "content": "hi there"}])
    assert r.type == "message"
    assert r.role == "assistant"
    assert [b.type for b in r.content] == ["text"]
    assert r.content[0].text == "Hello from upstream: hi there"
    assert r.stop_reason == "end_turn"
    assert (r.usage.input_tokens, r.usage.output_tokens) == (12, 5)
    sent = state.requests[-1]["body"]
    assert sent["model"] == "gpt-4o"
    assert sent["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi there"}]
    assert state.requests[-1]["headers"]["authorization"] == "Bearer sk-upstream-test-key-0000"


def test_streaming(client):
    with client.messages.stream(model="gpt-4o", max_tokens=256,
                                messages=[{"role": "user", "content": "stream please"}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text.strip() == "Hello from upstream: stream please"
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 5
    assert final.content[0].text == text


@pytest.mark.parametrize("stream", [False, True])
def test_tool_use_two_turns(client, upstream, stream):
    _, state = upstream
    messages = [{"role": "user", "content": "weather in Paris?"}]
    if stream:
        # The upstream streams the arguments in fragments; the SDK must see one whole block.
        with client.messages.stream(model="gpt-4o", max_tokens=256, tools=TOOLS, messages=messages) as s:
            final = s.get_final_message()
    else:
        final = client.messages.create(model="gpt-4o", max_tokens=256, tools=TOOLS, messages=messages)
    assert final.stop_reason == "tool_use"
    uses = [b for b in final.content if b.type == "tool_use"]
    assert len(uses) == 1
    use = uses[0]
    assert use.name == "get_weather"
    assert use.input == {"city": "Paris"}
    messages += [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in final.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny, 21C"}]},
    ]
    r = client.messages.create(model="gpt-4o", max_tokens=256, tools=TOOLS, messages=messages)
    assert r.content[0].text == "The tool said: sunny, 21C"
    sent = state.requests[-1]["body"]["messages"]
    assert sent[-1] == {"role": "tool", "tool_call_id": use.id, "content": "sunny, 21C"}
    assert sent[-2]["tool_calls"][0]["id"] == use.id


def test_count_tokens_and_models(client, upstream):
    _, state = upstream
    calls_before = len(state.requests)
    # gpt-4o is counted with its own tokenizer (o200k: 400 x's are 50 tokens, plus 4 for the
    # message); a model whose tokenizer is not public gets four bytes per token.
    counted = client.messages.count_tokens(model="gpt-4o", messages=[{"role": "user", "content": "x" * 400}])
    assert counted.input_tokens == 54
    estimated = client.messages.count_tokens(
        model="claude-sonnet-4-5", messages=[{"role": "user", "content": "x" * 400}]
    )
    assert estimated.input_tokens == 104
    assert len(state.requests) == calls_before, "counting needs no upstream call"
    ids = [m.id for m in client.models.list()]
    assert "openai:mock-upstream" in ids


def test_errors_arrive_as_sdk_exceptions(upstream, start_proxy):
    url, _ = upstream
    proxy = start_proxy(openai_backend_config(url) + "auth:\n  api_keys: [client-key-0123456789]\n")
    wrong = anthropic.Anthropic(base_url=proxy.url, api_key="wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as e:
        wrong.messages.create(model="gpt-4o", max_tokens=16, messages=[{"role": "user", "content": "x"}])
    assert e.value.status_code == 401
    right = anthropic.Anthropic(base_url=proxy.url, api_key="client-key-0123456789", max_retries=0)
    with pytest.raises(anthropic.BadRequestError) as e:
        right.messages.create(model="nosuch:model", max_tokens=16, messages=[{"role": "user", "content": "x"}])
    assert e.value.body["type"] == "error"


def test_claude_code_shaped_request_through_the_beta_client(client, upstream):
    """What Claude Code sends via `client.beta.messages` (`?beta=true`): system messages inside
    the conversation, adaptive thinking, output_config, context_management, cache_control."""
    _, state = upstream
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "hi there", "cache_control": {"type": "ephemeral"}}]},
        {"role": "system", "content": "Prefer short answers."},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "and now?"},
        {"role": "system", "content": [{"type": "text", "text": "Reminder: be brief."}]},
    ]
    with client.beta.messages.stream(
        model="claude-opus-4-8", max_tokens=64000,
        system=[{"type": "text", "text": "You are a coding agent.", "cache_control": {"type": "ephemeral"}}],
        messages=messages,
        thinking={"type": "adaptive"},
        betas=["context-management-2025-06-27"],
        extra_body={"output_config": {"effort": "high"},
                    "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]}},
    ) as stream:
        text = "".join(stream.text_stream)
    assert text.strip() == "Hello from upstream: and now?"
    assert state.requests[-1]["path"].endswith("/chat/completions")
    sent = state.requests[-1]["body"]["messages"]
    assert sent == [
        {"role": "system", "content": "You are a coding agent."},
        {"role": "user", "content": "hi there"},
        {"role": "system", "content": "Prefer short answers."},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "and now?"},
        {"role": "system", "content": "Reminder: be brief."},
    ]
    counted = client.beta.messages.count_tokens(model="claude-opus-4-8", messages=messages,
                                                thinking={"type": "adaptive"})
    assert counted.input_tokens > 0
