// N concurrent chat streams through llmpool's Node binding or Node's own
// fetch, against the loopback test server (llmpool-testserver --port 0),
// each assembled and checked; prints CPU (process.cpuUsage: llmpool's
// library threads included), RSS and wall time. See docs/benchmark.md.
//
//   node examples/node/streams_vs_fetch.js (llmpool|deltas|fetch) N http://127.0.0.1:PORT/v1
const [mode, nArg, url] = process.argv.slice(2);
const N = +nArg;
const req = { model: 'm', stream: true, messages: [{ role: 'user', content: Array.from({length: 40}, (_, i) => 'w' + i).join(' ') }], x_test_stream_delay_ms: 100 };
const want = 'Echo: ' + req.messages[0].content;
(async () => {
  const t0 = Date.now();
  let ok = 0, bad = 0;
  if (mode === 'deltas') {
    // Typed deltas through llmpool's completion queue, taken in batches.
    const { Client } = require('../../bindings/node');
    const c = new Client({ base_url: url, api_key: 'sk-x' });
    await Promise.all(Array.from({ length: N }, async () => {
      let text = '';
      try { for await (const d of c.streamDeltas(req)) text += d.text; } catch (e) { bad++; return; }
      text === want ? ok++ : bad++;
    }));
  } else if (mode === 'llmpool') {
    const { Client } = require('../../bindings/node');
    const c = new Client({ base_url: url, api_key: 'sk-x' });
    await Promise.all(Array.from({ length: N }, async () => {
      let text = '';
      try { for await (const { delta } of c.stream(req)) text += delta; } catch (e) { bad++; return; }
      text === want ? ok++ : bad++;
    }));
  } else {
    await Promise.all(Array.from({ length: N }, async () => {
      try {
        const r = await fetch(url + '/chat/completions', { method: 'POST', headers: { 'content-type': 'application/json', authorization: 'Bearer sk-x' }, body: JSON.stringify(req) });
        const dec = new TextDecoder(); let buf = '', text = '';
        for await (const chunk of r.body) {
          buf += dec.decode(chunk, { stream: true });
          let i;
          while ((i = buf.indexOf('\n\n')) >= 0) {
            const ev = buf.slice(0, i); buf = buf.slice(i + 2);
            if (!ev.startsWith('data: ')) continue;
            const d = ev.slice(6); if (d === '[DONE]') continue;
            const j = JSON.parse(d); const c = j.choices && j.choices[0] && j.choices[0].delta && j.choices[0].delta.content;
            if (c) text += c;
          }
        }
        text === want ? ok++ : bad++;
      } catch (e) { bad++; }
    }));
  }
  const u = process.cpuUsage();
  console.log(`${mode} N=${N} ok=${ok} bad=${bad} wall=${((Date.now() - t0) / 1000).toFixed(2)}s cpu=${((u.user + u.system) / 1e6).toFixed(2)}s rss=${(process.memoryUsage().rss/1048576).toFixed(0)}MiB`);
  process.exit(0);
})();
