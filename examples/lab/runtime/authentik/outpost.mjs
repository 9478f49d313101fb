// STAND-IN for an Authentik outpost (ak-outpost-ldap): a process beside the
// identity provider that logs in to it with the token tf:auth-core made. On a
// real stack that token reaches the outpost through the authentik host's
// secrets; here it comes in /run/nixmox/env as tf:auth-core's
// `outpost_tokens` output (NIXMOX_TF_AUTH_CORE_OUTPOST_TOKENS, a JSON object
// of outpost name -> token), read once at start, so a new env file restarts it.
//
// It answers GET /outpost.goauthentik.io/ping on <host>:<outpost_port> as
// Authentik's outposts do: 204 once the identity provider accepted its
// token, 503 (with the reason, never the token) until then. The authentik
// service's liveness probe points there, so `verify` proves the token works.
//
// usage: node outpost.mjs <config.json>   (the authentik host's config)
import http from 'node:http';
import fs from 'node:fs';

const cfg = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const log = (...a) => console.log(new Date().toISOString(), 'outpost:', ...a);

function readEnv(file) {
  const out = {};
  try {
    for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
      const i = line.indexOf('=');
      if (i > 0) out[line.slice(0, i)] = line.slice(i + 1);
    }
  } catch { /* no env file yet */ }
  return out;
}

const name = cfg.outpost.name;
let token = null;
try {
  token = JSON.parse(readEnv('/run/nixmox/env').NIXMOX_TF_AUTH_CORE_OUTPOST_TOKENS || '{}')[name] || null;
} catch { token = null; }
let state = token ? 'not connected yet' : `no token for outpost ${name} in /run/nixmox/env`;
log(token ? `token for ${name} present` : state);

async function connect() {
  if (!token) return;
  try {
    const r = await fetch(`http://${cfg.listen.host}:${cfg.listen.port}/api/v3/outposts/connect/`, {
      headers: { authorization: `Bearer ${token}` },
      signal: AbortSignal.timeout(5000),
    });
    const was = state;
    state = r.ok ? 'connected' : `the identity provider refused the token (HTTP ${r.status})`;
    if (state !== was) log(state);
  } catch (e) {
    state = `cannot reach the identity provider: ${e.message}`;
  }
}
await connect();
setInterval(connect, 5000).unref();

http.createServer((req, res) => {
  if (new URL(req.url, 'http://outpost').pathname === '/outpost.goauthentik.io/ping') {
    if (state === 'connected') { res.writeHead(204); return res.end(); }
    res.writeHead(503, { 'content-type': 'text/plain' });
    return res.end(`${state}\n`);
  }
  res.writeHead(404, { 'content-type': 'text/plain' });
  res.end('not found\n');
}).listen(cfg.outpost.port, cfg.listen.host, () => log(`${name} on ${cfg.listen.host}:${cfg.outpost.port}`));
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
