"""The official google-genai Python SDK drives llm-proxy (Gemini frontend) against an
OpenAI-compatible upstream: generation, streaming, function calling over two turns,
countTokens, the model list and errors."""

import pytest
from google import genai
from google.genai import errors, types

from conftest import openai_backend_config

WEATHER = types.FunctionDeclaration(
    name="get_weather",
    description="Weather for a city",
    parameters=types.Schema(type="OBJECT", properties={"city": types.Schema(type="STRING")}, required=["city"]),
)


def make_client(proxy, key="unused", api_version=None):
    # Whatever version the SDK defaults to (v1beta for Gemini CLI's pinned SDK, v1 for newer
    # ones) is served; the fixture runs both.
    return genai.Client(api_key=key, http_options=types.HttpOptions(base_url=proxy.url, api_version=api_version))


@pytest.fixture(params=["v1beta", None])
def client(request, upstream, start_proxy):
    url, _ = upstream
    return make_client(start_proxy(openai_backend_config(url)), api_version=request.param)


def test_generate(client, upstream):
    _, state = upstream
    r = client.models.generate_content(
        model="gpt-4o", contents="hi there",
        config=types.GenerateContentConfig(system_instruction="Be brief."),
    )
    assert r.text == "Hello from upstream: hi there"
    assert r.candidates[0].finish_reason == types.FinishReason.STOP
    assert r.usage_metadata.prompt_token_count == 12
    assert r.usage_metadata.candidates_token_count == 5
    sent = state.requests[-1]["body"]
    assert sent["model"] == "gpt-4o"
    assert sent["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi there"}]


def test_streaming(client):
    chunks = list(client.models.generate_content_stream(model="gpt-4o", contents="stream please"))
    text = "".join(c.text or "" for c in chunks)
    assert text.strip() == "Hello from upstream: stream please"
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    assert chunks[-1].usage_metadata.candidates_token_count == 5


@pytest.mark.parametrize("stream", [False, True])
def test_function_calling_two_turns(client, upstream, stream):
    _, state = upstream
    config = types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=[WEATHER])],
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
    )
    contents = [types.Content(role="user", parts=[types.Part.from_text(text="weather in Paris?")])]
    if stream:
        chunks = list(client.models.generate_content_stream(model="gpt-4o", contents=contents, config=config))
        calls = [fc for c in chunks for fc in (c.function_calls or [])]
        model_parts = [p for c in chunks for p in (c.candidates[0].content.parts or [])
                       if p.function_call is not None]
    else:
        r = client.models.generate_content(model="gpt-4o", contents=contents, config=config)
        calls = r.function_calls
        model_parts = r.candidates[0].content.parts
    assert len(calls) == 1
    assert calls[0].name == "get_weather"
    assert calls[0].args == {"city": "Paris"}
    contents += [
        types.Content(role="model", parts=model_parts),
        types.Content(role="user", parts=[types.Part.from_function_response(
            name="get_weather", response={"result": "sunny, 21C"})]),
    ]
    r = client.models.generate_content(model="gpt-4o", contents=contents, config=config)
    assert "sunny, 21C" in r.text
    sent = state.requests[-1]["body"]["messages"]
    assert sent[-1]["role"] == "tool"
    assert sent[-1]["tool_call_id"] == sent[-2]["tool_calls"][0]["id"]
    assert sent[-2]["tool_calls"][0]["function"]["name"] == "get_weather"


def test_count_tokens_and_models(client, upstream):
    _, state = upstream
    calls_before = len(state.requests)
    # gpt-4o is counted with its own tokenizer: 400 x's are 50 o200k tokens, plus 4 for the
    # message.
    counted = client.models.count_tokens(model="gpt-4o", contents="x" * 400)
    assert counted.total_tokens == 54
    assert len(state.requests) == calls_before, "counting needs no upstream call"
    names = [m.name for m in client.models.list()]
    assert "models/openai:mock-upstream" in names


def test_errors_arrive_as_sdk_exceptions(upstream, start_proxy):
    url, _ = upstream
    proxy = start_proxy(openai_backend_config(url) + "auth:\n  api_keys: [client-key-0123456789]\n")
    wrong = make_client(proxy, "wrong")
    with pytest.raises(errors.ClientError) as e:
        wrong.models.generate_content(model="gpt-4o", contents="x")
    assert e.value.code == 401
    assert e.value.status == "UNAUTHENTICATED"
    right = make_client(proxy, "client-key-0123456789")
    with pytest.raises(errors.ClientError) as e:
        right.models.generate_content(model="nosuch:model", contents="x")
    assert e.value.code == 400
    assert e.value.status == "INVALID_ARGUMENT"
