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

// The lab's one user. Its password is the stand-in's own secret, never logged.
const LAB_USER = { username: 'labuser', name: 'Lab User', groups: ['lab-admins'] };
function loadPassword() {
  const file = path.join(cfg.state_dir, 'labuser.password');
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
