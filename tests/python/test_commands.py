"""In-chat `!/` commands through the four official SDKs (OpenAI chat, OpenAI Responses,
Anthropic, google-genai), streamed and not: a message that is only a command is answered by the
proxy in the client's own protocol with no upstream call; the session (`x-session-id`, or the
protocol's own session field) then follows the new setting while another session does not;
`!/help` lists the commands; text followed by a command line forwards only the text."""

import json
import re

import anthropic
import openai
import pytest
from google import genai
from google.genai import types

from conftest import openai_backend_config

SDKS = ["chat", "responses", "anthropic", "gemini"]
CLIENT_MODEL = "gpt-4o"
SWITCH = "!/set(model=openai:gpt-4o-mini)"
SWITCHED_MODEL = "gpt-4o-mini"


@pytest.fixture
def proxy(upstream, start_proxy):
    url, _ = upstream
    return start_proxy(openai_backend_config(url))


def ask(proxy, sdk, turns, stream, session=None, headers=None, **extra):
    """Sends `turns` ([(role, text)], roles `user` / `assistant`) through `sdk`'s official client
    and returns the answer's text as that SDK parsed it."""
    headers = dict(headers or {})
    if session is not None:
        headers["x-session-id"] = session
    if sdk == "chat":
        client = openai.OpenAI(base_url=proxy.url + "/v1", api_key="unused", max_retries=0,
                               default_headers=headers)
        messages = [{"role": r, "content": t} for r, t in turns]
        if not stream:
            r = client.chat.completions.create(model=CLIENT_MODEL, messages=messages, **extra)
            assert r.choices[0].finish_reason == "stop"
            return r.choices[0].message.content
        text, finish = "", None
        for chunk in client.chat.completions.create(model=CLIENT_MODEL, messages=messages, stream=True, **extra):
            for choice in chunk.choices:
                text += choice.delta.content or ""
                finish = choice.finish_reason or finish
        assert finish == "stop"
        return text
    if sdk == "responses":
        client = openai.OpenAI(base_url=proxy.url + "/v1", api_key="unused", max_retries=0,
                               default_headers=headers)
        items = [{"role": r, "content": t} for r, t in turns]
        if not stream:
            r = client.responses.create(model=CLIENT_MODEL, input=items, **extra)
            assert r.status == "completed"
            return r.output_text
        with client.responses.stream(model=CLIENT_MODEL, input=items, **extra) as s:
            deltas = "".join(e.delta for e in s if e.type == "response.output_text.delta")
            final = s.get_final_response()
        assert final.status == "completed"
        assert final.output_text == deltas
        return final.output_text
    if sdk == "anthropic":
        client = anthropic.Anthropic(base_url=proxy.url, api_key="unused", max_retries=0,
                                     default_headers=headers)
        messages = [{"role": r, "content": t} for r, t in turns]
        if not stream:
            r = client.messages.create(model=CLIENT_MODEL, max_tokens=256, messages=messages, **extra)
            assert r.stop_reason == "end_turn"
            return "".join(b.text for b in r.content if b.type == "text")
        with client.messages.stream(model=CLIENT_MODEL, max_tokens=256, messages=messages, **extra) as s:
            text = "".join(s.text_stream)
            final = s.get_final_message()
        assert final.stop_reason == "end_turn"
        assert "".join(b.text for b in final.content if b.type == "text") == text
        return text
    assert sdk == "gemini"
    client = genai.Client(api_key="unused", http_options=types.HttpOptions(base_url=proxy.url, headers=headers))
    contents = [types.Content(role="model" if r == "assistant" else "user", parts=[types.Part.from_text(text=t)])
                for r, t in turns]
    if not stream:
        r = client.models.generate_content(model=CLIENT_MODEL, contents=contents)
        assert r.candidates[0].finish_reason == types.FinishReason.STOP
        return r.text
    chunks = list(client.models.generate_content_stream(model=CLIENT_MODEL, contents=contents))
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    return "".join(c.text or "" for c in chunks)


def user_texts(request):
    """The user messages' text the upstream received (OpenAI chat body)."""
    out = []
    for m in request["body"]["messages"]:
        if m["role"] != "user":
            continue
        c = m["content"]
        out.append(c if isinstance(c, str) else "".join(p.get("text", "") for p in c))
    return out


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("sdk", SDKS)
def test_set_model_is_answered_locally_and_the_session_follows(proxy, upstream, sdk, stream):
    _, state = upstream
    answer = ask(proxy, sdk, [("user", SWITCH)], stream, session="sess-a")
    assert state.requests == [], "a command-only message must not reach the upstream"
    assert SWITCHED_MODEL in answer, answer

    # The same session, resending its history as agents do: the new model, and neither the
    # old command nor the proxy's local answer is forwarded.
    history = [("user", SWITCH), ("assistant", answer), ("user", "hello after the switch")]
    text = ask(proxy, sdk, history, stream, session="sess-a")
    assert text.strip() == "Hello from upstream: hello after the switch"
    assert len(state.requests) == 1
    sent = state.requests[-1]
    assert sent["body"]["model"] == SWITCHED_MODEL
    assert not any("!/" in t for t in user_texts(sent)), sent["body"]["messages"]

    # Another session keeps the model its client asks for.
    ask(proxy, sdk, [("user", "hello from elsewhere")], stream, session="sess-b")
    assert len(state.requests) == 2
    assert state.requests[-1]["body"]["model"] == CLIENT_MODEL

    # And the first session still has its override.
    ask(proxy, sdk, [("user", "again")], stream, session="sess-a")
    assert state.requests[-1]["body"]["model"] == SWITCHED_MODEL


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("sdk", SDKS)
def test_help_lists_the_commands(proxy, upstream, sdk, stream):
    _, state = upstream
    answer = ask(proxy, sdk, [("user", "!/help")], stream, session="sess-help")
    for name in ("help", "hello", "set", "unset", "model", "max", "no-think", "oneoff", "route-list"):
        assert "!/" + name in answer, (name, answer)
    assert state.requests == []


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("sdk", SDKS)
def test_text_then_command_forwards_only_the_text(proxy, upstream, sdk, stream):
    _, state = upstream
    text = ask(proxy, sdk, [("user", "tell me a joke\n" + SWITCH)], stream, session="sess-mixed")
    assert text.strip() == "Hello from upstream: tell me a joke"
    assert len(state.requests) == 1
    sent = state.requests[-1]
    assert sent["body"]["model"] == SWITCHED_MODEL, "the setting applies to this very request"
    assert user_texts(sent)[-1].strip() == "tell me a joke"
    assert not any("!/" in t for t in user_texts(sent))


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("sdk", SDKS)
def test_unknown_command_is_answered_with_close_matches(proxy, upstream, sdk, stream):
    _, state = upstream
    answer = ask(proxy, sdk, [("user", "!/sett(model=openai:gpt-4o-mini)")], stream, session="sess-unknown")
    assert "unknown command" in answer.lower(), answer
    assert re.search(r"!/set(?![\w-])", answer), "names the closest command: " + answer
    assert state.requests == []
    # Nothing was changed.
    ask(proxy, sdk, [("user", "hi")], stream, session="sess-unknown")
    assert state.requests[-1]["body"]["model"] == CLIENT_MODEL


def test_unknown_command_after_text_never_withholds_the_text(proxy, upstream):
    _, state = upstream
    text = ask(proxy, "chat", [("user", "what does !/frobnicate do?\nsee !/frobnicate")], False, session="s")
    assert text.startswith("Hello from upstream: ")
    assert len(state.requests) == 1
    assert "see" in user_texts(state.requests[-1])[-1]


# ---- session ids other than x-session-id ----------------------------------------------------

def _switch_then_check(proxy, state, sdk, same, other):
    """Switches the model with the session named by `same` (ask kwargs), then checks that
    `same` follows and `other` does not."""
    ask(proxy, sdk, [("user", SWITCH)], False, **same)
    assert state.requests == []
    ask(proxy, sdk, [("user", "hi")], False, **same)
    assert state.requests[-1]["body"]["model"] == SWITCHED_MODEL
    ask(proxy, sdk, [("user", "hi")], False, **other)
    assert state.requests[-1]["body"]["model"] == CLIENT_MODEL


def test_session_from_responses_prompt_cache_key(proxy, upstream):
    _, state = upstream
    _switch_then_check(proxy, state, "responses",
                       {"prompt_cache_key": "pck-one"}, {"prompt_cache_key": "pck-two"})


def test_session_from_claude_code_metadata_user_id(proxy, upstream):
    _, state = upstream

    def user_id(session):
        return {"metadata": {"user_id": json.dumps(
            {"device_id": "d" * 64, "account_uuid": "", "session_id": session})}}

    _switch_then_check(proxy, state, "anthropic",
                       user_id("5f0c7d4e-0000-4000-8000-000000000001"),
                       user_id("5f0c7d4e-0000-4000-8000-000000000002"))


def test_session_from_older_claude_code_user_id(proxy, upstream):
    _, state = upstream
    _switch_then_check(
        proxy, state, "anthropic",
        {"metadata": {"user_id": "user_abc_account__session_5f0c7d4e-0000-4000-8000-000000000003"}},
        {"metadata": {"user_id": "user_abc_account__session_5f0c7d4e-0000-4000-8000-000000000004"}})


@pytest.mark.parametrize("sdk", ["responses", "chat"])
def test_session_from_codex_session_id_header(proxy, upstream, sdk):
    _, state = upstream
    _switch_then_check(proxy, state, sdk,
                       {"headers": {"session_id": "codex-one"}}, {"headers": {"session_id": "codex-two"}})


# ---- what agents' users type ------------------------------------------------------------------

def test_leading_space_before_the_command(proxy, upstream):
    """Claude Code, Codex, Gemini CLI and opencode take a leading `!` for their shell mode, so
    users type ` !/...`: Claude Code and opencode send the space as typed."""
    _, state = upstream
    answer = ask(proxy, "anthropic", [("user", " !/set(model=openai:gpt-4o-mini)")], False, session="space")
    assert state.requests == []
    assert SWITCHED_MODEL in answer


def test_another_command_prefix(upstream, start_proxy):
    url, state = upstream
    proxy = start_proxy(openai_backend_config(url), "--command-prefix", "%/")
    answer = ask(proxy, "chat", [("user", "%/set(model=openai:gpt-4o-mini)")], False, session="pct")
    assert state.requests == []
    assert SWITCHED_MODEL in answer
    text = ask(proxy, "chat", [("user", "!/help")], False, session="pct")
    assert text == "Hello from upstream: !/help", "the default prefix is ordinary text now"
    assert state.requests[-1]["body"]["model"] == SWITCHED_MODEL


def test_gemini_cli_shaped_first_message_and_resume(proxy, upstream):
    """Gemini CLI names no session: its first user message is a `<session_context>` part (date,
    directory tree) then the typed text, and `--resume` rebuilds that part. The command is still
    answered locally and the resumed conversation keeps the session (the fingerprint)."""
    _, state = upstream
    client = genai.Client(api_key="unused", http_options=types.HttpOptions(base_url=proxy.url))

    def context(tree):
        return types.Part.from_text(text="<session_context>\nThis is the Gemini CLI.\n%s\n</session_context>" % tree)

    first = [types.Content(role="user", parts=[context("/p/\n└───a.rs"), types.Part.from_text(text=SWITCH)])]
    r = client.models.generate_content(model=CLIENT_MODEL, contents=first)
    assert state.requests == []
    assert SWITCHED_MODEL in r.text
    resumed = [
        types.Content(role="user", parts=[context("/p/\n├───a.rs\n└───b.rs"), types.Part.from_text(text=SWITCH)]),
        types.Content(role="model", parts=[types.Part.from_text(text=r.text)]),
        types.Content(role="user", parts=[types.Part.from_text(text="now read a.rs")]),
    ]
    client.models.generate_content(model=CLIENT_MODEL, contents=resumed)
    assert state.requests[-1]["body"]["model"] == SWITCHED_MODEL
    assert not any("!/" in t for t in user_texts(state.requests[-1]))
