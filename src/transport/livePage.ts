import { createHash } from 'node:crypto';

/**
 * The live page served at `GET /`: the latest blocks streaming in and a box to watch addresses,
 * in one HTML document with inline CSS and JavaScript and no dependencies. It speaks protocol v1
 * over the browser's WebSocket with `?encoding=json` (passing on a `?key=` of the page URL), and
 * takes initial addresses from `?watch=ADDRESS,ADDRESS`. Token amounts are shown with the token's
 * decimals and symbol when the gateway sent them, internal transfers as rows of their own, pending
 * transactions until they are mined, replaced or dropped, and how far the chain is final. Every
 * text from the gateway (a token's symbol above all) goes in through `textContent`, never as HTML.
 * At a phone's width the tables scroll sideways inside their own box; the page itself never does.
 *
 * The script and style are plain strings, not templates: they must not contain a backtick or a
 * dollar-brace sequence.
 */

const STYLE = `
:root { color-scheme: light dark; --fg: #1d232b; --muted: #667085; --bg: #f6f7f9; --card: #fff; --line: #e4e7ec;
  --accent: #3d5afe; --ok: #12b76a; --bad: #f04438; --flash: #fff4c2; }
@media (prefers-color-scheme: dark) { :root { --fg: #e6e9ef; --muted: #98a2b3; --bg: #0f1218; --card: #171b23;
  --line: #2a303c; --accent: #8c9eff; --flash: #3a3413; } }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); background: var(--bg); }
header { display: flex; flex-wrap: wrap; align-items: center; gap: 4px 16px; padding: 14px 24px; background: var(--card); border-bottom: 1px solid var(--line); }
header h1 { margin: 0; font-size: 18px; letter-spacing: .2px; }
header .meta { color: var(--muted); }
#status { margin-left: auto; display: flex; align-items: center; gap: 8px; color: var(--muted); }
#status::before { content: ""; width: 9px; height: 9px; border-radius: 50%; background: var(--bad); }
#status.live::before { background: var(--ok); }
main { display: grid; grid-template-columns: minmax(0, 1fr) minmax(0, 1.25fr); gap: 20px; padding: 20px 24px; }
@media (max-width: 900px) { main { grid-template-columns: minmax(0, 1fr); } }
section { background: var(--card); border: 1px solid var(--line); border-radius: 10px; padding: 16px; min-width: 0; }
.table-wrap { overflow-x: auto; max-width: 100%; -webkit-overflow-scrolling: touch; }
h2 { margin: 0 0 12px; font-size: 15px; }
table { width: 100%; border-collapse: collapse; }
th { text-align: left; font-weight: 600; color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .4px; }
th, td { padding: 6px 8px; border-bottom: 1px solid var(--line); white-space: nowrap; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 13px; }
tbody tr { animation: flash 1.2s ease-out; }
tr.removed td, tr.gone td { text-decoration: line-through; color: var(--muted); }
tr.pending td { color: var(--muted); font-style: italic; }
tr.fate td { color: var(--muted); }
@keyframes flash { from { background: var(--flash); } to { background: transparent; } }
form { display: flex; gap: 8px; margin-bottom: 10px; }
input { flex: 1; min-width: 0; padding: 8px 10px; border: 1px solid var(--line); border-radius: 6px; background: var(--bg); color: var(--fg); font: 13px ui-monospace, monospace; }
button { padding: 8px 14px; border: 0; border-radius: 6px; background: var(--accent); color: #fff; font-weight: 600; cursor: pointer; }
#watched { display: flex; flex-wrap: wrap; gap: 6px; margin-bottom: 10px; }
.chip { display: inline-flex; align-items: center; gap: 6px; max-width: 100%; padding: 3px 4px 3px 10px; border: 1px solid var(--line); border-radius: 999px; overflow-wrap: anywhere; }
.chip button { padding: 0 7px; background: transparent; color: var(--muted); font-size: 15px; }
#watch-status { min-height: 20px; margin-bottom: 8px; color: var(--muted); }
#watch-status.error { color: var(--bad); }
.in { color: var(--ok); font-weight: 600; }
.out { color: var(--accent); font-weight: 600; }
.empty { color: var(--muted); padding: 12px 8px; }
footer { padding: 0 24px 20px; color: var(--muted); }
@media (max-width: 600px) { header { padding: 10px 12px; } main { gap: 12px; padding: 12px; } section { padding: 12px; }
  footer { padding: 0 12px 16px; } th, td { padding: 5px 6px; } }
a { color: var(--accent); }
`;

const SCRIPT = `
(() => {
  'use strict';
  const MAX_BLOCKS = 20;
  const MAX_EVENTS = 50;
  const MAX_FRACTION_DIGITS = 6;
  const MAX_DECIMALS = 77;
  const MAX_SYMBOL_CHARS = 16;
  const MAX_NAME_CHARS = 40;
  const MAX_RETRY_DELAY_MS = 10000;
  const ADDRESS = /^0x[0-9a-fA-F]{40}$/;
  const page = new URLSearchParams(location.search);
  const key = page.get('key');
  const wsUrl = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/v1?encoding=json' +
    (key ? '&key=' + encodeURIComponent(key) : '');
  const $ = (id) => document.getElementById(id);
  const watched = new Set((page.get('watch') || '').split(',').map((a) => a.trim().toLowerCase()).filter((a) => ADDRESS.test(a)));
  let ws;
  let blocksSub;
  let activitySub;
  // The addresses of an activity subscribe in flight; changes made meanwhile are sent once it is answered.
  let pendingAddresses;
  let retryDelayMs = 500;
  let requestId = 0;

  const cell = (text, className, title) => {
    const td = document.createElement('td');
    td.textContent = text;
    if (className) td.className = className;
    if (title) td.title = title;
    return td;
  };
  const short = (hex, digits = 8) => typeof hex === 'string' && hex ? hex.slice(0, 2 + digits) + '\\u2026' + hex.slice(-digits) : 'contract creation';
  const age = (timestamp) => {
    const s = Math.max(0, Math.round(Date.now() / 1000 - timestamp));
    return s < 60 ? s + ' s ago' : s < 3600 ? Math.floor(s / 60) + ' min ago' : Math.floor(s / 3600) + ' h ago';
  };
  // A quantity from the gateway (0x hex, at most 256 bits), or undefined for anything else.
  const quantity = (hex) => typeof hex === 'string' && /^0x[0-9a-fA-F]{1,64}$/.test(hex) ? BigInt(hex) : undefined;
  const grouped = (digits) => digits.replace(/\\B(?=(\\d{3})+(?!\\d))/g, ',');
  // amount / 10^decimals, with thousands separators and at most MAX_FRACTION_DIGITS, trailing zeros trimmed.
  const decimal = (amount, decimals) => {
    if (decimals === 0) return grouped(amount.toString());
    const unit = 10n ** BigInt(decimals);
    const fraction = (amount % unit).toString().padStart(decimals, '0').slice(0, MAX_FRACTION_DIGITS).replace(/0+$/, '');
    const whole = amount / unit;
    if (whole === 0n && !fraction && amount > 0n) return '<0.' + '0'.repeat(MAX_FRACTION_DIGITS - 1) + '1';
    return grouped(whole.toString()) + (fraction ? '.' + fraction : '');
  };
  const ether = (amount) => decimal(amount, 18) + ' ETH';
  // A token's own words are hostile: no control or direction characters, bounded, and only ever as text.
  const plain = (text, max) => {
    if (typeof text !== 'string') return '';
    const clean = text.replace(/[\\u0000-\\u001f\\u007f-\\u009f\\u200b-\\u200f\\u202a-\\u202e\\u2066-\\u2069\\ufeff]/g, '').trim();
    return clean.length > max ? clean.slice(0, max) + '\\u2026' : clean;
  };
  const decimalsOf = (e) => Number.isInteger(e.decimals) && e.decimals >= 0 && e.decimals <= MAX_DECIMALS ? e.decimals : undefined;
  // What a value cell shows, and its exact value for the tooltip.
  const amountOf = (e) => {
    const value = quantity(e.value);
    const tokenId = quantity(e.tokenId);
    const token = typeof e.token === 'string' ? e.token : '';
    if (e.kind === 'tx' || e.kind === 'internal') {
      return value === undefined ? ['', ''] : [ether(value), value.toString() + ' wei'];
    }
    const symbol = plain(e.symbol, MAX_SYMBOL_CHARS);
    const decimals = decimalsOf(e);
    const about = ' of ' + token + (typeof e.name === 'string' ? ' (' + plain(e.name, MAX_NAME_CHARS) + ')' : '');
    if (e.kind === 'erc721') {
      const id = tokenId === undefined ? '?' : tokenId.toString();
      return ['#' + id + ' ' + (symbol || short(token, 4)), 'token id ' + id + about];
    }
    if (value === undefined) return ['', ''];
    const id = e.kind === 'erc1155' && tokenId !== undefined ? ' #' + tokenId.toString() : '';
    // Without decimals the amount is the token's raw integer, named by its address, not its symbol.
    const shown = decimals === undefined ? grouped(value.toString()) + ' ' + short(token, 4) : decimal(value, decimals) + ' ' + (symbol || short(token, 4));
    return [shown + id, value.toString() + ' units' + (id ? ' of id' + id : '') + about];
  };
  const trim = (tbody, max) => { while (tbody.rows.length > max) tbody.deleteRow(-1); };
  const setStatus = (text, live) => { $('status').textContent = text; $('status').classList.toggle('live', live); };
  const watchStatus = (text, error) => { $('watch-status').textContent = text; $('watch-status').classList.toggle('error', !!error); };
  const send = (message) => { if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(message)); };

  function renderWatched() {
    const box = $('watched');
    box.replaceChildren();
    for (const address of watched) {
      const chip = document.createElement('span');
      chip.className = 'chip mono';
      chip.textContent = address;
      const remove = document.createElement('button');
      remove.type = 'button';
      remove.title = 'stop watching';
      remove.textContent = '\\u00d7';
      remove.addEventListener('click', () => unwatch(address));
      chip.append(remove);
      box.append(chip);
    }
    const url = new URL(location.href);
    if (watched.size > 0) url.searchParams.set('watch', [...watched].join(','));
    else url.searchParams.delete('watch');
    history.replaceState(null, '', url);
  }

  function subscribeActivity() {
    if (watched.size === 0 || pendingAddresses) return;
    pendingAddresses = [...watched];
    send({ op: 'subscribe', id: 'activity', channel: 'activity', addresses: pendingAddresses, pending: true });
  }

  function onActivitySubscribed(sub) {
    const sent = pendingAddresses || [];
    pendingAddresses = undefined;
    activitySub = sub;
    if (watched.size === 0) { unwatchAll(); return; }
    const add = [...watched].filter((a) => !sent.includes(a));
    const remove = sent.filter((a) => !watched.has(a));
    if (add.length > 0 || remove.length > 0) send({ op: 'update', id: 'update-' + ++requestId, sub, add, remove });
    else watchStatus('watching ' + watched.size + (watched.size === 1 ? ' address' : ' addresses'));
  }

  function unwatchAll() {
    send({ op: 'unsubscribe', id: 'unsubscribe', sub: activitySub });
    activitySub = undefined;
    watchStatus('');
  }

  function watch(raw) {
    const address = raw.trim().toLowerCase();
    if (!ADDRESS.test(address)) { watchStatus('not an address: 0x followed by 40 hex digits', true); return; }
    if (watched.has(address)) { watchStatus('already watching ' + address); return; }
    watched.add(address);
    renderWatched();
    if (activitySub) send({ op: 'update', id: 'update-' + ++requestId, sub: activitySub, add: [address] });
    else subscribeActivity();
  }

  function unwatch(address) {
    watched.delete(address);
    renderWatched();
    if (!activitySub) return;
    if (watched.size > 0) send({ op: 'update', id: 'update-' + ++requestId, sub: activitySub, remove: [address] });
    else unwatchAll();
  }

  function onBlock(m) {
    const tbody = $('blocks');
    if (tbody.querySelector('tr[data-number="' + m.number + '"]:not(.removed)')) return;
    $('blocks-empty').hidden = true;
    const tr = document.createElement('tr');
    tr.dataset.number = String(m.number);
    tr.dataset.hash = m.hash;
    const ageCell = cell(age(m.timestamp), 'num age');
    ageCell.dataset.timestamp = String(m.timestamp);
    tr.append(cell(String(m.number), 'num'), cell(short(m.hash), 'mono', m.hash), cell(String(m.txCount), 'num'), ageCell);
    tbody.prepend(tr);
    trim(tbody, MAX_BLOCKS);
    $('head').textContent = 'head ' + m.number;
  }

  // Rows of the activity list whose data-tx is txHash (compared as text: no selector built from input).
  const rowsOfTx = (txHash, className) =>
    [...$('activity').rows].filter((tr) => tr.dataset.tx === txHash && (!className || tr.classList.contains(className)));

  function activityRow(blockText, e) {
    const tr = document.createElement('tr');
    tr.dataset.tx = typeof e.txHash === 'string' ? e.txHash : '';
    tr.dataset.kind = plain(e.kind, 16);
    const incoming = typeof e.to === 'string' && watched.has(e.to);
    const outgoing = typeof e.from === 'string' && watched.has(e.from);
    const direction = incoming && outgoing ? 'self' : incoming ? 'in' : 'out';
    const [amount, exact] = amountOf(e);
    tr.append(
      cell(blockText, 'num'),
      cell(direction, direction === 'in' ? 'in' : 'out'),
      cell(tr.dataset.kind, '', e.kind === 'internal' ? plain(e.callType, 16) + ' inside the transaction' : ''),
      cell(short(e.from, 4), 'mono', e.from),
      cell(short(e.to, 4), 'mono', e.to || ''),
      cell(amount, 'num', exact),
      cell(short(e.txHash, 6), 'mono', e.txHash),
    );
    return tr;
  }

  function addRows(rows) {
    const tbody = $('activity');
    $('activity-empty').hidden = true;
    for (const tr of rows) tbody.prepend(tr);
    trim(tbody, MAX_EVENTS);
  }

  function onActivity(m) {
    const rows = [];
    for (const e of m.events) {
      // Mined: the transaction's pending row has done its job.
      if (e.kind === 'tx') for (const tr of rowsOfTx(e.txHash, 'pending')) tr.remove();
      const tr = activityRow(String(m.block.number), e);
      tr.dataset.block = m.block.hash;
      rows.push(tr);
    }
    addRows(rows);
  }

  function onPending(m) {
    const rows = [];
    for (const e of m.events) {
      const tr = activityRow('pending', e);
      tr.className = 'pending';
      rows.push(tr);
    }
    addRows(rows);
  }

  // A pending transaction that will not be mined: strike its row, and say why in a row of its own.
  function onFate(m, kind, blockText, toText, toTitle, detail) {
    for (const tr of rowsOfTx(m.id, 'pending')) { tr.classList.replace('pending', 'gone'); tr.title = kind; }
    const tr = document.createElement('tr');
    tr.className = 'fate';
    tr.dataset.tx = typeof m.id === 'string' ? m.id : '';
    tr.dataset.kind = kind;
    const outgoing = typeof m.from === 'string' && watched.has(m.from);
    tr.append(
      cell(blockText, 'num'),
      cell(outgoing ? 'out' : 'in', outgoing ? 'out' : 'in'),
      cell(kind),
      cell(short(m.from, 4), 'mono', m.from),
      cell(toText, 'mono', toTitle),
      cell(detail, 'num'),
      cell(short(m.id, 6), 'mono', m.id),
    );
    addRows([tr]);
    return tr;
  }

  function onReplaced(m) {
    const reason = m.reason === 'cancel' ? 'cancelled' : 'sped up';
    const tr = onFate(m, 'replaced', String(m.block.number), 'by ' + short(m.by, 4), 'replaced by ' + m.by, reason);
    tr.dataset.block = m.block.hash;
  }

  function onDropped(m) {
    onFate(m, 'dropped', '\\u2014', '', '', 'nonce ' + m.nonce);
  }

  function onFinality(m) {
    const number = m.finalized && m.finalized.number;
    if (Number.isSafeInteger(number)) $('final').textContent = 'final up to #' + number;
  }

  function onRemoved(m) {
    for (const tr of document.querySelectorAll('tr[data-hash="' + m.block.hash + '"], tr[data-block="' + m.block.hash + '"]')) {
      tr.classList.add('removed');
      tr.title = 'reorged out';
    }
  }

  function onMessage(m) {
    switch (m.type) {
      case 'welcome': {
        const chain = m.chains[0];
        $('chain').textContent = chain ? 'chain ' + chain.chainId : '';
        send({ op: 'subscribe', id: 'blocks', channel: 'blocks' });
        subscribeActivity();
        return;
      }
      case 'subscribed':
        if (m.id === 'blocks') blocksSub = m.sub;
        if (m.id === 'activity') onActivitySubscribed(m.sub);
        return;
      case 'updated':
        watchStatus('watching ' + m.addresses + (m.addresses === 1 ? ' address' : ' addresses'));
        return;
      case 'block':
        if (m.sub === blocksSub) onBlock(m);
        return;
      case 'activity':
        if (m.sub === activitySub) onActivity(m);
        return;
      case 'pending':
        if (m.sub === activitySub) onPending(m);
        return;
      case 'replaced':
        if (m.sub === activitySub) onReplaced(m);
        return;
      case 'dropped':
        if (m.sub === activitySub) onDropped(m);
        return;
      case 'finality':
        if (m.sub === blocksSub) onFinality(m);
        return;
      case 'removed':
        onRemoved(m);
        return;
      case 'error':
        if (m.id === 'activity') pendingAddresses = undefined;
        watchStatus(m.code + ': ' + m.message, true);
        return;
    }
  }

  function connect() {
    setStatus('connecting\\u2026', false);
    ws = new WebSocket(wsUrl);
    ws.addEventListener('open', () => { retryDelayMs = 500; setStatus('live', true); });
    ws.addEventListener('message', (event) => onMessage(JSON.parse(event.data)));
    ws.addEventListener('close', (event) => {
      blocksSub = undefined;
      activitySub = undefined;
      pendingAddresses = undefined;
      setStatus('disconnected (' + event.code + '), retrying in ' + Math.round(retryDelayMs / 1000) + ' s', false);
      setTimeout(connect, retryDelayMs);
      retryDelayMs = Math.min(retryDelayMs * 2, MAX_RETRY_DELAY_MS);
    });
  }

  $('watch-form').addEventListener('submit', (event) => {
    event.preventDefault();
    watch($('address').value);
    $('address').value = '';
  });
  setInterval(() => {
    for (const td of document.querySelectorAll('td.age')) td.textContent = age(Number(td.dataset.timestamp));
  }, 1000);
  renderWatched();
  connect();
})();
`;

const BODY = `
<header>
  <h1>blockcast</h1>
  <span class="meta" id="chain"></span>
  <span class="meta" id="head"></span>
  <span class="meta" id="final"></span>
  <span id="status">connecting</span>
</header>
<main>
  <section>
    <h2>Latest blocks</h2>
    <div class="table-wrap"><table>
      <thead><tr><th class="num">Number</th><th>Hash</th><th class="num">Transactions</th><th class="num">Age</th></tr></thead>
      <tbody id="blocks"></tbody>
    </table></div>
    <div class="empty" id="blocks-empty">Waiting for the next block</div>
  </section>
  <section>
    <h2>Watch an address</h2>
    <form id="watch-form" autocomplete="off">
      <input id="address" name="address" placeholder="0x… address to watch" spellcheck="false" aria-label="address to watch">
      <button type="submit">Watch</button>
    </form>
    <div id="watched"></div>
    <div id="watch-status"></div>
    <div class="table-wrap"><table>
      <thead><tr><th class="num">Block</th><th></th><th>Kind</th><th>From</th><th>To</th><th class="num">Value</th><th>Transaction</th></tr></thead>
      <tbody id="activity"></tbody>
    </table></div>
    <div class="empty" id="activity-empty">Transactions of watched addresses appear here as their blocks arrive</div>
  </section>
</main>
<footer>Streaming over <span class="mono">/v1?encoding=json</span>, protocol v1 · <a href="/metrics">metrics</a></footer>
`;

function sha256(text: string): string {
  return `'sha256-${createHash('sha256').update(text).digest('base64')}'`;
}

/** The live page's HTML document. */
export const LIVE_PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>blockcast · live</title>
<link rel="icon" href="data:,">
<style>${STYLE}</style>
</head>
<body>${BODY}<script>${SCRIPT}</script>
</body>
</html>
`;

/**
 * The Content-Security-Policy of the live page: only its own inline script and style (by hash)
 * and WebSocket connections to the same origin.
 */
export const LIVE_PAGE_CSP = [
  "default-src 'none'",
  `script-src ${sha256(SCRIPT)}`,
  `style-src ${sha256(STYLE)}`,
  "connect-src 'self'",
  'img-src data:',
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');
