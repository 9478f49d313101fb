// A lab application (wiki, notes, dash, ...): a small HTTP service whose health
// endpoint really uses its database(s) and its OIDC client settings.
//
// usage: node server.mjs <config.json>   (config rendered by examples/lab/systems:
//   { service, listen: [{host, port}], prefixes: ["/metrics"],
//     databases: [{host, port, name, owner}],
//     oidc: {client_id, client_type, slug, issuer, discovery_url} | null })
// Secrets are read once at start from /run/nixmox/env (KEY=VALUE lines, the
// SOPS/env sink): NIXMOX_DB_PASSWORD_<ROLE> for each database owner, and any
// NIXMOX_TF_* values (e.g. the client secret from tf:auth-core). Values are
// never printed; /healthz only says whether they are present.
//
//   GET [<prefix>]/         200 "hello from <service>"
//   GET [<prefix>]/healthz  200 {ok:true, db:"ok"|"none", oidc:"ok"|"none"} or 503 with reasons
// Version "crash-after-first-health" exits after its first healthy /healthz;
// versions starting "slow-health" answer 503 for their first 5 s (lab
// faults, used by tests/host_faults.rs). "cut-network" is the activation's
// (runtime/lib.sh).
const STARTED = Date.now();
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';

const PREFIX = process.env.NIXMOX_NODE_PREFIX || '/opt/nixmox';
const pg = createRequire(path.join(PREFIX, 'package.json'))('pg');
const cfg = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const log = (...a) => console.log(new Date().toISOString(), cfg.service, ...a);

function readEnv(file) {
  try {
    return Object.fromEntries(fs.readFileSync(file, 'utf8').split('\n')
      .filter((l) => l.includes('=') && !l.startsWith('#'))
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
  } catch { return {}; }
}
const env = readEnv('/run/nixmox/env');
const envName = (s) => s.toUpperCase().replace(/[^A-Z0-9]/g, '_');
const dbPassword = (role) => env[`NIXMOX_DB_PASSWORD_${envName(role)}`];
// This client's secret: a NIXMOX_TF_*SECRET* output that is an object of
// client id -> secret (tf:auth-core's client_secrets) and names this client.
function findSecret() {
  if (!cfg.oidc) return null;
  for (const [k, v] of Object.entries(env)) {
    if (!k.startsWith('NIXMOX_TF_') || !k.includes('SECRET')) continue;
    try {
      const o = JSON.parse(v);
      if (o && typeof o === 'object' && typeof o[cfg.oidc.client_id] === 'string' && o[cfg.oidc.client_id]) return k;
    } catch { /* not JSON: not a map of secrets */ }
  }
  return null;
}
const secretKey = findSecret();
log(`env: ${Object.keys(env).length} values; client secret ${secretKey ? `from ${secretKey}` : 'absent'}`);

async function checkDb(d) {
  const client = new pg.Client({
    host: d.host, port: d.port, database: d.name, user: d.owner,
    password: dbPassword(d.owner), connectionTimeoutMillis: 5000, query_timeout: 5000,
  });
  try {
    await client.connect();
    await client.query('SELECT 1');
    return null;
  } catch (e) {
    return `database ${d.name} as ${d.owner}: ${e.message}`;
  } finally {
    client.end().catch(() => {});
  }
}

async function checkOidc(o) {
  try {
    const r = await fetch(o.discovery_url, { signal: AbortSignal.timeout(5000) });
    if (!r.ok) return `discovery ${o.discovery_url}: HTTP ${r.status}`;
    const doc = await r.json();
    if (doc.issuer !== o.issuer) return `discovery issuer ${doc.issuer} is not ${o.issuer}`;
    return null;
  } catch (e) {
    return `discovery ${o.discovery_url}: ${e.message}`;
  }
}

async function health() {
  const errors = [];
  const dbErrors = (await Promise.all(cfg.databases.map(checkDb))).filter(Boolean);
  errors.push(...dbErrors);
  const oidcError = cfg.oidc ? await checkOidc(cfg.oidc) : null;
  if (oidcError) errors.push(oidcError);
  // A confidential client cannot finish a login without its secret.
  if (cfg.oidc && cfg.oidc.client_type === 'confidential' && !secretKey) {
    errors.push(`no client secret for ${cfg.oidc.client_id} in /run/nixmox/env`);
  }
  const body = {
    ok: errors.length === 0,
    service: cfg.service,
    db: cfg.databases.length === 0 ? 'none' : dbErrors.length ? 'error' : 'ok',
    oidc: !cfg.oidc ? 'none' : oidcError ? 'error' : 'ok',
  };
  if (cfg.oidc) Object.assign(body, { client_id: cfg.oidc.client_id, client_secret: secretKey ? 'present' : 'absent' });
  if (errors.length) body.reasons = errors;
  return body;
}

// Paths under a route's prefix (e.g. dash's /metrics) behave like the root.
function localPath(p) {
  for (const pre of cfg.prefixes) {
    if (p === pre || p.startsWith(`${pre}/`)) return p.slice(pre.length) || '/';
  }
  return p;
}

async function handle(req, res) {
  const p = localPath(new URL(req.url, 'http://app').pathname);
  if (p === '/healthz') {
    const body = await health();
    if (String(cfg.version).startsWith('slow-health') && Date.now() - STARTED < 5000) {
      body.ok = false;
      body.reasons = [...(body.reasons || []), 'fault: still starting (slow-health)'];
    }
    res.writeHead(body.ok ? 200 : 503, { 'content-type': 'application/json' });
    res.end(`${JSON.stringify(body)}\n`);
    // A lab fault for tests: this version answers one healthy /healthz, then
    // dies, like a daemon that crashes right after its activation.
    if (cfg.version === 'crash-after-first-health' && body.ok) {
      log('fault: exiting after the first healthy /healthz');
      setTimeout(() => process.exit(3), 50);
    }
    return;
  }
  if (p === '/') {
    const user = req.headers['x-authentik-username'];
    res.writeHead(200, { 'content-type': 'text/plain' });
    return res.end(`hello from ${cfg.service}${user ? ` (user ${user})` : ''}\n`);
  }
  res.writeHead(404, { 'content-type': 'text/plain' });
  res.end('not found\n');
}

for (const { host, port } of cfg.listen) {
  http.createServer((req, res) => handle(req, res).catch((e) => {
    log(`error: ${e.message}`); res.writeHead(500); res.end();
  })).listen(port, host, () => log(`listening on ${host}:${port}`));
}
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
