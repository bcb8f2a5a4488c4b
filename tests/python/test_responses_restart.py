"""Stored Responses answers survive a restart of the proxy binary: a conversation continued
with `previous_response_id` after SIGTERM and a new process on the same `--data-dir`."""

import openai
import pytest

from conftest import openai_backend_config


def _client(proxy):
    return openai.OpenAI(base_url=proxy.url + "/v1", api_key="unused", max_retries=0)


@pytest.mark.parametrize("stream", [False, True])
def test_previous_response_id_across_a_restart(upstream, start_proxy, restart_proxy, tmp_path, stream):
    url, state = upstream
    data_dir = tmp_path / "restart-data"
    proxy = start_proxy(openai_backend_config(url), "--data-dir", str(data_dir))
    client = _client(proxy)

    def create(**kwargs):
        if not stream:
            return client.responses.create(model="gpt-4o", **kwargs)
        with client.responses.stream(model="gpt-4o", **kwargs) as s:
            for _ in s:
                pass
            return s.get_final_response()

    first = create(instructions="Be brief.", input="my name is Ada")
    assert first.output_text.strip() == "Hello from upstream: my name is Ada"
    # The last answer before the restart: written just before SIGTERM.
    second = create(previous_response_id=first.id, input="what is my name?")

    proxy = restart_proxy(proxy)
    assert (data_dir / "responses.sqlite3").exists()
    client = _client(proxy)

    third = create(previous_response_id=second.id, input="and again?")
    assert third.output_text.strip() == "Hello from upstream: and again?"
    sent = state.requests[-1]["body"]["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user", "assistant", "user"]
    assert sent[0] == {"role": "user", "content": "my name is Ada"}
    assert sent[2] == {"role": "user", "content": "what is my name?"}
    assert sent[3]["content"].strip() == "Hello from upstream: what is my name?"
    assert sent[4] == {"role": "user", "content": "and again?"}

    # The restarted proxy serves the stored answers and their input items too.
    assert client.responses.retrieve(second.id).output_text.strip() == second.output_text.strip()
    listed = client.responses.input_items.list(second.id, order="asc")
    assert [item.role for item in listed.data] == ["user", "assistant", "user"]

    # An id the first process never stored is still unknown.
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(model="gpt-4o", previous_response_id="resp_never", input="x")
    assert err.value.body["code"] == "previous_response_not_found"
