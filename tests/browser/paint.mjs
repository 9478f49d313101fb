// How fast the page of `nixmox serve` paints in Debian's headless Chromium:
// first contentful paint, and the time until every service has its row,
// against the same browser loading serve's smallest answer (`/healthz`) in
// the same run. Used by benches/serve_answer.rs.
//
// Env: PLAYWRIGHT_CORE, CHROMIUM (default /usr/bin/chromium), SERVE_URL,
// SERVICES (the number of rows to wait for), RUNS (default 5).
// Prints one line of JSON: {"floor_ms", "fcp_ms", "rows_ms"} (medians).

import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { chromium } = require(process.env.PLAYWRIGHT_CORE);
const url = process.env.SERVE_URL.replace(/\/+$/, '');
const want = Number(process.env.SERVICES);
const runs = Number(process.env.RUNS || 5);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
try {
  const floor = [], fcp = [], rows = [];
  for (let i = 0; i < runs; i++) {
    // A fresh context each time: nothing cached.
    const context = await browser.newContext();
    const page = await context.newPage();
    let t = Date.now();
    await page.goto(`${url}/healthz`, { timeout: 30_000 });
    floor.push(Date.now() - t);
    t = Date.now();
    await page.goto(url, { timeout: 30_000 });
    await page.waitForFunction((n) => document.querySelectorAll('[data-testid="service-row"]').length >= n,
      want, { timeout: 30_000, polling: 'raf' });
    rows.push(Date.now() - t);
    fcp.push(await page.evaluate(() => performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? -1));
    await context.close();
  }
  console.log(JSON.stringify({ floor_ms: median(floor), fcp_ms: Math.round(median(fcp)), rows_ms: median(rows) }));
} finally {
  await browser.close();
}
