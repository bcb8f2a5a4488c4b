"""Prompt caching through an Anthropic upstream, driven by the official OpenAI SDK: the proxy
places cache breakpoints the OpenAI client cannot, and the upstream's cache reads come back in
`usage.prompt_tokens_details.cached_tokens` (counted inside `prompt_tokens`)."""

import openai
import pytest

import mock_upstream


def anthropic_backend_config(upstream_url):
    return (
        "backends:\n"
        "  default_backend: anthropic\n"
        "  anthropic:\n"
        "    api_url: %s/cache/v1\n"
        "    api_key: sk-ant-upstream-test-0000\n" % upstream_url
    )


def marked_paths(value, path=""):
    """Paths of every `cache_control` in a JSON value."""
    out = []
    if isinstance(value, dict):
        for k, v in value.items():
            if k == "cache_control":
                out.append(path)
            else:
                out.extend(marked_paths(v, "%s.%s" % (path, k)))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out.extend(marked_paths(v, "%s[%d]" % (path, i)))
    return out


@pytest.mark.parametrize("stream", [False, True])
def test_openai_session_on_anthropic_caches_and_reports_cache_reads(upstream, start_proxy, stream):
    url, state = upstream
    proxy = start_proxy(anthropic_backend_config(url))
    client = openai.OpenAI(base_url=proxy.url + "/v1", api_key="unused", max_retries=0,
                           default_headers={"x-session-id": "py-cache-session"})
    messages = [{"role": "system", "content": "You are terse."}]
    for question in ["Weather in Paris?", "And in Rome?", "Thanks!"]:
        messages.append({"role": "user", "content": question})
        if stream:
            chunks = client.chat.completions.create(
                model="claude-x", messages=messages, stream=True,
                stream_options={"include_usage": True})
            text, usage = "", None
            for chunk in chunks:
                usage = chunk.usage or usage
                for choice in chunk.choices:
                    text += choice.delta.content or ""
        else:
            r = client.chat.completions.create(model="claude-x", messages=messages)
            text, usage = r.choices[0].message.content, r.usage
        assert text == "Hello from anthropic: " + question
        cached = mock_upstream.ANTHROPIC_CACHE_READ
        assert usage.prompt_tokens_details.cached_tokens == cached
        assert usage.prompt_tokens == cached + mock_upstream.ANTHROPIC_FRESH_INPUT
        messages.append({"role": "assistant", "content": text})

    sent = [r["body"] for r in state.requests if r["path"].endswith("/messages")]
    assert len(sent) == 3
    for before, after in zip(sent, sent[1:]):
        last = len(before["messages"]) - 1
        kept = [p for p in marked_paths(before) if p.startswith(".messages[%d]" % last)]
        assert kept, marked_paths(before)
        # The breakpoint closing one request is still in the next: its prefix is read back.
        assert set(kept) <= set(marked_paths(after)), (kept, marked_paths(after))
        assert ".system[0]" in marked_paths(after)
    assert all(len(marked_paths(b)) <= 4 for b in sent)
