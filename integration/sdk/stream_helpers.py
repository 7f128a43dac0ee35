"""Streams through fusebox with the stream helpers of the official OpenAI and Anthropic Python
SDKs (which assemble the final response from the events, so they check the stream's shape) and
prints, as one JSON line, the usage each reported (or the error it raised).

Usage: stream_helpers.py <envoy base url> <bearer token>
"""
import json
import sys

import anthropic
import openai

base, token = sys.argv[1], sys.argv[2]
mock = {"x-mock-split-writes": "9", "x-mock-input-tokens": "31", "x-mock-output-tokens": "47", "x-mock-chunks": "12"}
out = {}


def attempt(name, run):
    try:
        out[name] = {"ok": True, **run()}
    except Exception as e:  # report which call failed, and how
        out[name] = {"ok": False, "error": f"{type(e).__name__}: {e}"}


o = openai.OpenAI(base_url=base + "/v1", api_key=token, max_retries=0)
a = anthropic.Anthropic(base_url=base, auth_token=token, max_retries=0)


def responses():
    with o.responses.stream(model="gpt-4.1", input="hi", extra_headers=mock) as s:
        for _ in s:
            pass
        u = s.get_final_response().usage
    return {"input": u.input_tokens, "output": u.output_tokens}


def chat():
    with o.chat.completions.stream(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}],
        stream_options={"include_usage": True}, extra_headers=mock,
    ) as s:
        for _ in s:
            pass
        u = s.get_final_completion().usage
    return {"input": u.prompt_tokens, "output": u.completion_tokens}


def messages():
    with a.messages.stream(
        model="claude-mock", max_tokens=1024, messages=[{"role": "user", "content": "hi"}], extra_headers=mock,
    ) as s:
        for _ in s:
            pass
        u = s.get_final_message().usage
    return {"input": u.input_tokens, "output": u.output_tokens}


attempt("responses", responses)
attempt("chat", chat)
attempt("messages", messages)
print(json.dumps(out))
