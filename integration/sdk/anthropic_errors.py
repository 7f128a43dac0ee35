"""Calls fusebox's Anthropic Messages route with the official Anthropic Python SDK and reports
the error it raised: its class and the fusebox fields it carries.

Usage: anthropic_errors.py <envoy base url> <bearer token>
"""
import json
import sys

import anthropic

base, token = sys.argv[1], sys.argv[2]
client = anthropic.Anthropic(base_url=base, auth_token=token, max_retries=0)
out = {"raised": None}
try:
    client.messages.create(model="claude-mock", max_tokens=64, messages=[{"role": "user", "content": "hi"}])
except anthropic.APIStatusError as e:
    body = e.body if isinstance(e.body, dict) else {}
    error = body.get("error", {}) if isinstance(body.get("error"), dict) else {}
    out = {
        "raised": type(e).__name__,
        "status": e.status_code,
        "error_type": error.get("type"),
        "fusebox": error.get("fusebox"),
        "retry_after": e.response.headers.get("retry-after"),
    }
print(json.dumps(out))
