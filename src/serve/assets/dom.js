// Small DOM and formatting helpers of the page of `nixmox serve` (loaded
// before app.js). Nodes are built with createElement and text nodes only:
// no value from the API ever becomes markup.
'use strict';

// ---- small helpers -------------------------------------------------------

const $ = (id) => document.getElementById(id);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// h('td', {class: 'x', title: t}, child, …): children are nodes or text.
function h(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  setAttrs(e, attrs);
  for (const k of kids.flat()) if (k != null && k !== false) e.append(k instanceof Node ? k : String(k));
  return e;
}
function svg(tag, attrs, ...kids) {
  const e = document.createElementNS('http://www.w3.org/2000/svg', tag);
  setAttrs(e, attrs);
  for (const k of kids) if (k != null) e.append(k instanceof Node ? k : String(k));
  return e;
}
function setAttrs(e, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k === 'text') e.textContent = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
}

const now = () => Date.now() / 1000;
const fmtTime = (secs) => (secs == null ? '—'
  : new Date(secs * 1000).toLocaleString(undefined, { dateStyle: 'short', timeStyle: 'medium' }));
function fmtDuration(sec) {
  if (sec == null || !isFinite(sec)) return '—';
  sec = Math.max(0, sec);
  if (sec < 60) return `${sec.toFixed(sec < 10 ? 1 : 0)} s`;
  const m = Math.floor(sec / 60);
  if (m < 60) return `${m} m ${Math.round(sec % 60)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} m`;
}
function fmtBytes(n) {
  const i = Math.min(3, Math.floor(Math.log2(Math.abs(n) || 1) / 10));
  return `${n < 0 ? '−' : '+'}${(Math.abs(n) / 1024 ** i).toFixed(i ? 1 : 0)} ${['B', 'KiB', 'MiB', 'GiB'][i]}`;
}
// "/nix/store/<hash>-<name>" → "<hash prefix>…-<name>"
function shortStore(p) {
  if (!p) return '—';
  const base = String(p).replace(/^\/nix\/store\//, '');
  const dash = base.indexOf('-');
  return dash > 8 ? `${base.slice(0, 8)}…${base.slice(dash)}` : base;
}
// A class name from an API value: only [a-z0-9-] survives.
const cls = (v) => String(v ?? 'unknown').toLowerCase().replace(/[^a-z0-9-]/g, '');
const badge = (status) => h('span', { class: `badge s-${cls(status)}`, text: status ?? '?' });
// Text cell, truncated by CSS, with the full value in its title.
const cell = (text, klass = '') =>
  h('td', { class: `trunc ${klass}`, title: text == null ? null : String(text) }, text == null || text === '' ? '—' : String(text));
const parse = (data) => { try { return JSON.parse(data); } catch { return null; } };
// Only a path on this site or an http(s) URL may become a link.
const safeHref = (u, fallback) => (/^\/(?!\/)|^https?:\/\//i.test(String(u ?? '')) ? String(u) : fallback);
