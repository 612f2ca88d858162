// The inspector page: plain browser JavaScript, no build step, no dependency, nothing fetched
// from anywhere but this server. It lists sessions from the `hello` event of the server-sent
// event stream, keeps them current from `changes`, and shows the selected session's diagram
// (with its current state highlighted) and timeline.
'use strict';

const api = '/inspect/api';
const sessions = new Map();
let offset = 0; // server clock minus ours, so ages are right even if the clocks differ
let selected;
let lastSeq = 0;
const diagrams = new Map();
let renderQueued = false;

const $ = (sel) => document.querySelector(sel);

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') e.className = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

function age(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

function bytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

function clock(at) {
  const d = new Date(at);
  return `${d.toLocaleTimeString([], { hour12: false })}.${String(d.getMilliseconds()).padStart(3, '0')}`;
}

function stateText(s) {
  return s.status === 'finished' && s.outcome && s.outcome !== s.state ? `${s.state} (${s.outcome})` : s.state;
}

function stateClass(s) {
  if (s.status === 'live') return 'state live';
  return s.outcome === 'closed' ? 'state' : 'state failed';
}

function queueRender() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => {
    renderQueued = false;
    renderSessions();
  });
}

function renderSessions() {
  const now = Date.now() + offset;
  const list = [...sessions.values()].sort((a, b) => b.startedAt - a.startedAt);
  const rows = list.map((s) => {
    const relayed = s.bytes ? `A→B ${bytes(s.bytes.aToB)} · B→A ${bytes(s.bytes.bToA)}` : '—';
    const tr = el(
      'tr',
      { 'data-id': s.id, 'data-state': s.state, class: `${s.status}${s.id === selected ? ' selected' : ''}` },
      el('td', { class: 'id', title: s.id }, s.id.length > 13 ? `${s.id.slice(0, 8)}…` : s.id),
      el('td', {}, s.parties),
      el('td', {}, el('span', { class: stateClass(s) }, stateText(s))),
      // A live session's age; a finished one's lifetime and how long ago it ended.
      el('td', {}, s.finishedAt === undefined ? age(now - s.startedAt) : `lasted ${age(s.finishedAt - s.startedAt)}, ended ${age(now - s.finishedAt)} ago`),
      el('td', {}, relayed),
    );
    tr.addEventListener('click', () => select(s.id));
    return tr;
  });
  $('#sessions tbody').replaceChildren(...rows);
  $('#empty').hidden = rows.length > 0;
  const live = list.filter((s) => s.status === 'live').length;
  $('#counts').textContent = `${live} live, ${list.length - live} finished`;
}

async function loadDiagram(machine) {
  if (!diagrams.has(machine)) {
    const res = await fetch(`${api}/machines/${encodeURIComponent(machine)}.svg`);
    diagrams.set(machine, res.ok ? await res.text() : '');
  }
  return diagrams.get(machine);
}

/** `holding.spliced` → the groups of `holding` and `holding.spliced`. */
function highlight(state) {
  const root = $('#diagram');
  for (const g of root.querySelectorAll('g.state.current')) g.classList.remove('current');
  for (const region of state.split(', ')) {
    const parts = region.split('.');
    for (let i = 1; i <= parts.length; i++) {
      const g = root.querySelector(`g.state[data-path="${CSS.escape(parts.slice(0, i).join('.'))}"]`);
      if (g) g.classList.add('current');
    }
  }
}

function timelineRow(e) {
  const detail = e.detail ? JSON.stringify(e.detail) : '';
  return el(
    'tr',
    { 'data-seq': String(e.seq), 'data-event': e.event },
    el('td', {}, clock(e.at)),
    el('td', { class: 'mono' }, e.event),
    el('td', { class: 'mono' }, e.from ? (e.from === e.to ? `${e.from} (stays)` : `${e.from} → ${e.to}`) : `→ ${e.to}`),
    el('td', { class: 'detail mono' }, detail),
  );
}

function showSummary(s) {
  $('#selected-state').textContent = stateText(s);
  $('#selected-state').className = stateClass(s);
  $('#detail').dataset.state = s.state;
  highlight(s.state);
}

async function select(id) {
  selected = id;
  lastSeq = 0;
  if (location.hash.slice(1) !== id) history.replaceState(null, '', `#${encodeURIComponent(id)}`);
  queueRender();
  const res = await fetch(`${api}/sessions/${encodeURIComponent(id)}`);
  if (selected !== id) return;
  const section = $('#detail');
  section.hidden = false;
  $('#selected-id').textContent = id;
  if (!res.ok) {
    $('#diagram').replaceChildren(el('p', { class: 'empty' }, 'This session is no longer kept.'));
    $('#timeline tbody').replaceChildren();
    $('#context').textContent = '';
    return;
  }
  const detail = await res.json();
  const svg = await loadDiagram(detail.summary.machine);
  if (selected !== id) return;
  const doc = new DOMParser().parseFromString(svg, 'image/svg+xml');
  $('#diagram').replaceChildren(document.importNode(doc.documentElement, true));
  $('#timeline tbody').replaceChildren(...detail.timeline.map(timelineRow));
  lastSeq = detail.timeline.length ? detail.timeline[detail.timeline.length - 1].seq : 0;
  const dropped = $('#dropped');
  dropped.hidden = detail.dropped === 0;
  dropped.textContent = `${detail.dropped} earlier events not kept`;
  showContext(detail.context, detail.summary);
  showSummary(detail.summary);
}

/**
 * The machine's context holds what the machine decided on (byte totals only once the splice
 * ended); the bytes relayed so far are the splicer's live counters, shown beside it so the two
 * never seem to disagree.
 */
function showContext(context, summary) {
  $('#context').textContent = JSON.stringify(context, null, 2);
  const note = $('#context-note');
  const live = summary.bytes && summary.status === 'live';
  note.hidden = !live;
  if (live) note.textContent = `Relayed so far: A→B ${bytes(summary.bytes.aToB)} · B→A ${bytes(summary.bytes.bToA)} (live counters; the machine's context records the totals when the splice ends).`;
}

let contextTimer;
function refreshContext(id) {
  clearTimeout(contextTimer);
  contextTimer = setTimeout(async () => {
    const res = await fetch(`${api}/sessions/${encodeURIComponent(id)}`);
    if (res.ok && selected === id) {
      const detail = await res.json();
      showContext(detail.context, detail.summary);
    }
  }, 300);
}

function applyChanges(changes) {
  for (const { summary, entries } of changes) {
    sessions.set(summary.id, summary);
    if (summary.id !== selected || $('#detail').hidden) continue;
    const fresh = entries.filter((e) => e.seq > lastSeq);
    if (fresh.length) {
      $('#timeline tbody').append(...fresh.map(timelineRow));
      lastSeq = fresh[fresh.length - 1].seq;
    }
    showSummary(summary);
    refreshContext(summary.id);
  }
  queueRender();
}

function connect() {
  const status = $('#connection');
  const events = new EventSource(`${api}/events`);
  events.addEventListener('hello', (m) => {
    const hello = JSON.parse(m.data);
    offset = hello.now - Date.now();
    sessions.clear();
    for (const s of hello.sessions) sessions.set(s.id, s);
    status.dataset.state = 'live';
    status.textContent = 'live';
    queueRender();
    const wanted = decodeURIComponent(location.hash.slice(1));
    if (wanted && !selected) void select(wanted);
    else if (selected) void select(selected);
  });
  events.addEventListener('changes', (m) => {
    const batch = JSON.parse(m.data);
    offset = batch.now - Date.now();
    applyChanges(batch.changes);
  });
  events.addEventListener('error', () => {
    // EventSource reconnects by itself; `hello` then brings the list up to date.
    status.dataset.state = 'lost';
    status.textContent = 'connection lost, retrying…';
  });
}

setInterval(queueRender, 1000);
connect();
