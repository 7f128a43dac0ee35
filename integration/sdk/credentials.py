"""Calls fusebox with the official OpenAI and Anthropic Python SDKs, streaming and not, the way
real clients authenticate: the OpenAI SDK sends the tenant's JWT as `Authorization: Bearer`, the
Anthropic SDK sends it as a bearer token beside a provider-style `x-api-key` it always sends.

Usage: credentials.py <envoy base url> <bearer token>
Prints one JSON line: whether each call succeeded (and its error when not).
"""
import json
import sys

import anthropic
import openai

base, token = sys.argv[1], sys.argv[2]
out = {}


def attempt(name, run):
    try:
        run()
        out[name] = {"ok": True}
    except Exception as e:  # report which call failed, and how
        out[name] = {"ok": False, "error": f"{type(e).__name__}: {e}"}


o = openai.OpenAI(base_url=base + "/v1", api_key=token, max_retries=0)
# The token as a bearer, and a provider-style x-api-key beside it, as litellm's anthropic route sends.
a = anthropic.Anthropic(
    base_url=base, auth_token=token, max_retries=0, default_headers={"x-api-key": "sk-ant-client-side-placeholder"}
)
messages = [{"role": "user", "content": "hi"}]


def openai_stream():
    for _ in o.chat.completions.create(model="gpt-4o-mini", messages=messages, stream=True):
        pass


def anthropic_stream():
    with a.messages.stream(model="claude-mock", max_tokens=256, messages=messages) as s:
        for _ in s:
            pass


attempt("openai", lambda: o.chat.completions.create(model="gpt-4o-mini", messages=messages))
attempt("openai_stream", openai_stream)
attempt("anthropic", lambda: a.messages.create(model="claude-mock", max_tokens=256, messages=messages))
attempt("anthropic_stream", anthropic_stream)
print(json.dumps(out))
