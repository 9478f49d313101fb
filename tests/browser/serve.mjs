// Drives the page of `nixmox serve` in headless Chromium, as a person would:
// the stack is listed, a run started in a terminal shows up live, actions are
// refused without a login, the login goes through the lab's IdP, and an apply
// started from the page streams its steps.
//
// Run by a Rust test as `node tests/browser/serve.mjs` with:
//   PLAYWRIGHT_CORE  directory of the playwright-core package
//   CHROMIUM         the browser (default /usr/bin/chromium)
//   HOST_RULES       optional --host-resolver-rules (the lab's auth domain → its proxy)
//   SERVE_URL        e.g. http://127.0.0.1:8470
//   NIXMOX_BIN, NIXMOX_APPLY_ARGS (JSON array) for the terminal apply
//   LAB_USER, LAB_PASSWORD (never printed)
//   SERVICES         comma list of the services the page must list
//   SCREENSHOT_DIR   optional: where the screenshots go
//   BEFORE_PAGE_APPLY optional JSON argv run before the page's apply (a change for it to deploy)
// Prints `ok <step>` per step; on failure `FAIL <step>: <why>` and exits 1.

import { createRequire } from 'node:module';
import { spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';

const require = createRequire(import.meta.url);
const env = process.env;
function need(name) {
  if (!env[name]) throw new Error(`environment variable ${name} is not set`);
  return env[name];
}

const STEP_MS = 240_000; // no step takes longer than this
const SERVE_URL = need('SERVE_URL').replace(/\/+$/, '');
const SERVE_ORIGIN = new URL(SERVE_URL).origin;
const SERVICES = (env.SERVICES || '').split(',').map((s) => s.trim()).filter(Boolean);
const sel = (id) => `[data-testid="${id}"]`;

let step = '(setup)';
let deadline = 0;
// Time left in the current step, capped at `ms`.
const left = (ms = STEP_MS) => Math.max(1, Math.min(ms, deadline - Date.now()));

async function runStep(name, fn) {
  step = name;
  deadline = Date.now() + STEP_MS;
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`took longer than ${STEP_MS / 1000} s`)), STEP_MS + 2000);
  });
  try {
    await Promise.race([fn(), timeout]);
  } finally {
    clearTimeout(timer);
  }
  console.log(`ok ${name}`);
}

async function shot(page, file) {
  if (!env.SCREENSHOT_DIR) return;
  await page.screenshot({ path: join(env.SCREENSHOT_DIR, file), fullPage: true }).catch((e) => {
    console.error(`(screenshot ${file} failed: ${e.message})`);
  });
}

// Polls `fn` until it returns a truthy value; `what` names the wait in the error.
async function until(what, ms, fn, every = 250) {
  const total = left(ms), end = Date.now() + total;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      if (e.final) throw e;
      last = e; // e.g. the page navigating in between
    }
    if (Date.now() > end) throw new Error(`timed out after ${Math.round(total / 1000)} s waiting for ${what}${last ? ` (last error: ${last.message})` : ''}`);
    await new Promise((r) => setTimeout(r, every));
  }
}

// A run row's status, or null when it is not listed.
const runStatus = (page, id) =>
  page.evaluate((id) => document.querySelector(`[data-testid="run-row"][data-run="${id}"]`)?.dataset.status ?? null, id);

// Waits until the page's run `id` ended with "ok" (a failed run fails the step).
async function runEndsOk(page, id) {
  const status = await until(`run ${id} to finish`, STEP_MS, async () => {
    const s = await runStatus(page, id);
    return s && s !== 'running' ? s : null;
  }, 500);
  if (status !== 'ok') {
    const failed = await page.$$eval(`${sel('step-row')}[data-status="failed"]`, (rows) => rows.map((r) => r.innerText.replace(/\s+/g, ' ')).join(' | '));
    throw new Error(`run ${id} ended with status ${status}${failed ? `; failed steps: ${failed}` : ''}`);
  }
}

// Submits the first form holding `selector`, with its submit button when there is one
// (a consent form may name the choice on the button). Returns whether there was one.
function submitForm(page, selector) {
  return page.evaluate((selector) => {
    const field = document.querySelector(selector);
    const form = field && (field.form || field.closest('form') || (field.tagName === 'FORM' ? field : null));
    if (!form) return false;
    const buttons = [...form.querySelectorAll('button:not([type=button]):not([type=reset]), input[type=submit]')];
    const yes = buttons.find((b) => /allow|approve|accept|confirm|consent|continue|yes|log ?in|sign ?in/i.test(`${b.name} ${b.value} ${b.textContent}`));
    form.requestSubmit(yes || buttons[0] || null);
    return true;
  }, selector);
}

async function main() {
  const { chromium } = require(need('PLAYWRIGHT_CORE'));
  const args = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'];
  if (env.HOST_RULES) args.push(`--host-resolver-rules=${env.HOST_RULES}`);
  const browser = await chromium.launch({ executablePath: env.CHROMIUM || '/usr/bin/chromium', headless: true, args });
  let child = null;
  try {
    // The lab's IdP serves a certificate from the lab's own CA, which this
    // browser profile does not trust; the test is about the page, not the CA.
    const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1400, height: 1000 } });
    const page = await context.newPage();
    page.setDefaultTimeout(30_000);

    await runStep('page-lists-services', async () => {
      await page.goto(SERVE_URL, { timeout: left(60_000) });
      let missing = SERVICES;
      await until('every service in SERVICES to have a row', 60_000, async () => {
        const names = new Set(await page.$$eval(`${sel('services-table')} ${sel('service-row')}`, (rows) => rows.map((r) => r.dataset.service)));
        missing = SERVICES.filter((s) => !names.has(s));
        return missing.length === 0;
      }).catch((e) => { throw new Error(`${e.message}; missing: ${missing.join(', ')}`); });
      await page.waitForSelector(`svg${sel('graph')}`, { state: 'attached', timeout: left(10_000) });
      const fcp = await until('first-contentful-paint', 10_000, () => page.evaluate(() =>
        performance.getEntriesByName('first-contentful-paint')[0]?.startTime));
      console.log(`fcp_ms ${Math.round(fcp)}`);
      await shot(page, 'stack.png');
    });

    await runStep('terminal-apply-appears-live', async () => {
      await page.click(sel('tab-runs'));
      const before = new Set(await page.$$eval(sel('run-row'), (rows) => rows.map((r) => r.dataset.run)));
      const output = [];
      let exited = null;
      child = spawn(need('NIXMOX_BIN'), JSON.parse(need('NIXMOX_APPLY_ARGS')), { stdio: ['ignore', 'pipe', 'pipe'] });
      child.stdout.on('data', (d) => output.push(d));
      child.stderr.on('data', (d) => output.push(d));
      const done = new Promise((resolve) => {
        child.on('error', (e) => { exited = `could not start: ${e.message}`; resolve(); });
        child.on('exit', (code, signal) => { exited = code ?? signal; resolve(); });
      });
      const childFailed = () => new Error(`${env.NIXMOX_BIN} exited with ${exited}; its output:\n${Buffer.concat(output).toString()}`);
      try {
        const id = await until('a new running run in the runs table', 60_000, async () => {
          if (exited !== null && exited !== 0) throw Object.assign(childFailed(), { final: true });
          return page.evaluate((before) => [...document.querySelectorAll('[data-testid="run-row"][data-status="running"]')]
            .map((r) => r.dataset.run).find((id) => !before.includes(id)), [...before]);
        });
        await page.click(`${sel('run-row')}[data-run="${id}"]`);
        const seen = await until(`a step of run ${id} on the page`, STEP_MS, async () => {
          const rows = await page.$$(`${sel('run-view')}[data-run="${id}"] ${sel('step-row')}`);
          if (rows.length > 0) return 'step';
          const s = await runStatus(page, id);
          return s && s !== 'running' ? 'end' : null;
        });
        if (seen === 'step') await shot(page, 'run-live.png');
        await runEndsOk(page, id);
        await Promise.race([done, new Promise((r) => setTimeout(r, left(60_000)))]);
        if (exited !== 0) throw childFailed();
      } catch (e) {
        if (exited === null) child.kill();
        if (output.length && !/its output/.test(e.message)) e.message += `\n${env.NIXMOX_BIN} output so far:\n${Buffer.concat(output).toString()}`;
        throw e;
      }
      child = null;
    });

    await runStep('action-without-login-refused', async () => {
      await page.click(sel('apply'));
      await page.waitForSelector(sel('apply-refused'), { state: 'visible', timeout: left(10_000) });
      const status = await page.evaluate(() => fetch('/api/apply', {
        method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ confirm: true }),
      }).then((r) => r.status));
      if (status !== 401) throw new Error(`POST /api/apply without a login answered ${status}, not 401`);
    });

    await runStep('login-through-idp', async () => {
      const user = need('LAB_USER'), password = need('LAB_PASSWORD');
      await page.click(sel('login'));
      // The IdP's pages are plain forms: the login (user and password, maybe on
      // two pages), then perhaps a consent form posting to …/confirm.
      let tries = 0;
      const name = await until('the user to be logged in on the page', 60_000, async () => {
        const url = new URL(page.url());
        if (url.origin === SERVE_ORIGIN) {
          const shown = await page.$(sel('user'));
          return shown ? (await shown.textContent()).trim() : null;
        }
        if (await page.$('input[name=username]:visible')) {
          if (++tries > 2) {
            const text = (await page.textContent('body').catch(() => '')).replace(/\s+/g, ' ').slice(0, 300);
            throw Object.assign(new Error(`the IdP asked for the login again: ${text}`), { final: true });
          }
          await page.fill('input[name=username]', user);
          if (await page.$('input[name=password]:visible')) await page.fill('input[name=password]', password);
          await submitForm(page, 'input[name=username]');
          await page.waitForLoadState('load', { timeout: left(15_000) }).catch(() => {});
        } else if (await page.$('input[name=password]:visible')) {
          await page.fill('input[name=password]', password);
          await submitForm(page, 'input[name=password]');
          await page.waitForLoadState('load', { timeout: left(15_000) }).catch(() => {});
        } else if (await page.evaluate(() => [...document.forms].some((f) => new URL(f.action, location.href).pathname.endsWith('/confirm')))) {
          await page.evaluate(() => { document.querySelectorAll('form').forEach((f, i) => { if (new URL(f.action, location.href).pathname.endsWith('/confirm')) f.setAttribute('data-consent', String(i)); }); });
          await submitForm(page, 'form[data-consent]');
          await page.waitForLoadState('load', { timeout: left(15_000) }).catch(() => {});
        }
        return null;
      }, 500).catch((e) => { throw new Error(`${e.message}; the browser is at ${page.url().split('?')[0]}`); });
      if (name !== user) throw new Error(`the page shows "${name}" logged in, not ${user}`);
      await shot(page, 'login.png');
    });

    await runStep('apply-from-page-streams', async () => {
      // A change for this apply to deploy (BEFORE_PAGE_APPLY: a JSON argv), so
      // that its steps take long enough to be seen arriving.
      if (env.BEFORE_PAGE_APPLY) {
        const [cmd, ...rest] = JSON.parse(env.BEFORE_PAGE_APPLY);
        const r = spawnSync(cmd, rest, { encoding: 'utf8', timeout: 30_000 });
        if (r.status !== 0) throw new Error(`BEFORE_PAGE_APPLY failed: ${r.stderr || r.error}`);
      }
      await page.click(sel('apply'));
      await page.waitForSelector(sel('apply-confirm-panel'), { state: 'visible', timeout: left(120_000) })
        .catch(async (e) => {
          const msg = await page.$eval(sel('message'), (m) => (m.hidden ? '' : m.textContent)).catch(() => '');
          const refused = await page.$eval(sel('apply-refused'), (m) => (m.hidden ? '' : m.textContent)).catch(() => '');
          throw new Error(`no confirmation panel: ${msg || refused || e.message}`);
        });
      await shot(page, 'apply-confirm.png');
      // Counts the step rows put on the page while the open run still runs:
      // rows that arrive while it runs prove the steps streamed.
      await page.evaluate(() => {
        window.__streamed = new Set();
        new MutationObserver((muts) => {
          const view = document.querySelector('[data-testid="run-view"]');
          if (!view || view.dataset.status !== 'running') return;
          for (const m of muts) for (const n of m.addedNodes) {
            if (n.nodeType === 1 && n.matches('[data-testid="step-row"]')) window.__streamed.add(n.dataset.step);
          }
        }).observe(document.body, { childList: true, subtree: true });
      });
      const before = new Set(await page.$$eval(sel('run-row'), (rows) => rows.map((r) => r.dataset.run)));
      const message = () => page.$eval(sel('message'), (m) => (m.hidden ? '' : m.textContent)).catch(() => '');
      const oldMessage = await message();
      await page.click(sel('apply-confirm'));
      const id = await until('the run view of the new run', 60_000, async () => {
        const run = await page.$eval(sel('run-view'), (v) => v.dataset.run).catch(() => null);
        if (run && !before.has(run)) return run;
        const msg = await message();
        if (msg && msg !== oldMessage) throw Object.assign(new Error(`the page says: ${msg}`), { final: true });
        const refused = await page.$eval(sel('apply-refused'), (m) => (m.hidden ? '' : m.textContent)).catch(() => '');
        if (refused) throw Object.assign(new Error(`the page refused: ${refused}`), { final: true });
        return null;
      });
      await until(`run ${id} in the runs table`, 30_000, () => runStatus(page, id));
      await runEndsOk(page, id);
      const streamed = await page.evaluate(() => window.__streamed.size);
      console.log(`streamed_steps ${streamed}`);
      if (streamed === 0) throw new Error(`no step row of run ${id} appeared while it ran`);
      await shot(page, 'run-done.png');
    });
  } finally {
    if (child && child.exitCode === null) child.kill();
    await browser.close().catch(() => {});
  }
}

main().then(() => process.exit(0), (e) => {
  console.log(`FAIL ${step}: ${e && e.message ? e.message : e}`);
  process.exit(1);
});
