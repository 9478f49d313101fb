// The dependency graph of the page of `nixmox serve`, drawn as inline SVG
// from /api/stack's `graph` (loaded before app.js; called by it).
'use strict';

// ---- Stack: dependency graph ------------------------------------------------

// Layered layout: a node's layer is the longest path to it from a root via
// depends_on; applications start below the whole core (they all wait for it).
function drawGraph() {
  const root = $('graph');
  const g = state.stack && state.stack.graph;
  const nodes = new Map(((g && g.nodes) || []).map((n) => [n.name, n]));
  if (nodes.size === 0) { root.replaceChildren(); root.setAttribute('viewBox', '0 0 0 0'); return; }
  const deps = new Map([...nodes.keys()].map((n) => [n, []]));
  for (const e of g.edges || []) if (nodes.has(e.service) && nodes.has(e.depends_on)) deps.get(e.service).push(e.depends_on);

  const layer = new Map(), visiting = new Set();
  let coreTop = 0;
  const depth = (name) => {
    if (layer.has(name)) return layer.get(name);
    if (visiting.has(name)) return 0; // a cycle (validate refuses them) must not hang the page
    visiting.add(name);
    let d = nodes.get(name).kind === 'core' ? 0 : coreTop;
    for (const dep of deps.get(name)) d = Math.max(d, depth(dep) + 1);
    visiting.delete(name);
    layer.set(name, d);
    return d;
  };
  const cores = [...nodes.values()].filter((n) => n.kind === 'core');
  for (const n of cores) coreTop = Math.max(coreTop, depth(n.name) + 1);
  for (const n of nodes.keys()) depth(n);

  const compact = nodes.size > 60;
  const W = compact ? 96 : 140, H = compact ? 20 : 30, GX = compact ? 6 : 14, GY = compact ? 30 : 46;
  const maxChars = compact ? 14 : 19;
  const byLayer = [];
  for (const [n, l] of layer) (byLayer[l] = byLayer[l] || []).push(n);
  const perRow = Math.min(compact ? 14 : 8, Math.max(1, ...byLayer.filter(Boolean).map((l) => l.length)));
  const width = perRow * (W + GX) + GX;
  const pos = new Map(); // name → {x, y, order}
  let y = GX;
  for (const names of byLayer) {
    if (!names) continue;
    // Core first, then near the services they depend on (fewer crossings), then by name.
    const bary = (n) => {
      const xs = deps.get(n).map((d) => pos.get(d)).filter(Boolean).map((p) => p.x);
      return xs.length ? xs.reduce((a, b) => a + b) / xs.length : -1;
    };
    const core = (n) => (nodes.get(n).kind === 'core' ? 0 : 1);
    names.sort((a, b) => core(a) - core(b) || bary(a) - bary(b) || a.localeCompare(b, undefined, { numeric: true }));
    for (let i = 0; i < names.length; i += perRow) {
      const row = names.slice(i, i + perRow);
      const x0 = GX + ((perRow - row.length) * (W + GX)) / 2;
      row.forEach((n, j) => pos.set(n, { x: x0 + j * (W + GX), y }));
      y += H + GY / (i + perRow < names.length ? 2 : 1);
    }
  }
  const height = y - GY + GX;
  const live = new Map(state.services.map((s) => [s.name, s.live]));

  const edges = svg('g', { class: 'edges' });
  for (const [name, ds] of deps) {
    const to = pos.get(name);
    for (const d of ds) {
      const from = pos.get(d);
      const x1 = from.x + W / 2, y1 = from.y + H, x2 = to.x + W / 2, y2 = to.y, my = (y1 + y2) / 2;
      edges.append(svg('path', { d: `M${x1},${y1} C${x1},${my} ${x2},${my} ${x2},${y2}`, 'marker-end': 'url(#arrow)' },
        svg('title', {}, `${name} depends on ${d}`)));
    }
  }
  const boxes = svg('g', { class: 'nodes' });
  for (const [name, p] of pos) {
    const n = nodes.get(name), l = live.get(name);
    const up = l == null ? 'unknown' : l ? 'up' : 'down';
    const label = name.length > maxChars ? `${name.slice(0, maxChars - 1)}…` : name;
    const klass = `node ${n.kind === 'core' ? 'core' : 'app'} n-${up}${n.enabled === false ? ' disabled' : ''}`;
    boxes.append(svg('g', { class: klass, transform: `translate(${p.x},${p.y})`, 'data-node': name, onclick: () => focusService(name) },
      svg('title', {}, `${name} (${n.kind}) ${n.ip ?? ''} ${n.hostname ?? ''} — ${up}`),
      svg('rect', { width: W, height: H, rx: 4 }),
      svg('text', { x: W / 2, y: H / 2, 'dominant-baseline': 'central', 'text-anchor': 'middle' }, label)));
  }
  const defs = svg('defs', {}, svg('marker', { id: 'arrow', viewBox: '0 0 8 8', refX: 8, refY: 4,
    markerWidth: 6, markerHeight: 6, orient: 'auto' }, svg('path', { d: 'M0,0 L8,4 L0,8 z', class: 'arrowhead' })));
  root.classList.toggle('compact', compact);
  root.setAttribute('viewBox', `0 0 ${width} ${height}`);
  root.setAttribute('width', width);
  root.replaceChildren(defs, edges, boxes);
}

function focusService(name) {
  const row = document.getElementById(`svc-${name}`);
  if (!row) return;
  row.scrollIntoView({ block: 'center' });
  row.classList.remove('flash');
  void row.offsetWidth; // restart the animation
  row.classList.add('flash');
}
