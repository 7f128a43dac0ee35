// Streams through fusebox with the official OpenAI Node SDK's stream helpers and prints, as one
// JSON line, the usage each reported (or the error it raised).
// Usage: node streams.mjs <envoy base url> <bearer token>
import OpenAI from "openai";

const [base, token] = process.argv.slice(2);
const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: token, maxRetries: 0 });
const mock = { "x-mock-split-writes": "9", "x-mock-input-tokens": "31", "x-mock-output-tokens": "47", "x-mock-chunks": "12" };
const out = {};

async function attempt(name, run) {
  try {
    out[name] = { ok: true, ...(await run()) };
  } catch (e) {
    out[name] = { ok: false, error: String(e) };
  }
}

await attempt("responses", async () => {
  const stream = client.responses.stream({ model: "gpt-4.1", input: "hi" }, { headers: mock });
  let events = 0;
  for await (const _ of stream) events++;
  const final = await stream.finalResponse();
  return { events, input: final.usage.input_tokens, output: final.usage.output_tokens };
});

await attempt("chat", async () => {
  const stream = client.chat.completions.stream(
    { model: "gpt-4o-mini", messages: [{ role: "user", content: "hi" }], stream_options: { include_usage: true } },
    { headers: mock },
  );
  for await (const _ of stream) {
  }
  const final = await stream.finalChatCompletion();
  return { input: final.usage.prompt_tokens, output: final.usage.completion_tokens };
});

console.log(JSON.stringify(out));
