// llm-proxy dashboard: reads /v1/status and /v1/usage/{series,stats,recent} every few seconds
// (paused while the tab is hidden) and draws them with hand-written SVG. Every string from the
// server (model names, session ids, errors from clients and upstreams) enters the DOM as a
// text node or an attribute value set through the DOM API, never as markup.
'use strict';

(function () {
  const REFRESH_MS = 5000;
  const ACTIVE_WINDOW_S = 15 * 60;
  const RECENT_LIMIT = 50;
  const MAX_GROUPS = 8;
  const SVG_NS = 'http://www.w3.org/2000/svg';
  const KEY_STORAGE = 'llm-proxy-dashboard-key';
  const PALETTE = [
    '#1f6feb', '#e36209', '#2da44e', '#bf3989', '#8250df',
    '#0e8a8a', '#cf222e', '#9a6700', '#57606a',
  ];
  const OTHER_COLOR = '#8c959f';

  const $ = (id) => document.getElementById(id);
  const state = {
    key: readKey(),
    timer: null,
    inflight: false,
    again: false,
    refreshes: 0,
    colors: new Map(),
  };

  // ---- DOM helpers (text only) ------------------------------------------------------------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    setAttrs(node, attrs);
    append(node, children);
    return node;
  }

  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG_NS, tag);
    setAttrs(node, attrs);
    append(node, children);
    return node;
  }

  function setAttrs(node, attrs) {
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === 'class') node.setAttribute('class', String(value));
      else node.setAttribute(name, String(value));
    }
  }

  function append(node, children) {
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
  }

  function clear(node) {
    node.replaceChildren();
  }

  // ---- formatting -------------------------------------------------------------------------

  function compact(n) {
    const v = Number(n) || 0;
    if (Math.abs(v) >= 1e9) return (v / 1e9).toFixed(1) + 'G';
    if (Math.abs(v) >= 1e6) return (v / 1e6).toFixed(1) + 'M';
    if (Math.abs(v) >= 1e4) return (v / 1e3).toFixed(1) + 'k';
    return String(Math.round(v));
  }

  function dollars(v) {
    if (v === null || v === undefined) return '–';
    const n = Number(v);
    if (n === 0) return '$0';
    if (n < 0.01) return '$' + n.toPrecision(2);
    return '$' + n.toFixed(2);
  }

  function millis(v) {
    if (v === null || v === undefined) return '–';
    const n = Number(v);
    return n >= 10000 ? (n / 1000).toFixed(1) + ' s' : Math.round(n) + ' ms';
  }

  function pad(n) {
    return String(n).padStart(2, '0');
  }

  function clock(ms, withSeconds) {
    const d = new Date(ms);
    const hm = pad(d.getHours()) + ':' + pad(d.getMinutes());
    return withSeconds ? hm + ':' + pad(d.getSeconds()) : hm;
  }

  function bucketLabel(ms, bucket) {
    const d = new Date(ms);
    if (bucket === 'day') return pad(d.getMonth() + 1) + '-' + pad(d.getDate());
    if (bucket === 'hour' && d.getHours() === 0) return pad(d.getMonth() + 1) + '-' + pad(d.getDate());
    return clock(ms, false);
  }

  function short(text, max) {
    const s = String(text);
    return s.length > max ? s.slice(0, max - 1) + '…' : s;
  }

  function groupName(key, by) {
    return key === null || key === undefined ? `(no ${by})` : String(key);
  }

  function colorOf(name) {
    if (name === 'other') return OTHER_COLOR;
    if (!state.colors.has(name)) {
      state.colors.set(name, PALETTE[state.colors.size % PALETTE.length]);
    }
    return state.colors.get(name);
  }

  // ---- data -------------------------------------------------------------------------------

  class AuthNeeded extends Error {}

  function readKey() {
    const hash = window.location.hash;
    if (hash.startsWith('#key=')) {
      const key = decodeURIComponent(hash.slice(5));
      // The fragment never reaches a server; drop it from the address bar and history too.
      window.history.replaceState(null, '', window.location.pathname + window.location.search);
      try { window.sessionStorage.setItem(KEY_STORAGE, key); } catch (_) { /* storage off */ }
      return key;
    }
    try { return window.sessionStorage.getItem(KEY_STORAGE); } catch (_) { return null; }
  }

  async function getJson(path) {
    const headers = state.key ? { Authorization: 'Bearer ' + state.key } : {};
    const resp = await fetch(path, { headers, cache: 'no-store', credentials: 'omit' });
    if (resp.status === 401) throw new AuthNeeded('a client key is needed');
    if (!resp.ok) {
      let message = resp.statusText;
      try {
        const body = await resp.json();
        if (body && body.error && body.error.message) message = body.error.message;
      } catch (_) { /* not JSON */ }
      throw new Error(path.split('?')[0] + ': ' + resp.status + ' ' + message);
    }
    return resp.json();
  }

  function query(params) {
    return Object.entries(params)
      .map(([k, v]) => encodeURIComponent(k) + '=' + encodeURIComponent(String(v)))
      .join('&');
  }

  // ---- charts -----------------------------------------------------------------------------

  // Turns the series answer into dense buckets and at most MAX_GROUPS groups (the rest summed
  // as "other"), biggest first.
  function shape(series) {
    const width = series.bucket_ms;
    const start = series.start_ms;
    const count = Math.max(1, Math.ceil((series.end_ms - start) / width));
    const groups = series.series.map((s) => {
      const values = { requests: new Array(count).fill(0), tokens: new Array(count).fill(0), cost: new Array(count).fill(0) };
      let errors = 0;
      for (const p of s.points) {
        const i = Math.floor((p.t - start) / width);
        if (i < 0 || i >= count) continue;
        values.requests[i] += p.requests;
        values.tokens[i] += p.total_tokens;
        values.cost[i] += p.cost_usd;
        errors += p.errors;
      }
      const total = values.requests.reduce((a, b) => a + b, 0);
      return { name: groupName(s[series.by], series.by), values, total, errors };
    });
    groups.sort((a, b) => b.total - a.total || a.name.localeCompare(b.name));
    if (groups.length > MAX_GROUPS) {
      const rest = groups.splice(MAX_GROUPS - 1);
      const other = { name: 'other', values: { requests: [], tokens: [], cost: [] }, total: 0, errors: 0 };
      for (const metric of Object.keys(other.values)) {
        other.values[metric] = new Array(count).fill(0);
        for (const g of rest) g.values[metric].forEach((v, i) => { other.values[metric][i] += v; });
      }
      for (const g of rest) { other.total += g.total; other.errors += g.errors; }
      groups.push(other);
    }
    const buckets = Array.from({ length: count }, (_, i) => start + i * width);
    return { buckets, groups, bucket: series.bucket };
  }

  function niceMax(v) {
    if (v <= 0) return 1;
    const exp = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) {
      if (m * exp >= v) return m * exp;
    }
    return 10 * exp;
  }

  // A stacked bar chart of one metric; `format` renders axis values.
  function barChart(container, shaped, metric, format) {
    const W = 480;
    const H = 190;
    const pad = { left: 58, right: 8, top: 8, bottom: 22 };
    const plotW = W - pad.left - pad.right;
    const plotH = H - pad.top - pad.bottom;
    const n = shaped.buckets.length;
    const sums = shaped.buckets.map((_, i) => shaped.groups.reduce((a, g) => a + g.values[metric][i], 0));
    const max = niceMax(Math.max(0, ...sums));
    const root = svg('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'data-metric': metric });
    root.append(svg('title', {}, container.parentElement.querySelector('figcaption').textContent));

    for (const f of [0, 0.5, 1]) {
      const y = pad.top + plotH - f * plotH;
      root.append(svg('line', { class: f === 0 ? 'axis' : 'grid', x1: pad.left, x2: W - pad.right, y1: y, y2: y }));
      root.append(svg('text', { x: pad.left - 4, y: y + 3, 'text-anchor': 'end' }, format(max * f)));
    }
    const step = plotW / n;
    const labelEvery = Math.max(1, Math.ceil(n / 6));
    for (let i = 0; i < n; i += labelEvery) {
      root.append(svg('text', { x: pad.left + i * step + step / 2, y: H - 6, 'text-anchor': 'middle' },
        bucketLabel(shaped.buckets[i], shaped.bucket)));
    }
    let bars = 0;
    const barW = Math.max(1, step * 0.8);
    for (let i = 0; i < n; i++) {
      let y = pad.top + plotH;
      for (const g of shaped.groups) {
        const v = g.values[metric][i];
        if (!(v > 0)) continue;
        const h = Math.max(1, (v / max) * plotH);
        y -= h;
        const rect = svg('rect', {
          class: 'bar', x: pad.left + i * step + (step - barW) / 2, y, width: barW, height: h,
          fill: colorOf(g.name), 'data-group': g.name,
        });
        rect.append(svg('title', {}, `${g.name} · ${bucketLabel(shaped.buckets[i], shaped.bucket)}: ${format(v)}`));
        root.append(rect);
        bars++;
      }
    }
    if (bars === 0) {
      root.append(svg('text', { class: 'empty', x: pad.left + plotW / 2, y: pad.top + plotH / 2, 'text-anchor': 'middle' },
        'no data in this range'));
    }
    container.replaceChildren(root);
  }

  function legend(shaped) {
    const node = $('legend');
    clear(node);
    for (const g of shaped.groups) {
      node.append(el('span', { class: 'item', 'data-group': g.name },
        svg('svg', { viewBox: '0 0 12 12', 'aria-hidden': 'true' }, svg('rect', { width: 12, height: 12, rx: 2, fill: colorOf(g.name) })),
        g.name,
        el('span', { class: 'muted' }, `${compact(g.total)} req`)));
    }
    if (shaped.groups.length === 0) node.append(el('span', { class: 'muted' }, 'no requests in this range'));
  }

  // ---- tables -----------------------------------------------------------------------------

  function fillRows(table, rows, columns, emptyText) {
    const body = table.tBodies[0];
    clear(body);
    if (rows.length === 0) {
      body.append(el('tr', { class: 'placeholder' }, el('td', { class: 'empty', colspan: columns }, emptyText)));
      return;
    }
    for (const row of rows) body.append(row);
  }

  function breakerCell(breaker, available) {
    if (!available) return [el('span', { class: 'pill bad' }, 'unavailable'), ''];
    if (!breaker) return [el('span', { class: 'pill muted' }, 'none'), ''];
    const s = String(breaker.state);
    const cls = s === 'closed' ? 'ok' : s === 'open' ? 'bad' : 'warn';
    let detail = '';
    if (s === 'closed') detail = `${breaker.consecutive_failures || 0} consecutive failures`;
    else if (s === 'open') detail = `retry in ${Math.ceil(Number(breaker.retry_in_seconds) || 0)} s`;
    else if (s === 'half_open') detail = `${breaker.trials_in_flight || 0} trial(s) in flight`;
    return [el('span', { class: 'pill ' + cls }, s.replace('_', '-')), detail];
  }

  function renderBackends(status) {
    const rows = status.backends.map((b) => {
      const [pill, detail] = breakerCell(b.circuit_breaker, b.available);
      const isDefault = status.default_backend === b.instance;
      return el('tr', { 'data-instance': b.instance },
        el('td', { class: 'mono' }, b.instance, isDefault ? el('span', { class: 'muted' }, ' default') : null),
        el('td', {}, b.backend_type),
        el('td', {}, pill),
        el('td', { class: 'muted' }, detail));
    });
    fillRows($('backends'), rows, 4, 'no backend configured');
  }

  function renderSessions(active, status) {
    const sessions = active.by_session.filter((s) => s.session_id !== null);
    const rows = sessions.slice(0, 20).map((s) => el('tr', {},
      el('td', { class: 'mono', title: s.session_id }, short(s.session_id, 40)),
      el('td', { class: 'num' }, compact(s.requests)),
      el('td', { class: 'num' }, compact(s.total_tokens)),
      el('td', { class: 'num' }, dollars(s.cost_usd))));
    fillRows($('sessions'), rows, 4, 'no session used in the last 15 minutes');
    $('card-sessions').textContent = String(sessions.length);
    const stored = status.sessions.stored;
    $('sessions-stored').textContent = stored === null || stored === undefined
      ? `session store: ${status.sessions.store}`
      : `session store: ${status.sessions.store}, ${stored} session(s) held`;
  }

  function renderRecent(recent) {
    const rows = recent.data.map((r) => {
      const failed = r.outcome !== 'ok';
      const tokens = `${compact(r.prompt_tokens)} / ${compact(r.completion_tokens)}${r.estimated ? ' ~' : ''}`;
      return el('tr', { 'data-request-id': r.request_id, class: failed ? 'failed' : null },
        el('td', { title: new Date(r.started_at).toISOString() }, clock(r.started_at, true)),
        el('td', { class: 'mono', title: r.request_id }, short(r.request_id, 14)),
        el('td', {}, r.frontend),
        el('td', {}, r.backend === null ? '–' : r.backend),
        el('td', { class: 'mono', title: r.model || '' }, r.model === null ? '–' : short(r.model, 32)),
        el('td', {}, r.stream ? 'yes' : 'no'),
        el('td', { class: 'num ' + (r.status >= 400 ? 'bad' : 'ok') }, r.status),
        el('td', { class: failed ? 'bad' : 'muted', title: r.outcome }, short(r.outcome, 28)),
        el('td', { class: 'num' }, millis(r.latency_ms)),
        el('td', { class: 'num' }, millis(r.ttft_ms)),
        el('td', { class: 'num', title: r.estimated ? 'estimated by the proxy' : 'reported by the upstream' }, tokens),
        el('td', { class: 'num' }, dollars(r.cost_usd)));
    });
    fillRows($('recent'), rows, 12, 'no requests yet');
  }

  function renderCards(stats, shaped) {
    const t = stats.total;
    $('card-requests').textContent = compact(t.requests);
    $('card-errors').textContent = compact(shaped.groups.reduce((a, g) => a + g.errors, 0));
    $('card-tokens').textContent = compact(t.total_tokens);
    $('card-cost').textContent = dollars(t.cost_usd);
  }

  function clearUsage(reason) {
    for (const id of ['chart-requests', 'chart-tokens', 'chart-cost']) clear($(id));
    clear($('legend'));
    $('legend').append(el('span', { class: 'muted' }, reason));
    fillRows($('recent'), [], 12, reason);
    fillRows($('sessions'), [], 4, reason);
  }

  // ---- refresh loop -----------------------------------------------------------------------

  function showBanner(text) {
    const banner = $('banner');
    banner.textContent = text;
    banner.hidden = !text;
  }

  function setRefreshState(text) {
    $('refresh-state').textContent = text;
  }

  async function refresh() {
    if (state.inflight) {
      // A control changed mid-refresh: refresh again as soon as this one ends.
      state.again = true;
      return;
    }
    state.again = false;
    clearTimeout(state.timer);
    state.inflight = true;
    const bucket = $('range').value;
    const by = $('by').value;
    try {
      const status = await getJson('/v1/status');
      $('key-form').hidden = true;
      $('version').textContent = 'v' + status.version;
      renderBackends(status);
      if (!status.usage.enabled) {
        clearUsage('usage accounting is off');
      } else {
        const activeSince = Math.floor(Date.now() / 1000) - ACTIVE_WINDOW_S;
        const [series, recent, active] = await Promise.all([
          getJson('/v1/usage/series?' + query({ bucket, by })),
          getJson('/v1/usage/recent?' + query({ limit: RECENT_LIMIT })),
          getJson('/v1/usage/stats?' + query({ start_date: activeSince })),
        ]);
        const stats = await getJson('/v1/usage/stats?' + query({ start_date: Math.floor(series.start_ms / 1000) }));
        const shaped = shape(series);
        legend(shaped);
        barChart($('chart-requests'), shaped, 'requests', compact);
        barChart($('chart-tokens'), shaped, 'tokens', compact);
        barChart($('chart-cost'), shaped, 'cost', dollars);
        renderCards(stats, shaped);
        renderRecent(recent);
        renderSessions(active, status);
      }
      showBanner('');
      state.refreshes += 1;
      document.body.dataset.refreshes = String(state.refreshes);
      setRefreshState('updated ' + clock(Date.now(), true));
    } catch (e) {
      if (e instanceof AuthNeeded) {
        $('key-form').hidden = false;
        showBanner(state.key ? 'The client key was refused.' : 'This proxy needs a client key (auth.api_keys).');
      } else {
        showBanner('Refresh failed: ' + (e && e.message ? e.message : String(e)));
      }
      setRefreshState('refresh failed ' + clock(Date.now(), true));
    } finally {
      state.inflight = false;
      if (state.again) refresh();
      else schedule();
    }
  }

  function schedule() {
    clearTimeout(state.timer);
    if (document.hidden) {
      setRefreshState('paused (tab hidden)');
      return;
    }
    state.timer = setTimeout(refresh, REFRESH_MS);
  }

  document.addEventListener('visibilitychange', () => {
    if (document.hidden) schedule();
    else refresh();
  });
  $('range').addEventListener('change', refresh);
  $('by').addEventListener('change', refresh);
  $('key-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const key = $('key-input').value.trim();
    $('key-input').value = '';
    state.key = key || null;
    try {
      if (key) window.sessionStorage.setItem(KEY_STORAGE, key);
      else window.sessionStorage.removeItem(KEY_STORAGE);
    } catch (_) { /* storage off */ }
    refresh();
  });

  refresh();
})();
