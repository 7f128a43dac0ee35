"""One chat completion through fusebox with the official OpenAI Python SDK.

Usage: openai_call.py BASE_URL TOKEN MAX_RETRIES
Prints one JSON line: what the SDK returned or raised, and how long it took (retries included).
"""
import json
import sys
import time

import openai


def main() -> None:
    base_url, token, max_retries = sys.argv[1], sys.argv[2], int(sys.argv[3])
    client = openai.OpenAI(base_url=base_url, api_key=token, max_retries=max_retries, timeout=30)
    started = time.monotonic()
    out = {}
    try:
        reply = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
        )
        out = {"ok": True, "usage": reply.usage.model_dump() if reply.usage else None}
    except openai.APIStatusError as e:
        out = {
            "ok": False,
            "error_class": type(e).__name__,
            "status": e.status_code,
            "body": e.body,
            "retry_after": e.response.headers.get("retry-after"),
            "should_retry": e.response.headers.get("x-should-retry"),
        }
    out["elapsed_s"] = time.monotonic() - started
    print(json.dumps(out))


if __name__ == "__main__":
    main()
