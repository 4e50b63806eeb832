'use strict';
// One chat call and one streamed chat call through the llmpool Node
// binding, then the client's metrics.
//
// The gateway comes from the environment: LLMPOOL_BASE_URL (default
// https://api.holysheep.ai/v1) and LLMPOOL_API_KEY. Against the bundled
// loopback server:
//
//   cargo build -p llmpool -p llmpool-testserver
//   target/debug/llmpool-testserver &      # prints LISTENING <url>
//   (cd bindings/node && npm ci) && LLMPOOL_BASE_URL=<url> node examples/node/example.js
// (an application: `npm install llmpool`, then require('llmpool'))

const { Client, LLMPoolError } = require('../../bindings/node');

async function main() {
  const client = new Client({ timeout_ms: 30000, max_retries: 2 });
  const request = {
    model: process.env.LLMPOOL_MODEL || 'gpt-4.1',
    messages: [{ role: 'user', content: 'Explain connection pooling in one sentence.' }],
  };
  try {
    const response = await client.chat(request); // runs off the main thread
    console.log(response.text);

    process.stdout.write('stream: ');
    for await (const { delta } of client.stream(request)) process.stdout.write(delta);
    process.stdout.write('\n');

    const m = client.metrics();
    console.log(`requests=${m.requests} connections_opened=${m.connections_opened}`);
  } catch (e) {
    if (e instanceof LLMPoolError) {
      console.error(`failed: ${e.codeName} (HTTP ${e.status}): ${e.message}`);
      process.exitCode = 1;
    } else {
      throw e;
    }
  } finally {
    await client.close();
  }
}

main();
