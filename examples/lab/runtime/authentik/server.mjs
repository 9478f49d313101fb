// STAND-IN for Authentik (DESIGN.md §6: Authentik itself cannot run here).
// It keeps the parts of Authentik's interface the stack relies on:
//   - one OpenID Provider per application at /application/o/<slug>/ (npm
//     `oidc-provider`, a certified OP), issuer https://<public_host>/application/o/<slug>/;
//   - GET /-/health/ready/ and /-/health/live/;
//   - the proxy outpost endpoint for Caddy's forward_auth,
//     GET /outpost.goauthentik.io/auth/caddy: 200 + X-Authentik-* headers when the
//     `nixmox_session` cookie is present, else 302 to the login page with ?rd=<url>;
//   - a minimal login page at /application/o/authorize/ that sets that cookie;
//   - Authentik's login and consent, as plain HTML forms under each issuer
//     (<prefix>interaction/<uid>): one lab user, LAB_USER below, whose password
//     IS checked. It is random, made on first start and kept (mode 0600) in
//     <state_dir>/labuser.password — on the lab host
//     /var/lib/lab/authentik/labuser.password — so `nixmox verify` runs the
//     whole authorization-code flow with NIXMOX_VERIFY_PASSWORD set to it.
//     ID tokens carry preferred_username and groups (in the `profile` scope,
//     as Authentik's default scope mappings do).
//
// Clients are managed through an admin API shaped like Authentik's own, which
// the lab's Terraform provider (tools/terraform-provider-nixmoxlab, a stand-in
// for Authentik's provider) calls from tf:auth-core:
//   POST   /api/v3/providers/oauth2/           { name, client_id, client_type,
//                                                redirect_uris, scopes } -> object with pk
//                                                and client_secret (made here; empty for
//                                                public clients)
//   GET|PATCH|DELETE /api/v3/providers/oauth2/<pk>/
//   POST   /api/v3/core/applications/          { name, slug, provider: <pk> }
//   GET|PATCH|DELETE /api/v3/core/applications/<slug>/
//   POST   /api/v3/outposts/instances/         { name, type: ldap|radius|proxy } -> object
//                                                with pk and the token the outpost logs in with
//   GET|PATCH|DELETE /api/v3/outposts/instances/<pk>/
// and, for the outposts themselves (their own token, never the admin's):
//   GET    /api/v3/outposts/connect/           200 { name, type } for a known outpost token
// Every call needs `Authorization: Bearer <token>`, the token made on first
// start and kept (mode 0600) in <state_dir>/admin.token. Providers and
// applications persist in <state_dir>/admin.json; a change rebuilds the
// issuers at once. An application's slug names its issuer
// (/application/o/<slug>/), which serves its provider's client. Secrets and the
// token are never logged.
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

// The lab's one user. Its password is the stand-in's own secret, never logged.
const LAB_USER = { username: 'labuser', name: 'Lab User', groups: ['lab-admins'] };
// Given values (AUTHENTIK_BOOTSTRAP_PASSWORD/_TOKEN in the host's env file,
// as real Authentik takes them) win; else the stand-in makes its own once.
function readEnv(file) {
  const out = {};
  let text = '';
  try { text = fs.readFileSync(file, 'utf8'); } catch { return out; }
  for (const line of text.split('\n')) {
    const i = line.indexOf('=');
    if (i > 0) out[line.slice(0, i)] = line.slice(i + 1);
  }
  return out;
}
const given = readEnv('/run/nixmox/env');
function keep(file, value) {
  fs.mkdirSync(cfg.state_dir, { recursive: true, mode: 0o700 });
  fs.writeFileSync(file, `${value}\n`, { mode: 0o600 });
  return value;
}
function loadPassword() {
  const file = path.join(cfg.state_dir, 'labuser.password');
  if (given.AUTHENTIK_BOOTSTRAP_PASSWORD) return keep(file, given.AUTHENTIK_BOOTSTRAP_PASSWORD);
  try { return fs.readFileSync(file, 'utf8').trim(); } catch { /* first start */ }
  const pw = crypto.randomBytes(18).toString('base64url');
  fs.mkdirSync(cfg.state_dir, { recursive: true, mode: 0o700 });
  fs.writeFileSync(file, `${pw}\n`, { mode: 0o600 });
  return pw;
}
const labPassword = loadPassword();
const sameSecret = (a, b) => {
  const x = crypto.createHash('sha256').update(String(a)).digest();
  const y = crypto.createHash('sha256').update(String(b)).digest();
  return crypto.timingSafeEqual(x, y);
};

// The admin API's token and store.
function loadToken() {
  const file = path.join(cfg.state_dir, 'admin.token');
  if (given.AUTHENTIK_BOOTSTRAP_TOKEN) return keep(file, given.AUTHENTIK_BOOTSTRAP_TOKEN);
  try { const t = fs.readFileSync(file, 'utf8').trim(); if (t) return t; } catch { /* first start */ }
  const t = crypto.randomBytes(24).toString('base64url');
  fs.mkdirSync(cfg.state_dir, { recursive: true, mode: 0o700 });
  fs.writeFileSync(file, `${t}\n`, { mode: 0o600 });
  return t;
}
const adminToken = loadToken();
const storeFile = path.join(cfg.state_dir, 'admin.json');
let store = { next: 1, providers: {}, applications: {}, outposts: {} };
try { store = JSON.parse(fs.readFileSync(storeFile, 'utf8')); } catch { /* first start: empty */ }
store.outposts ||= {};
function saveStore() {
  const tmp = `${storeFile}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(store), { mode: 0o600 });
  fs.renameSync(tmp, storeFile);
}

// The clients of the issuers: each application's provider, under its slug.
function readClients() {
  const out = [];
  for (const app of Object.values(store.applications)) {
    const p = store.providers[app.provider];
    if (!p) continue;
    out.push({ slug: app.slug, client_id: p.client_id, client_secret: p.client_secret,
      client_type: p.client_type, redirect_uris: p.redirect_uris, scopes: p.scopes });
  }
  return out;
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
    // The lab has one user (the login form below only lets it in).
    findAccount: (ctx, id) => (id === LAB_USER.username ? {
      accountId: id,
      claims: () => ({
        sub: id, preferred_username: id, name: LAB_USER.name,
        email: `${id}@${cfg.cookie_domain}`, email_verified: true, groups: LAB_USER.groups,
      }),
    } : undefined),
    // Authentik's default `profile` mapping includes groups.
    claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name', 'preferred_username', 'groups'], groups: ['groups'] },
    scopes: ['openid', 'offline_access', 'email', 'profile', 'groups'],
    // Scope claims go into the ID token too, as Authentik's "include claims in id_token".
    conformIdTokenClaims: false,
    // Login and consent are this server's forms (handleInteraction); an
    // authorization request is answered 303 to them.
    interactions: { url: (ctx, interaction) => `${prefix}interaction/${interaction.uid}` },
    features: { devInteractions: { enabled: false } },
  });
  provider.proxy = true;
  provider.on('server_error', (ctx, err) => log(`issuer ${slug}: server_error ${err.message}`));
  return { slug, prefix, provider, handle: provider.callback() };
}

const esc = (v) => String(v).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const page = (res, status, title, body) => {
  res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
  res.end(`<!doctype html><title>${esc(title)}</title><h1>${esc(title)}</h1>\n${body}\n`);
};
function readForm(req) {
  return new Promise((resolve, reject) => {
    let data = '';
    req.setEncoding('utf8');
    req.on('data', (c) => { data += c; if (data.length > 65536) { reject(new Error('form too large')); req.destroy(); } });
    req.on('end', () => resolve(new URLSearchParams(data)));
    req.on('error', reject);
  });
}

// <prefix>interaction/<uid>[/login|/confirm]: Authentik's login and consent
// stages, as HTML forms. A wrong password answers 401 with the form again.
async function handleInteraction(iss, req, res, uid, action) {
  const { provider, prefix } = iss;
  const base = `${prefix}interaction/${encodeURIComponent(uid)}`;
  let details;
  try {
    details = await provider.interactionDetails(req, res);
  } catch (e) {
    return page(res, 400, 'Sign-in expired', `<p>${esc(e.error_description || e.message)}</p>`);
  }
  const { prompt, params } = details;
  const loginForm = (status, note) => page(res, status, 'Sign in', `${note ? `<p>${esc(note)}</p>` : ''}
<form method="post" action="${base}/login" autocomplete="off">
<input type="hidden" name="prompt" value="login">
<label>Username <input type="text" name="username"></label>
<label>Password <input type="password" name="password"></label>
<button type="submit">Sign in</button>
</form>`);
  if (req.method === 'GET' && !action) {
    if (prompt.name === 'login') return loginForm(200);
    if (prompt.name === 'consent') {
      return page(res, 200, 'Authorize', `<p>${esc(params.client_id)} asks for: ${esc(params.scope || '')}</p>
<form method="post" action="${base}/confirm">
<input type="hidden" name="prompt" value="consent">
<button type="submit">Continue</button>
</form>`);
    }
    return page(res, 501, 'Not implemented', `<p>prompt ${esc(prompt.name)}</p>`);
  }
  if (req.method !== 'POST') return page(res, 405, 'Method not allowed', '');
  const form = await readForm(req);
  if (action === 'login' && prompt.name === 'login') {
    const ok = form.get('username') === LAB_USER.username && sameSecret(form.get('password') || '', labPassword);
    if (!ok) {
      log(`issuer ${iss.slug}: login refused for ${JSON.stringify(form.get('username') || '')}`);
      return loginForm(401, 'Invalid username or password');
    }
    return provider.interactionFinished(req, res, { login: { accountId: LAB_USER.username } }, { mergeWithLastSubmission: false });
  }
  if (action === 'confirm' && prompt.name === 'consent') {
    const { grantId, session } = details;
    const grant = grantId
      ? await provider.Grant.find(grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    const d = prompt.details;
    if (d.missingOIDCScope) grant.addOIDCScope(d.missingOIDCScope.join(' '));
    if (d.missingOIDCClaims) grant.addOIDCClaims(d.missingOIDCClaims);
    if (d.missingResourceScopes) {
      for (const [indicator, scope] of Object.entries(d.missingResourceScopes)) grant.addResourceScope(indicator, scope.join(' '));
    }
    return provider.interactionFinished(req, res, { consent: { grantId: await grant.save() } }, { mergeWithLastSubmission: true });
  }
  return page(res, 400, 'Unexpected step', `<p>the interaction expects ${esc(prompt.name)}</p>`);
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

// The admin API (see the top of this file).
function readJson(req) {
  return new Promise((resolve, reject) => {
    let data = '';
    req.setEncoding('utf8');
    req.on('data', (c) => { data += c; if (data.length > 65536) { reject(new Error('body too large')); req.destroy(); } });
    req.on('end', () => { try { resolve(data ? JSON.parse(data) : {}); } catch (e) { reject(e); } });
    req.on('error', reject);
  });
}
const json = (res, status, body) => {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(body === undefined ? '' : JSON.stringify(body));
};
const isText = (v) => typeof v === 'string' && v.length > 0 && v.length <= 2048 && !/[\u0000-\u001f\u007f]/.test(v);
const isTextList = (v) => Array.isArray(v) && v.length <= 64 && v.every(isText);
function providerFields(b, partial) {
  const out = {};
  for (const k of ['name', 'client_id', 'client_type']) {
    if (b[k] === undefined && partial) continue;
    if (!isText(b[k])) return `${k} must be a non-empty line of text`;
    out[k] = b[k];
  }
  if (out.client_type && !['confidential', 'public'].includes(out.client_type)) return 'client_type must be confidential or public';
  for (const k of ['redirect_uris', 'scopes']) {
    if (b[k] === undefined && partial) continue;
    if (!isTextList(b[k])) return `${k} must be a list of non-empty lines of text`;
    out[k] = b[k];
  }
  return out;
}
const secretFor = (type) => (type === 'public' ? '' : crypto.randomBytes(32).toString('base64url'));
async function handleAdmin(req, res, url) {
  const auth = req.headers.authorization || '';
  if (!auth.startsWith('Bearer ') || !sameSecret(auth.slice(7), adminToken)) return json(res, 403, { detail: 'not authenticated' });
  let m;
  try {
    if (url.pathname === '/api/v3/providers/oauth2/' && req.method === 'POST') {
      const f = providerFields(await readJson(req), false);
      if (typeof f === 'string') return json(res, 400, { detail: f });
      if (Object.values(store.providers).some((p) => p.client_id === f.client_id)) return json(res, 400, { detail: 'client_id is taken' });
      const pk = String(store.next++);
      store.providers[pk] = { pk, ...f, client_secret: secretFor(f.client_type) };
      saveStore(); buildIssuers();
      log(`admin: provider ${pk} (${f.client_id}) created`);
      return json(res, 201, store.providers[pk]);
    }
    if ((m = /^\/api\/v3\/providers\/oauth2\/([0-9]+)\/$/.exec(url.pathname))) {
      const p = store.providers[m[1]];
      if (!p) return json(res, 404, { detail: 'not found' });
      if (req.method === 'GET') return json(res, 200, p);
      if (req.method === 'DELETE') {
        delete store.providers[m[1]]; saveStore(); buildIssuers();
        log(`admin: provider ${m[1]} deleted`);
        return json(res, 204);
      }
      if (req.method === 'PATCH') {
        const f = providerFields(await readJson(req), true);
        if (typeof f === 'string') return json(res, 400, { detail: f });
        Object.assign(p, f);
        if (p.client_type === 'public') p.client_secret = '';
        else if (!p.client_secret) p.client_secret = secretFor('confidential');
        saveStore(); buildIssuers();
        log(`admin: provider ${m[1]} updated`);
        return json(res, 200, p);
      }
    }
    if (url.pathname === '/api/v3/outposts/instances/' && req.method === 'POST') {
      const b = await readJson(req);
      if (!isText(b.name) || !['ldap', 'radius', 'proxy'].includes(b.type)) return json(res, 400, { detail: 'name is required; type is ldap, radius or proxy' });
      if (Object.values(store.outposts).some((o) => o.name === b.name)) return json(res, 400, { detail: 'name is taken' });
      const pk = String(store.next++);
      store.outposts[pk] = { pk, name: b.name, type: b.type, token: crypto.randomBytes(32).toString('base64url') };
      saveStore();
      log(`admin: outpost ${pk} (${b.name}, ${b.type}) created`);
      return json(res, 201, store.outposts[pk]);
    }
    if ((m = /^\/api\/v3\/outposts\/instances\/([0-9]+)\/$/.exec(url.pathname))) {
      const o = store.outposts[m[1]];
      if (!o) return json(res, 404, { detail: 'not found' });
      if (req.method === 'GET') return json(res, 200, o);
      if (req.method === 'DELETE') {
        delete store.outposts[m[1]]; saveStore();
        log(`admin: outpost ${m[1]} deleted`);
        return json(res, 204);
      }
      if (req.method === 'PATCH') {
        const b = await readJson(req);
        if (b.name !== undefined) { if (!isText(b.name)) return json(res, 400, { detail: 'name must be a line of text' }); o.name = b.name; }
        saveStore();
        log(`admin: outpost ${m[1]} updated`);
        return json(res, 200, o);
      }
    }
    if (url.pathname === '/api/v3/core/applications/' && req.method === 'POST') {
      const b = await readJson(req);
      if (![b.name, b.slug, b.provider].every(isText) || !/^[a-z0-9_-]{1,64}$/.test(b.slug)) return json(res, 400, { detail: 'name, slug and provider are required; slug is lowercase letters, digits, - and _' });
      if (store.applications[b.slug]) return json(res, 400, { detail: 'slug is taken' });
      store.applications[b.slug] = { slug: b.slug, name: b.name, provider: b.provider };
      saveStore(); buildIssuers();
      log(`admin: application ${b.slug} created`);
      return json(res, 201, store.applications[b.slug]);
    }
    if ((m = /^\/api\/v3\/core\/applications\/([a-z0-9_-]+)\/$/.exec(url.pathname))) {
      const a = store.applications[m[1]];
      if (!a) return json(res, 404, { detail: 'not found' });
      if (req.method === 'GET') return json(res, 200, a);
      if (req.method === 'DELETE') {
        delete store.applications[m[1]]; saveStore(); buildIssuers();
        log(`admin: application ${m[1]} deleted`);
        return json(res, 204);
      }
      if (req.method === 'PATCH') {
        const b = await readJson(req);
        for (const k of ['name', 'provider']) if (b[k] !== undefined) { if (!isText(b[k])) return json(res, 400, { detail: `${k} must be a line of text` }); a[k] = b[k]; }
        saveStore(); buildIssuers();
        log(`admin: application ${m[1]} updated`);
        return json(res, 200, a);
      }
    }
  } catch (e) {
    return json(res, 400, { detail: `bad request: ${e.message}` });
  }
  return json(res, 405, { detail: 'method not allowed' });
}

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
  // An outpost logs in with its own token (never the admin token).
  if (url.pathname === '/api/v3/outposts/connect/') {
    const auth = req.headers.authorization || '';
    const o = auth.startsWith('Bearer ') && Object.values(store.outposts).find((x) => sameSecret(auth.slice(7), x.token));
    if (!o) return json(res, 403, { detail: 'not an outpost token' });
    if (!o.connected) log(`outpost ${o.name} connected`);
    o.connected = true;
    return json(res, 200, { name: o.name, type: o.type });
  }
  if (url.pathname.startsWith('/api/v3/')) {
    return handleAdmin(req, res, url).catch((e) => { log(`admin: ${e.message}`); if (!res.headersSent) json(res, 500, { detail: 'error' }); });
  }
  if (url.pathname === '/outpost.goauthentik.io/auth/caddy') {
    if ('nixmox_session' in cookies(req)) {
      res.writeHead(200, {
        'X-Authentik-Username': 'labuser', 'X-Authentik-Email': `labuser@${cfg.cookie_domain}`,
        'X-Authentik-Name': LAB_USER.name, 'X-Authentik-Groups': LAB_USER.groups.join('|'), 'X-Authentik-Uid': 'labuser',
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
      const m = /^\/interaction\/([^/?]+)(?:\/(login|confirm))?\/?(?:\?.*)?$/.exec(req.url);
      if (m) {
        return handleInteraction(iss, req, res, decodeURIComponent(m[1]), m[2]).catch((e) => {
          log(`issuer ${iss.slug}: interaction error ${e.message}`);
          if (!res.headersSent) page(res, 500, 'Error', '');
        });
      }
      return iss.handle(req, res);
    }
  }
  res.writeHead(404, { 'content-type': 'text/plain' }); res.end('not found\n');
});

server.listen(cfg.listen.port, cfg.listen.host, () => log(`authentik stand-in on ${cfg.listen.host}:${cfg.listen.port}`));
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
