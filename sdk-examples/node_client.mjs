#!/usr/bin/env node
// Aetheris API from Node 18+, built-in fetch only (no packages).
//   AETHERIS_URL      base URL (default http://127.0.0.1:8080)
//   AETHERIS_API_KEY  sent as X-API-Key when set
//   node node_client.mjs post '<json object or array>'
//   node node_client.mjs decisions [account] [action]
//   node node_client.mjs stream [maxEvents] [maxSeconds]
// Problems (RFC 9457) go to stderr with exit status 1. The stream reconnects with
// Last-Event-ID after a dropped connection.
const URL_BASE = (process.env.AETHERIS_URL || 'http://127.0.0.1:8080').replace(/\/$/, '');
const KEY = process.env.AETHERIS_API_KEY;
const headers = (extra = {}) => ({ ...(KEY ? { 'X-API-Key': KEY } : {}), ...extra });

async function call(method, path, body) {
  const res = await fetch(URL_BASE + path, {
    method,
    headers: headers({ 'Content-Type': 'application/json' }),
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = await res.json();
  if (!res.ok) {
    console.error(`${res.status} ${json.title}: ${json.detail} (${json.type})`);
    process.exit(1);
  }
  return json;
}

async function* decisions(account, action) {
  const params = new URLSearchParams(); // the server's default page size
  if (account) params.set('account', account);
  if (action) params.set('action', action);
  for (;;) {
    const page = await call('GET', `/v1/decisions?${params}`);
    yield* page.items;
    if (!page.next_cursor) return;
    params.set('cursor', page.next_cursor);
  }
}

async function* stream(maxEvents = 0, maxSeconds = 0) {
  const deadline = maxSeconds ? Date.now() + maxSeconds * 1000 : 0;
  let lastId = null;
  let count = 0;
  let finished = false;
  while (!deadline || Date.now() < deadline) {
    const ctl = new AbortController();
    const timer = deadline ? setTimeout(() => ctl.abort(), deadline - Date.now()) : null;
    try {
      const res = await fetch(`${URL_BASE}/v1/stream`, {
        headers: headers(lastId ? { 'Last-Event-ID': lastId } : {}),
        signal: ctl.signal,
      });
      if (!res.ok) throw new Error(`stream: HTTP ${res.status}`);
      const decoder = new TextDecoder();
      let buf = '';
      for await (const chunk of res.body) {
        buf += decoder.decode(chunk, { stream: true });
        let end;
        while ((end = buf.indexOf('\n\n')) >= 0) {
          const frame = buf.slice(0, end);
          buf = buf.slice(end + 2);
          const f = {};
          for (const line of frame.split('\n')) {
            const i = line.indexOf(': ');
            if (i > 0) f[line.slice(0, i)] = line.slice(i + 2);
          }
          if (f.id) lastId = f.id;
          if (f.event === 'anomaly' || f.event === 'decision') {
            yield { event: f.event, data: JSON.parse(f.data) };
            if (maxEvents && ++count >= maxEvents) {
              finished = true;
              return; // the finally below closes the connection
            }
          }
        }
      }
    } catch (e) {
      if (finished) return;
      if (e.name !== 'AbortError') console.error(`stream: ${e.message}; reconnecting`);
    } finally {
      if (timer) clearTimeout(timer);
      ctl.abort(); // no-op when the response already ended
    }
    if (!deadline || Date.now() < deadline) await new Promise((r) => setTimeout(r, 1000));
  }
}

const [cmd, a1, a2] = process.argv.slice(2);
if (cmd === 'post') {
  console.log(JSON.stringify(await call('POST', '/v1/events', JSON.parse(a1))));
} else if (cmd === 'decisions') {
  for await (const d of decisions(a1, a2)) console.log(JSON.stringify(d));
} else if (cmd === 'stream') {
  for await (const e of stream(Number(a1 || 0), Number(a2 || 0))) console.log(JSON.stringify(e));
} else {
  console.error('usage: node_client.mjs post JSON | decisions [account] [action] | stream [n] [s]');
  process.exit(2);
}
