// STAND-IN for Authentik (DESIGN.md §6: Authentik itself cannot run here).
// It keeps the parts of Authentik's interface the stack relies on:
//   - one OpenID Provider per application at /application/o/<slug>/ (npm
//     `oidc-provider`, a certified OP), issuer https://<public_host>/application/o/<slug>/;
//   - GET /-/health/ready/ and /-/health/live/;
//   - the proxy outpost endpoint for Caddy's forward_auth,
//     GET /outpost.goauthentik.io/auth/caddy: 200 + X-Authentik-* headers when the
//     `nixmox_session` cookie is present, else 302 to the login page with ?rd=<url>;
//   - a minimal login page at /application/o/authorize/ that sets that cookie.
//
// Clients come from the file written by the lab's tf:auth-core module
// (config.clients_file, normally /var/lib/lab/clients.json):
//   { "clients": [ { "slug": "wiki", "client_id": "wiki-oidc",
//                    "client_secret": "...",          // confidential clients only
//                    "client_type": "confidential",   // or "public" (auth method none, PKCE)
//                    "redirect_uris": ["https://docs.nixmox.test/oauth/callback"],
//                    "scopes": ["openid", "email", "profile"] } ] }
// The file is polled; a change rebuilds the issuers without a restart. When it
// is absent, every issuer serves discovery with no clients. Secrets are never logged.
//
// usage: node server.mjs <config.json>   (config rendered by examples/lab/systems)
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';

const PREFIX = process.env.NIXMOX_NODE_PREFIX || '/opt/nixmox';
const { default: Provider } = await import(path.join(PREFIX, 'node_modules/oidc-provider/lib/index.js'));

const cfg = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const log = (...a) => console.log(new Date().toISOString(), ...a);

// Signing and cookie keys persist across restarts, so tokens and sessions
// issued before a restart stay valid.
function loadKeys() {
  const file = path.join(cfg.state_dir, 'keys.json');
  try { return JSON.parse(fs.readFileSync(file, 'utf8')); } catch { /* first start */ }
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = { ...privateKey.export({ format: 'jwk' }), kid: crypto.randomUUID(), use: 'sig', alg: 'RS256' };
  const keys = { jwk, cookies: [crypto.randomBytes(32).toString('hex')] };
  fs.mkdirSync(cfg.state_dir, { recursive: true, mode: 0o700 });
  fs.writeFileSync(file, JSON.stringify(keys), { mode: 0o600 });
  return keys;
}
const keys = loadKeys();

function readClients() {
  try {
    return JSON.parse(fs.readFileSync(cfg.clients_file, 'utf8')).clients || [];
  } catch (e) {
    if (e.code !== 'ENOENT') log(`cannot read ${cfg.clients_file}: ${e.message}; serving no clients`);
    return [];
  }
}

function clientMetadata(c) {
  const meta = {
    client_id: c.client_id,
    redirect_uris: c.redirect_uris || [],
    grant_types: ['authorization_code'],
    response_types: ['code'],
  };
  if (c.client_type === 'public') meta.token_endpoint_auth_method = 'none';
  else { meta.client_secret = c.client_secret; meta.token_endpoint_auth_method = 'client_secret_basic'; }
  return meta;
}

function makeIssuer(slug, clients) {
  const prefix = `/application/o/${slug}/`;
  const issuer = `https://${cfg.public_host}${prefix}`;
  const provider = new Provider(issuer, {
    clients: clients.map(clientMetadata),
    jwks: { keys: [keys.jwk] },
    cookies: { keys: keys.cookies },
    // The lab has one user; the dev interaction pages log anyone in as it.
    findAccount: (ctx, id) => ({
      accountId: id,
      claims: () => ({ sub: id, preferred_username: id, name: id, email: `${id}@${cfg.cookie_domain}`, email_verified: true, groups: [] }),
    }),
    claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name', 'preferred_username'], groups: ['groups'] },
    scopes: ['openid', 'offline_access', 'email', 'profile', 'groups'],
    // The dev interaction pages (under the issuer's prefix) stand in for
    // Authentik's login flow; an authorization request is answered 303 to them.
    features: { devInteractions: { enabled: true } },
  });
  provider.proxy = true;
  provider.on('server_error', (ctx, err) => log(`issuer ${slug}: server_error ${err.message}`));
  return { slug, prefix, handle: provider.callback() };
}

let issuers = [];
function buildIssuers() {
  const clients = readClients();
  const slugs = [...new Set([...cfg.slugs, ...clients.map((c) => c.slug)])];
  issuers = slugs.map((slug) => {
    const mine = clients.filter((c) => c.slug === slug);
    log(`issuer ${slug}: clients [${mine.map((c) => c.client_id).join(', ')}]`);
    return makeIssuer(slug, mine);
  });
}
buildIssuers();
fs.watchFile(cfg.clients_file, { interval: 1000 }, () => { log(`${cfg.clients_file} changed`); buildIssuers(); });

const cookies = (req) => Object.fromEntries((req.headers.cookie || '').split(';')
  .map((p) => p.trim().split('=')).filter((kv) => kv[0]).map(([k, ...v]) => [k, v.join('=')]));

// Only redirect back into the lab's own domain (no open redirect).
function safeReturn(rd) {
  try {
    const u = new URL(rd);
    return u.protocol === 'https:' && (u.hostname === cfg.cookie_domain || u.hostname.endsWith(`.${cfg.cookie_domain}`)) ? u.href : null;
  } catch { return null; }
}

const loginPath = '/application/o/authorize/';

const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://lab');
  if (url.pathname === '/-/health/ready/' || url.pathname === '/-/health/live/') {
    res.writeHead(200, { 'content-type': 'text/plain' }); return res.end('ok\n');
  }
  if (url.pathname === '/outpost.goauthentik.io/auth/caddy') {
    if ('nixmox_session' in cookies(req)) {
      res.writeHead(200, {
        'X-Authentik-Username': 'labuser', 'X-Authentik-Email': `labuser@${cfg.cookie_domain}`,
        'X-Authentik-Name': 'Lab User', 'X-Authentik-Groups': '', 'X-Authentik-Uid': 'labuser',
      });
      return res.end();
    }
    // Caddy's forward_auth passes the original request in X-Forwarded-*.
    const h = req.headers;
    const original = `${h['x-forwarded-proto'] || 'https'}://${h['x-forwarded-host'] || h.host}${h['x-forwarded-uri'] || '/'}`;
    res.writeHead(302, { location: `https://${cfg.public_host}${loginPath}?rd=${encodeURIComponent(original)}` });
    return res.end();
  }
  if (url.pathname === loginPath) {
    const rd = safeReturn(url.searchParams.get('rd') || '');
    if (url.searchParams.get('login') === '1' && rd) {
      res.writeHead(302, {
        'set-cookie': `nixmox_session=labuser; Domain=.${cfg.cookie_domain}; Path=/; Secure; HttpOnly; SameSite=Lax`,
        location: rd,
      });
      return res.end();
    }
    res.writeHead(200, { 'content-type': 'text/html' });
    const next = rd ? `?login=1&rd=${encodeURIComponent(rd)}` : '';
    return res.end(`<!doctype html><title>Lab sign-in</title><h1>NixMox lab sign-in (Authentik stand-in)</h1>${next ? `<a href="${next}">Sign in as labuser</a>` : ''}\n`);
  }
  for (const iss of issuers) {
    if (url.pathname.startsWith(iss.prefix) || url.pathname === iss.prefix.slice(0, -1)) {
      // Mounted like express does: the provider sees the path below the prefix
      // and derives its URLs from originalUrl. Host and scheme are the public
      // ones, so direct requests (http://<ip>:9000) see the same issuer.
      req.originalUrl = req.url;
      req.url = req.url.slice(iss.prefix.length - 1) || '/';
      req.headers['x-forwarded-host'] = cfg.public_host;
      req.headers['x-forwarded-proto'] = 'https';
      return iss.handle(req, res);
    }
  }
  res.writeHead(404, { 'content-type': 'text/plain' }); res.end('not found\n');
});

server.listen(cfg.listen.port, cfg.listen.host, () => log(`authentik stand-in on ${cfg.listen.host}:${cfg.listen.port}`));
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
