"""The official OpenAI Python SDK's Responses client (`client.responses`) drives llm-proxy
against an OpenAI-compatible upstream: text and a function-call round trip, streamed and not."""

import json

import openai
import pytest

from conftest import openai_backend_config


@pytest.fixture
def client(upstream, start_proxy):
    url, _ = upstream
    proxy = start_proxy(openai_backend_config(url))
    return openai.OpenAI(base_url=proxy.url + "/v1", api_key="unused", max_retries=0)


TOOLS = [{"type": "function", "name": "get_weather", "description": "Weather for a city",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]


def test_create_text(client, upstream):
    _, state = upstream
    r = client.responses.create(model="gpt-4o", instructions="Be brief.", input="hi there")
    assert r.status == "completed"
    assert r.output_text == "Hello from upstream: hi there"
    assert r.output[0].type == "message"
    assert r.usage.input_tokens + r.usage.output_tokens == r.usage.total_tokens == 17
    assert r.id.startswith("resp_")
    sent = state.requests[-1]["body"]
    assert sent["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi there"}]


def test_stream_text(client):
    seen = []
    with client.responses.stream(model="gpt-4o", input=[{"role": "user", "content": "stream please"}]) as stream:
        text = ""
        for event in stream:
            seen.append(event)
            if event.type == "response.output_text.delta":
                text += event.delta
        final = stream.get_final_response()
    assert text.strip() == "Hello from upstream: stream please"
    assert final.output_text.strip() == "Hello from upstream: stream please"
    assert final.status == "completed"
    types = [e.type for e in seen]
    assert types[:2] == ["response.created", "response.in_progress"]
    assert types[-1] == "response.completed"
    numbers = [e.sequence_number for e in seen]
    assert numbers == list(range(len(seen)))


def _first_turn(client, stream, input_items):
    if not stream:
        return client.responses.create(model="gpt-4o", input=input_items, tools=TOOLS)
    with client.responses.stream(model="gpt-4o", input=input_items, tools=TOOLS) as s:
        args = ""
        for event in s:
            if event.type == "response.function_call_arguments.delta":
                args += event.delta
        final = s.get_final_response()
    calls = [item for item in final.output if item.type == "function_call"]
    assert json.loads(args) == json.loads(calls[0].arguments)
    return final


@pytest.mark.parametrize("stream", [False, True])
def test_function_call_round_trip(client, upstream, stream):
    _, state = upstream
    items = [{"role": "user", "content": "weather in Paris?"}]
    first = _first_turn(client, stream, items)
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1
    call = calls[0]
    assert call.name == "get_weather"
    assert call.call_id == "call_mock_1"
    assert json.loads(call.arguments) == {"city": "Paris"}

    # Second turn: the output items as they came, then the tool's output.
    items += [item.model_dump(exclude_none=True) for item in first.output]
    items.append({"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 21C"})
    if stream:
        with client.responses.stream(model="gpt-4o", input=items, tools=TOOLS) as s:
            for _ in s:
                pass
            second = s.get_final_response()
    else:
        second = client.responses.create(model="gpt-4o", input=items, tools=TOOLS)
    assert second.output_text.strip() == "The tool said: sunny, 21C"

    sent = state.requests[-1]["body"]["messages"]
    assert sent[-2]["role"] == "assistant"
    assert sent[-2]["tool_calls"][0]["id"] == "call_mock_1"
    assert sent[-2]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert sent[-1] == {"role": "tool", "tool_call_id": "call_mock_1", "content": "sunny, 21C"}


def test_bad_request_is_a_400_naming_the_field(client, upstream):
    _, state = upstream
    before = len(state.requests)
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(
            model="gpt-4o",
            input=[{"type": "function_call", "name": "get_weather", "arguments": "{}"}],
        )
    assert err.value.body["param"] == "input[0].call_id"
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(model="gpt-4o", input="hi", previous_response_id="resp_unknown")
    assert err.value.body["code"] == "previous_response_not_found"
    assert len(state.requests) == before


def test_previous_response_id_and_retrieve(client, upstream):
    _, state = upstream
    first = client.responses.create(model="gpt-4o", input="weather in Paris?", tools=TOOLS)
    call = [item for item in first.output if item.type == "function_call"][0]
    second = client.responses.create(
        model="gpt-4o", previous_response_id=first.id, tools=TOOLS,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "rainy"}],
    )
    assert second.output_text.strip() == "The tool said: rainy"
    assert state.requests[-1]["body"]["messages"][0] == {"role": "user", "content": "weather in Paris?"}
    assert client.responses.retrieve(first.id).id == first.id
    client.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(first.id)


def test_input_items_list(client):
    first = client.responses.create(model="gpt-4o", instructions="Be brief.", input="weather in Paris?")
    second = client.responses.create(model="gpt-4o", previous_response_id=first.id, input="and tomorrow?")

    page = client.responses.input_items.list(second.id)
    items = page.data
    # Newest first: this turn's input, the first answer, the first turn's input.
    assert [item.type for item in items] == ["message", "message", "message"]
    assert [item.role for item in items] == ["user", "assistant", "user"]
    assert items[0].content[0].text == "and tomorrow?"
    assert items[1].id == first.output[0].id
    assert items[2].content[0].text == "weather in Paris?"
    assert not page.has_more
    assert all(item.id for item in items)

    # Ascending, one at a time: the SDK follows the `after` cursor.
    ascending = list(client.responses.input_items.list(second.id, order="asc", limit=1))
    assert [item.id for item in ascending] == [item.id for item in reversed(items)]

    with pytest.raises(openai.NotFoundError):
        client.responses.input_items.list("resp_unknown")
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.input_items.list(second.id, limit=500)
    assert err.value.body["param"] == "limit"
