"""Streams one answer through fusebox with an official SDK and reports how the stream ended.

Usage: stream_ending.py <envoy base url> <bearer token> chat|responses|messages

The upstream (the mock LLM) is asked for a long, slow stream written in pieces cut at random
points; the test trips the tenant meanwhile, so fusebox ends the stream with its error event.
Prints one JSON line: the events the SDK yielded, and the exception it raised (its class and
the fusebox fields it carried), or none.
"""
import json
import sys

base, token, api = sys.argv[1], sys.argv[2], sys.argv[3]
mock = {
    "x-mock-chunks": "40",
    "x-mock-chunk-delay-ms": "3",
    "x-mock-split-writes": "7",
    "x-mock-input-tokens": "10",
    "x-mock-output-tokens": "10",
}
events = 0
out = {"api": api, "raised": None}


def fusebox_fields(body):
    if isinstance(body, dict):
        inner = body.get("error") if isinstance(body.get("error"), dict) else body
        return inner.get("fusebox"), inner.get("type")
    return None, None


try:
    if api == "messages":
        import anthropic

        client = anthropic.Anthropic(base_url=base, auth_token=token, max_retries=0)
        stream = client.messages.create(
            model="claude-mock", max_tokens=1024, stream=True, extra_headers=mock,
            messages=[{"role": "user", "content": "hi"}],
        )
    else:
        import openai

        client = openai.OpenAI(base_url=base + "/v1", api_key=token, max_retries=0)
        if api == "chat":
            stream = client.chat.completions.create(
                model="gpt-4o-mini", stream=True, stream_options={"include_usage": True},
                extra_headers=mock, messages=[{"role": "user", "content": "hi"}],
            )
        else:
            stream = client.responses.create(model="gpt-4.1", input="hi", stream=True, extra_headers=mock)
    for _ in stream:
        events += 1
except Exception as e:  # the point is to see which error the SDK raises
    fields, kind = fusebox_fields(getattr(e, "body", None))
    out["raised"] = f"{type(e).__module__.split('.')[0]}.{type(e).__name__}"
    out["mro"] = [c.__name__ for c in type(e).__mro__]
    out["message"] = str(e)[:300]
    out["type"] = kind
    out["fusebox"] = fields
out["events"] = events
print(json.dumps(out))
