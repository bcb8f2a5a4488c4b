"""The official OpenAI Python SDK's Responses client on a proxy whose backend is
`openai-responses` (the Python mock's Responses dialect): the upstream's reasoning item reaches
the client with its `encrypted_content`, and when the client sends the item back on the next
turn the upstream receives the same `encrypted_content`, streamed and not."""

import json

import openai
import pytest

import mock_upstream
from conftest import openai_responses_backend_config


@pytest.fixture
def client(upstream, start_proxy):
    url, _ = upstream
    proxy = start_proxy(openai_responses_backend_config(url))
    return openai.OpenAI(base_url=proxy.url + "/v1", api_key="unused", max_retries=0)


def _create(client, stream, input_items, reasoning=True):
    """One turn; `reasoning`: the upstream answers with a reasoning item (whose summary streams)."""
    kwargs = dict(model="gpt-5", input=input_items, store=False,
                  include=["reasoning.encrypted_content"], reasoning={"effort": "low", "summary": "auto"})
    if not stream:
        return client.responses.create(**kwargs)
    with client.responses.stream(**kwargs) as s:
        types = [event.type for event in s]
        final = s.get_final_response()
    assert types[0] == "response.created"
    assert types[-1] == "response.completed"
    assert ("response.reasoning_summary_text.delta" in types) == reasoning
    return final


@pytest.mark.parametrize("stream", [False, True])
def test_encrypted_content_round_trips_byte_for_byte(client, upstream, stream):
    _, state = upstream
    items = [{"role": "user", "content": "hello"}]
    first = _create(client, stream, items)
    assert state.requests[-1]["path"].endswith("/responses")
    reasoning = [item for item in first.output if item.type == "reasoning"]
    assert len(reasoning) == 1
    assert reasoning[0].id == mock_upstream.REASONING_ID
    assert reasoning[0].encrypted_content == mock_upstream.ENCRYPTED
    assert reasoning[0].summary[0].text == "The user greets me."
    assert first.output_text.strip() == "Hello from the Responses upstream."

    # Next turn: the client sends the output back as it came, then its own message.
    items += [item.model_dump(exclude_none=True) for item in first.output]
    items.append({"role": "user", "content": "and again"})
    second = _create(client, stream, items, reasoning=False)

    sent = state.requests[-1]["body"]
    received = [i for i in sent["input"] if i.get("type") == "reasoning"]
    assert len(received) == 1, sent
    assert received[0]["encrypted_content"].encode("utf-8") == mock_upstream.ENCRYPTED.encode("utf-8")
    assert received[0]["id"] == mock_upstream.REASONING_ID
    echoed = second.output_text.strip()
    assert echoed.startswith(mock_upstream.ECHO_PREFIX), echoed
    assert json.loads(echoed[len(mock_upstream.ECHO_PREFIX):]) == [mock_upstream.ENCRYPTED]


def test_streamed_reasoning_round_trips_over_raw_events(client, upstream):
    """The streamed round trip without the SDK's stream accumulator:
    the raw events' final response carries the upstream's reasoning item, and sent back it
    reaches the upstream unchanged."""
    _, state = upstream
    kwargs = dict(model="gpt-5", store=False, include=["reasoning.encrypted_content"],
                  reasoning={"effort": "low", "summary": "auto"})
    items = [{"role": "user", "content": "hello"}]
    events = list(client.responses.create(input=items, stream=True, **kwargs))
    assert [e.sequence_number for e in events] == list(range(len(events)))
    first = events[-1].response
    assert events[-1].type == "response.completed"
    reasoning = [item for item in first.output if item.type == "reasoning"]
    assert reasoning[0].encrypted_content == mock_upstream.ENCRYPTED

    items += [item.model_dump(exclude_none=True) for item in first.output]
    items.append({"role": "user", "content": "and again"})
    events = list(client.responses.create(input=items, stream=True, **kwargs))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    received = [i for i in state.requests[-1]["body"]["input"] if i.get("type") == "reasoning"]
    assert [r["encrypted_content"] for r in received] == [mock_upstream.ENCRYPTED]
    assert json.loads(text[len(mock_upstream.ECHO_PREFIX):]) == [mock_upstream.ENCRYPTED]
