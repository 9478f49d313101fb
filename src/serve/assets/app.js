// The page of `nixmox serve`: plain ES2020, no framework, no build step.
//
// Every value that comes from the API is untrusted (a service name or a step's
// detail may well hold `<script>`): the DOM is built with createElement and
// text nodes only, never innerHTML, and links are built from known paths.
'use strict';

const state = {
  session: null, stack: null, plan: null, // the answers of /api/session, /api/stack, /api/plan
  services: [], statusAt: null, refreshing: false, // from /api/services
  runs: new Map(), // run id → run
  openRun: null, // the run shown below the runs table,
  runStream: null, // its EventSource while it runs,
  steps: new Map(), // and its steps: step → {tr, seq, started, …}
  timers: {},
};

const loggedIn = () => !!(state.session && state.session.user);

// ---- API -----------------------------------------------------------------

async function api(path, { method = 'GET', body } = {}) {
  const opts = { method, credentials: 'same-origin', headers: {} };
  if (method !== 'GET') {
    opts.headers['content-type'] = 'application/json';
    if (state.session && state.session.csrf) opts.headers['X-CSRF-Token'] = state.session.csrf;
    opts.body = JSON.stringify(body === undefined ? {} : body);
  }
  const r = await fetch(path, opts);
  const text = await r.text();
  const data = text ? parse(text) : null;
  if (r.ok) return data;
  const msg = data && typeof data.error === 'string' ? data.error
    : `${method} ${path} failed: HTTP ${r.status}${text && !data ? `: ${text.slice(0, 200)}` : ''}`;
  throw Object.assign(new Error(msg), { status: r.status });
}

// Runs an action; its error goes to the message area. A 401 means the session
// is gone, so the header is brought up to date.
async function act(fn) {
  try { return await fn(); } catch (e) {
    showMessage(e.message);
    if (e.status === 401) loadSession().catch(() => {});
    return null;
  }
}

function showMessage(text, kind = 'error') {
  const m = $('message');
  m.className = `message ${kind}`;
  m.replaceChildren(h('span', { text }), h('button', { class: 'x', 'aria-label': 'Dismiss', onclick: () => { m.hidden = true; } }, '×'));
  m.hidden = false;
}

// Runs `fn` once in `ms`, unless a call under that name is already waiting.
function later(name, ms, fn) {
  if (state.timers[name]) return;
  state.timers[name] = setTimeout(() => { state.timers[name] = null; fn().catch((e) => showMessage(e.message)); }, ms);
}
// While a status refresh or a plan runs, their answers are read again (which re-arms the poll).
const pollStatus = () => later('status', 2000, async () => { await loadServices(); if (!state.refreshing) await loadStack(); });
const pollPlan = () => later('plan', 1000, loadPlan);

// ---- header: session, stack, lock ------------------------------------------

async function loadSession() {
  state.session = await api('/api/session');
  renderSession();
}

function renderSession() {
  const s = state.session || {};
  const box = $('login-state');
  if (s.user) {
    box.replaceChildren('Logged in as ', h('strong', { 'data-testid': 'user', text: s.user }), ' ',
      h('button', { 'data-testid': 'logout', onclick: logout }, 'Log out'));
  } else if (s.oidc) {
    box.replaceChildren(h('a', { class: 'button', 'data-testid': 'login', href: safeHref(s.login_url, '/auth/login') }, 'Log in'));
  } else {
    box.replaceChildren(h('span', { class: 'muted', text: 'read-only (no login configured)' }));
  }
  for (const b of document.querySelectorAll('.needs-login')) {
    [b.disabled, b.title] = [!s.user, s.user ? b.dataset.title || '' : 'Log in first'];
  }
}

async function logout() {
  await act(() => api('/auth/logout', { method: 'POST' }));
  await act(loadSession);
  $('apply-panel').hidden = true;
}

async function loadStack() {
  const st = (state.stack = await api('/api/stack'));
  $('stack-info').textContent = $('stack-info').title =
    [st.manifest, st.domain, st.store && `store ${st.store}`].filter(Boolean).join(' · ');
  const lock = st.lock;
  $('lock-banner').hidden = !lock;
  if (lock) $('lock-text').textContent = `Locked by nixmox ${lock.command} (pid ${lock.pid} on ${lock.host}) since ${fmtTime(lock.since)}.`;
  const drift = st.terraform_drift || [];
  $('tf-drift').hidden = drift.length === 0;
  $('tf-drift').replaceChildren(h('strong', {}, 'Terraform drift: '),
    ...drift.map((d, i) => h('span', { title: d.detail }, i ? '; ' : '', `${d.workspace}: ${d.detail}`)));
  renderStatusInfo();
  drawGraph();
}

async function unlock() {
  if (!confirm('Remove the run lock? Only do this when the holder is really gone.')) return;
  const r = await act(() => api('/api/unlock', { method: 'POST' }));
  if (r) showMessage(r.removed ? `Lock of nixmox ${r.removed.command} (pid ${r.removed.pid}) removed.` : 'There was no lock.', 'info');
  await act(loadStack);
}

// ---- Stack: services table and status refresh -----------------------------------

async function loadServices() {
  const d = await api('/api/services');
  state.services = d.services || [];
  state.statusAt = d.status_at;
  state.refreshing = !!d.status_refreshing;
  renderServices();
  renderStatusInfo();
  drawGraph();
  if (state.refreshing) pollStatus();
}

function renderStatusInfo() {
  const parts = [state.statusAt ? `status as of ${fmtTime(state.statusAt)}` : 'no status yet'];
  if (state.refreshing) parts.push('refreshing…');
  if (state.stack && state.stack.status_error) parts.push(`last refresh failed: ${state.stack.status_error}`);
  parts.push(`${state.services.length} services`);
  $('status-info').textContent = parts.join(' · ');
  $('refresh-status').disabled = state.refreshing;
}

async function refreshStatus() {
  if (!(await act(() => api('/api/status/refresh', { method: 'POST' })))) return;
  state.refreshing = true;
  renderStatusInfo();
  pollStatus();
}

function renderServices() {
  const tbody = $('services-table').tBodies[0];
  // Keep open verify details open across refreshes.
  const open = new Set([...tbody.querySelectorAll('details[open]')].map((d) => d.closest('tr').dataset.service));
  const frag = document.createDocumentFragment();
  for (const svc of state.services) frag.append(serviceRow(svc, open.has(svc.name)));
  tbody.replaceChildren(frag);
}

function serviceRow(svc, verifyOpen) {
  const [liveMark, liveCls] = svc.live == null ? ['?', 'unknown'] : svc.live ? ['✔', 'up'] : ['✖', 'down'];
  const lg = svc.last_good ? `${svc.last_good}${svc.last_good_at ? ` (${fmtTime(svc.last_good_at)})` : ''}` : null;
  const ld = svc.last_deploy;
  const deploy = ld
    ? h('td', { title: `${ld.step ?? ''} ${fmtTime(ld.at)}` },
      h('a', { href: `#runs/${encodeURIComponent(ld.run)}`, onclick: (e) => { e.preventDefault(); showRun(ld.run); } }, `run ${ld.run}`), ' ', badge(ld.status))
    : cell(null);
  const verify = svc.verify || [];
  const bad = verify.filter((v) => !v.ok).length;
  const verifyCell = verify.length === 0 ? cell(null) : h('td', {},
    h('details', { open: verifyOpen },
      h('summary', { class: bad ? 'bad' : 'good' }, `${verify.length - bad} ok / ${bad} failed`),
      h('ul', { class: 'checks' }, verify.map((v) => h('li', { class: v.ok ? 'good' : 'bad' },
        `${v.ok ? '✔' : '✖'} ${v.check}${v.detail ? ` — ${v.detail}` : ''}`)))));
  const notes = (svc.rolled_back || []).join('; ');
  const why = `roll ${svc.name} back to its last good system`;
  const rollback = h('button', { class: 'needs-login small', disabled: !loggedIn(), 'data-title': why,
    title: loggedIn() ? why : 'Log in first', onclick: () => rollbackService(svc.name) }, 'Roll back');
  return h('tr', { 'data-testid': 'service-row', 'data-service': svc.name, id: `svc-${svc.name}` },
    h('th', { scope: 'row', class: 'trunc', title: svc.hostname || svc.name }, svc.name),
    h('td', {}, svc.core ? 'core' : 'app'), cell(svc.ip, 'mono'),
    h('td', { class: `live ${liveCls}`, title: svc.liveness || liveCls }, liveMark),
    h('td', { class: svc.drifted ? 'bad' : '' }, svc.drifted == null ? '?' : svc.drifted ? 'drifted' : '—'),
    h('td', { class: 'trunc mono', title: svc.system || null }, shortStore(svc.system)),
    h('td', { class: 'trunc mono', title: lg }, shortStore(svc.last_good)),
    deploy, verifyCell, cell(notes || null), h('td', {}, rollback));
}

async function rollbackService(name) {
  if (!confirm(`Roll ${name} back to its last good system?`)) return;
  const r = await act(() => api(`/api/services/${encodeURIComponent(name)}/rollback`, { method: 'POST', body: { confirm: true } }));
  if (r && r.run != null) showRun(r.run);
}

// ---- Plan ----------------------------------------------------------------------

async function loadPlan() {
  state.plan = await api('/api/plan');
  renderPlanState();
  if (state.plan.running) pollPlan();
}

async function refreshPlan() {
  const r = await act(() => api('/api/plan', { method: 'POST' }));
  if (!r) return;
  state.plan = r;
  renderPlanState();
  pollPlan();
}

function renderPlanState() {
  const p = state.plan || {};
  const exit = { 0: ' · nothing to change', 2: ' · changes' }[p.exit] ?? (p.error ? ' · failed' : '');
  $('plan-status').textContent = p.running ? 'planning…' : p.at ? `planned ${fmtTime(p.at)}${exit}` : 'no plan yet';
  $('plan-refresh').disabled = !loggedIn() || !!p.running;
  $('plan-view').replaceChildren(
    p.error ? h('p', { class: 'refused', text: p.error }) : '',
    p.plan ? renderPlan(p.plan) : h('p', { class: 'muted', text: p.running ? 'Planning…' : 'No plan yet.' }));
}

// table(['A', 'B'], [[a, b], …], rowClass?) — a cell is text or a node.
function table(heads, rows, rowClass = () => '') {
  return h('div', { class: 'table-wrap' }, h('table', { class: 'grid' },
    h('thead', {}, h('tr', {}, heads.map((t) => h('th', {}, t)))),
    h('tbody', {}, rows.map((r, i) => h('tr', { class: rowClass(i) || null },
      r.map((c) => (c instanceof Node ? h('td', {}, c) : cell(c == null || typeof c !== 'object' ? c : JSON.stringify(c)))))))));
}

const tfChanging = (t) => t.state === 'replan' || t.state === 'pending' ||
  (t.state === 'planned' && !!t.changes && (['add', 'change', 'destroy', 'replace'].some((k) => t.changes[k] > 0) ||
    (t.changes.outputs || []).length > 0 || (t.changes.drift || []).length > 0));

// How many things the plan would change (or cannot vouch for).
function countChanges(plan) {
  if (Array.isArray(plan.steps)) return plan.steps.length; // the offline plan: every step runs
  return (plan.terraform || []).filter(tfChanging).length +
    (plan.nixos || []).filter((n) => n.state !== 'unchanged').length +
    (plan.databases || []).filter((d) => d.state !== 'unchanged').length;
}

function closureText(c) {
  if (!c) return null;
  const parts = (c.changed || []).map((p) => `${p.name} ${(p.before || []).join(',')}→${(p.after || []).join(',')}`);
  if ((c.added || []).length) parts.push(`+${c.added.length} packages`);
  if ((c.removed || []).length) parts.push(`−${c.removed.length} packages`);
  parts.push(`paths ${c.paths_before}→${c.paths_after} (+${c.paths_added} −${c.paths_removed})`);
  if (c.size_after != null && c.size_before != null) parts.push(`size ${fmtBytes(c.size_after - c.size_before)}`);
  return parts.join('; ');
}

function renderPlan(plan) {
  const box = h('div', { class: 'plan' });
  box.append(h('p', { class: 'muted' }, [plan.manifest, plan.scope && `scope ${plan.scope}`,
    plan.changes === false ? 'nothing would change' : `${countChanges(plan)} changing`].filter(Boolean).join(' · ')));
  if (Array.isArray(plan.steps) && plan.steps.length) {
    box.append(h('h3', {}, 'Steps'), table(['Step', 'Phase', 'Service', 'Where', 'What', 'After'],
      plan.steps.map((s) => [s.id ?? s.step, s.phase, s.service, s.host || s.workspace, s.summary ?? s.action ?? s.change, (s.after || []).join(', ')])));
  }
  const tf = plan.terraform || [];
  if (tf.length) {
    box.append(h('h3', {}, 'Terraform'), table(['Step', 'Workspace', 'State', 'Changes', 'Outputs / drift', 'Notes'],
      tf.map((t) => {
        const c = t.changes;
        const outs = c && [(c.outputs || []).length && `outputs: ${c.outputs.join(', ')}`,
          (c.drift || []).length && `drift: ${JSON.stringify(c.drift)}`].filter(Boolean).join('; ');
        return [t.step, t.workspace, t.state, c ? `+${c.add} ~${c.change} −${c.destroy} ±${c.replace}` : null, outs,
          [t.after && `after ${t.after.join(', ')}`, t.waits_on && `waits on ${t.waits_on.join(', ')}`].filter(Boolean).join('; ')];
      }), (i) => (tfChanging(tf[i]) ? 'chg' : '')));
  }
  const hosts = plan.nixos;
  if (Array.isArray(hosts) && hosts.length) {
    box.append(h('h3', {}, 'Hosts'), table(['Service', 'Host', 'State', 'System', 'Closure', 'Env', 'Age key', 'Reasons'],
      hosts.map((n) => [n.service, n.host, n.state,
        h('span', { class: 'mono', title: `${n.current ?? '(none)'} → ${n.wanted ?? '?'}` },
          n.current === n.wanted ? shortStore(n.wanted) : `${shortStore(n.current)} → ${shortStore(n.wanted)}`),
        closureText(n.closure), n.env && n.env.state, n.age_key && n.age_key.state, (n.reasons || []).join('; ')]),
      (i) => (hosts[i].state !== 'unchanged' ? 'chg' : '')));
  }
  const dbs = plan.databases || [];
  if (dbs.length) {
    box.append(h('h3', {}, 'Databases'), table(['Service', 'Database', 'State', 'Role', 'Create', 'Migrations', 'Edited'],
      dbs.map((d) => [d.service, d.database, d.state === 'unknown' && d.reason ? `unknown: ${d.reason}` : d.state, d.role,
        (d.databases || []).join(', '), (d.migrations || []).join(', '), (d.edited || []).join(', ')]),
      (i) => (dbs[i].state !== 'unchanged' ? 'chg' : '')));
  }
  for (const k of ['waves', 'disabled', 'skipped', 'forced']) {
    const v = plan[k];
    if (Array.isArray(v) && v.length) box.append(h('p', { class: 'small' }, h('strong', {}, `${k}: `), JSON.stringify(v)));
  }
  box.append(h('details', { class: 'raw' }, h('summary', {}, 'Raw JSON'), h('pre', { text: JSON.stringify(plan, null, 2) })));
  return box;
}

// ---- Apply -----------------------------------------------------------------------

function refuse(text) {
  $('apply-refused').textContent = text;
  $('apply-refused').hidden = false;
}
// The server's refusal of an action shows where the page's own does.
function applyFailed(e) {
  if (e.status !== 401 && e.status !== 403) return showMessage(e.message);
  refuse(e.message);
  loadSession().catch(() => {});
}

async function startApply() {
  $('apply-refused').hidden = true;
  $('apply-panel').hidden = true;
  if (!loggedIn()) { refuse('Log in to apply'); return; } // nothing is asked of the server
  $('apply').disabled = true;
  $('apply-status').textContent = 'Planning what apply would change… (this can take a minute or two)';
  $('apply-status').hidden = false;
  try {
    const p = (state.plan = await api('/api/plan?wait=1', { method: 'POST' }));
    renderPlanState();
    const n = p.plan ? countChanges(p.plan) : null;
    $('apply-summary').textContent = p.plan
      ? `${n} changing step${n === 1 ? '' : 's'}${p.plan.changes === false ? ' — nothing would change; apply still checks every host' : ''}.`
      : `The plan failed: ${p.error ?? 'no plan'}. Applying may fail the same way.`;
    $('apply-plan').replaceChildren(p.plan ? renderPlan(p.plan) : '');
    $('apply-panel').hidden = false;
    $('apply-panel').scrollIntoView({ block: 'nearest' });
  } catch (e) {
    applyFailed(e);
  } finally {
    $('apply').disabled = false;
    $('apply-status').hidden = true;
  }
}

async function confirmApply() {
  $('apply-confirm').disabled = true;
  try {
    const r = await api('/api/apply', { method: 'POST', body: { confirm: true } });
    $('apply-panel').hidden = true;
    showRun(r.run);
  } catch (e) { applyFailed(e); }
  $('apply-confirm').disabled = false;
}

// ---- Runs --------------------------------------------------------------------------

async function loadRuns() {
  const d = await api('/api/runs?limit=50');
  // Runs the live stream brought meanwhile stay.
  state.runs = new Map([...state.runs, ...(d.runs || []).map((r) => [Number(r.id), r])]);
  renderRuns();
}

function upsertRun(run) {
  const id = Number(run.id);
  const prev = state.runs.get(id);
  state.runs.set(id, { ...prev, ...run });
  renderRuns();
  if (!prev || prev.status !== run.status) refreshSoon(); // the lock and last deploys move with runs
  if (id === state.openRun) {
    renderRunHead(state.runs.get(id));
    // It ended: the journal now holds the final timings.
    if (prev && prev.status === 'running' && run.status !== 'running') { closeRunStream(); reloadRun(id); }
  }
}

function refreshSoon() {
  clearTimeout(state.timers.soon);
  state.timers.soon = setTimeout(() => { loadStack().catch(() => {}); loadServices().catch(() => {}); }, 400);
}

// "since" cells count up once a second while their run or step runs.
const ticking = (since) => h('td', { 'data-since': since }, fmtDuration(now() - since));
const runDuration = (r) => (r.status === 'running' && r.started != null
  ? ticking(r.started)
  : h('td', {}, fmtDuration(r.finished != null && r.started != null ? r.finished - r.started : null)));

function renderRuns() {
  const ids = [...state.runs.keys()].sort((a, b) => b - a);
  for (const old of ids.slice(100)) state.runs.delete(old); // keep the page's memory bounded
  const frag = document.createDocumentFragment();
  for (const id of ids.slice(0, 100)) {
    const r = state.runs.get(id);
    frag.append(h('tr', { 'data-testid': 'run-row', 'data-run': id, 'data-status': r.status, tabindex: 0,
      class: id === state.openRun ? 'sel' : null, onclick: () => showRun(id), onkeydown: (e) => e.key === 'Enter' && showRun(id) },
    h('td', {}, String(id)), cell(r.command), h('td', {}, badge(r.status)), h('td', {}, fmtTime(r.started)),
    runDuration(r), h('td', {}, String(r.steps ?? '—')), h('td', { class: r.failed ? 'bad' : '' }, String(r.failed ?? '—')),
    cell(r.host ? `${r.host}${r.pid ? ` pid ${r.pid}` : ''}` : null)));
  }
  $('runs-table').tBodies[0].replaceChildren(frag);
  const running = [...state.runs.values()].filter((r) => r.status === 'running');
  $('live-banner').hidden = running.length === 0;
  $('live-banner').replaceChildren(...running.map((r) =>
    h('button', { class: 'link', onclick: () => showRun(r.id) }, `running: nixmox ${r.command} (run ${r.id})`)));
}

const showRun = (id) => { setTab('runs'); openRun(id); };
function closeRunStream() {
  if (state.runStream) state.runStream.close();
  state.runStream = null;
}

async function openRun(id) {
  id = Number(id);
  closeRunStream();
  state.openRun = id;
  state.steps = new Map();
  history.replaceState(null, '', `#runs/${id}`);
  $('run-detail').hidden = false;
  $('run-view').tBodies[0].replaceChildren();
  Object.assign($('run-view').dataset, { run: id, status: 'loading' });
  $('run-title').textContent = `Run ${id}`;
  $('run-links').replaceChildren('Logs: ', ...['events', 'terraform', 'ssh'].flatMap((k, i) =>
    [i ? ' · ' : '', h('a', { href: `/api/runs/${id}/log/${k}`, target: '_blank', rel: 'noopener' }, k)]));
  renderRuns();
  // A run started through the API may not be in the store for a moment.
  let d;
  for (let i = 0; ; i++) {
    try { d = await api(`/api/runs/${id}`); break; } catch (e) {
      if (e.status === 404 && i < 20 && state.openRun === id) { await sleep(500); continue; }
      if (state.openRun === id) showMessage(e.message);
      return;
    }
  }
  if (state.openRun !== id) return; // another run was opened meanwhile
  upsertRun(d.run);
  renderRunHead(d.run);
  for (const s of d.steps || []) if (!state.steps.has(s.step)) setStep(s); // events seen already are newer
  if (d.run.status === 'running') followRun(id);
}

async function reloadRun(id) {
  const d = await act(() => api(`/api/runs/${id}`));
  if (!d || state.openRun !== id) return;
  renderRunHead(d.run);
  state.steps = new Map();
  $('run-view').tBodies[0].replaceChildren();
  for (const s of d.steps || []) setStep(s);
}

function renderRunHead(run) {
  $('run-view').dataset.status = run.status;
  const dur = run.finished != null ? ` · ${fmtDuration(run.finished - run.started)}` : '';
  $('run-title').replaceChildren(`Run ${run.id}: nixmox ${run.command ?? ''} `, badge(run.status),
    h('span', { class: 'muted small' }, ` started ${fmtTime(run.started)}${dur}${run.host ? ` on ${run.host}` : ''}`));
}

// The run's own stream replays its steps from the start, then follows them.
function followRun(id) {
  const es = new EventSource(`/api/runs/${id}/events`);
  state.runStream = es;
  es.addEventListener('step', (m) => { const ev = parse(m.data); if (ev) stepEvent({ ...ev, run: id }); });
  es.addEventListener('end', (m) => {
    if (state.runStream === es) closeRunStream();
    const run = parse(m.data);
    if (run) upsertRun({ ...run, id });
  });
}

// A step event, from the run's stream or /api/live: both carry the same events,
// so each step keeps the highest seq it has shown and older ones are dropped.
function stepEvent(ev) {
  if (Number(ev.run) !== state.openRun || !ev.step) return;
  const cur = state.steps.get(ev.step);
  if (cur && cur.seq != null && ev.seq != null && ev.seq <= cur.seq) return;
  const started = ev.status === 'started' ? ev.at : cur ? cur.started : null;
  const finished = ev.status === 'started' ? null : ev.at;
  setStep({ step: ev.step, status: ev.status, detail: ev.detail, seq: ev.seq ?? null, started, finished,
    seconds: finished != null && started != null ? finished - started : null });
}

function setStep(s) {
  const running = s.status === 'started' && s.started != null && s.finished == null;
  const tr = h('tr', { 'data-testid': 'step-row', 'data-step': s.step, 'data-status': s.status },
    h('td', { class: 'mono trunc', title: s.step }, s.step), h('td', {}, badge(s.status)),
    running ? ticking(s.started) : h('td', {}, s.seconds == null ? '—' : fmtDuration(Number(s.seconds))),
    cell(s.detail || null, 'detail'));
  const cur = state.steps.get(s.step);
  if (cur) cur.tr.replaceWith(tr); else $('run-view').tBodies[0].append(tr);
  state.steps.set(s.step, { ...s, tr });
}

// ---- live stream, tabs, start --------------------------------------------------------

function connectLive() {
  const es = new EventSource('/api/live');
  let down = false;
  es.addEventListener('run', (m) => { const r = parse(m.data); if (r && r.id != null) upsertRun(r); });
  es.addEventListener('step', (m) => { const ev = parse(m.data); if (ev) stepEvent(ev); });
  // EventSource reconnects by itself; what happened meanwhile is read again.
  es.addEventListener('error', () => { down = true; });
  es.addEventListener('open', () => {
    if (down) { loadRuns().catch(() => {}); refreshSoon(); }
    down = false;
  });
}

const TABS = ['stack', 'plan', 'runs'];
function setTab(name) {
  if (!TABS.includes(name)) name = 'stack';
  for (const t of TABS) $(`view-${t}`).hidden = t !== name;
  for (const b of document.querySelectorAll('[data-tab]')) b.setAttribute('aria-selected', String(b.dataset.tab === name));
  if (!location.hash.startsWith(`#${name}`)) history.replaceState(null, '', `#${name}`);
}

async function init() {
  for (const b of document.querySelectorAll('[data-tab]')) b.addEventListener('click', () => setTab(b.dataset.tab));
  $('refresh-status').addEventListener('click', refreshStatus);
  $('plan-refresh').addEventListener('click', refreshPlan);
  $('apply').addEventListener('click', startApply);
  $('apply-confirm').addEventListener('click', confirmApply);
  $('apply-cancel').addEventListener('click', () => { $('apply-panel').hidden = true; });
  $('unlock').addEventListener('click', unlock);
  setInterval(() => {
    for (const e of document.querySelectorAll('[data-since]')) e.textContent = fmtDuration(now() - Number(e.dataset.since));
  }, 1000);

  const [tab, run] = location.hash.slice(1).split('/');
  setTab(tab);
  connectLive(); // before the first list, so no run is missed in between
  await act(loadSession);
  await Promise.all([act(loadServices), act(loadStack), act(loadRuns), act(loadPlan)]);
  if (tab === 'runs' && run && /^\d+$/.test(run)) openRun(run);
}

init();
