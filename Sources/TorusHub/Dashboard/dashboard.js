"use strict";
// The hub's dashboard: routers online, the event stream, commands, and charts of
// the hub's stats, all from one /web WebSocket plus GET /devices now and then.
// Rendering is batched per animation frame: messages only queue work, so thousands
// of events a second cost one DOM update a frame, and the stream keeps its last
// STREAM_ROWS rows.
(() => {
  const TOKEN_KEY = "torus-hub-token";
  const STREAM_ROWS = 400, KEPT_EVENTS = 4000, WINDOW_SECONDS = 3600, RECONCILE_MS = 15000;
  const $ = (id) => document.getElementById(id);
  const routers = new Map();        // id → {id, node, events, lastSeen, row, cells}
  const changedAt = new Map();      // id → performance.now() of its last attached/detached
  let pending = [];                 // events not rendered yet
  let recent = [];                  // the last KEPT_EVENTS events, for filter changes
  let stats = [];
  let dirtyRows = new Set();
  let membershipChanged = false, chartsDirty = false, streamRebuild = false, frameQueued = false;
  let filter = "", paused = false, eventsThisSecond = 0;
  let connection = null, reconcileTimer = null;

  // MARK: token

  function askToken(message) {
    $("token-error").textContent = message || "";
    if (!$("token-dialog").open) $("token-dialog").showModal();
    $("token-input").focus();
  }

  $("token-form").addEventListener("submit", () => {
    sessionStorage.setItem(TOKEN_KEY, $("token-input").value.trim());
    $("token-input").value = "";
    start();
  });

  $("forget-token").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    stop();
    askToken("");
  });

  // A link may carry the token in its fragment (never sent to the server): kept
  // for the tab, then removed from the address bar.
  const fragment = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fragment) {
    sessionStorage.setItem(TOKEN_KEY, fragment);
    history.replaceState(null, "", location.pathname + location.search);
  }

  // MARK: connection

  async function start() {
    stop();
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (!token) return askToken("");
    const probe = new HubConnection(token, false, {});
    let withStats = true;
    try {
      // One question instead of trying views the token may not open.
      const answer = await probe.api("GET", "/token");
      if (answer.status === 401 || answer.status === 403) {
        sessionStorage.removeItem(TOKEN_KEY);
        return askToken(answer.status === 401 ? "The hub does not know this token." : "This token may not read.");
      }
      const grant = await answer.json();
      if (!grant.reads_every_router) {
        sessionStorage.removeItem(TOKEN_KEY);
        return askToken("This token may not read every router.");
      }
      withStats = grant.admin;
    } catch (e) {
      // The hub is away: the socket below keeps trying.
    }
    $("charts-note").textContent = withStats ? "" : "(the charts need a token with the admin right)";
    connection = new HubConnection(token, withStats, { state: setState, opened, message });
    connection.start();
  }

  function stop() {
    if (connection) connection.stop();
    connection = null;
    clearInterval(reconcileTimer);
  }

  function setState(state) {
    const status = $("status");
    status.dataset.state = state;
    status.textContent = state;
  }

  function opened() {
    reconcile();
    clearInterval(reconcileTimer);
    reconcileTimer = setInterval(reconcile, RECONCILE_MS);
  }

  // GET /devices: the routers already online (and other cluster nodes' routers),
  // merged with what attached/detached messages said since the request began.
  async function reconcile() {
    const current = connection;
    if (!current) return;
    const began = performance.now();
    let list;
    try {
      const response = await current.api("GET", "/devices");
      if (!response.ok) return;
      list = await response.json();
    } catch (e) {
      return;
    }
    if (current !== connection) return;
    const fresh = (id) => (changedAt.get(id) || 0) > began;
    const online = new Set();
    for (const device of list) {
      online.add(device.id);
      if (!fresh(device.id)) upsert(device, false);
    }
    for (const id of routers.keys()) if (!online.has(id) && !fresh(id)) remove(id);
  }

  function message(text) {
    if (text.startsWith('{"router":')) {
      pending.push(JSON.parse(text));
      eventsThisSecond++;
      return queueFrame();
    }
    const m = JSON.parse(text);
    if (m.attached) {
      changedAt.set(m.attached.id, performance.now());
      upsert(m.attached, true);
    } else if (m.detached) {
      // In a cluster a router that moved is first attached on its new node, then
      // detached from the old one: only the node that holds it may remove it.
      const known = routers.get(m.detached.id);
      if (known && m.detached.node !== undefined && known.node && known.node !== m.detached.node) return queueFrame();
      changedAt.set(m.detached.id, performance.now());
      remove(m.detached.id);
    } else if (m.stats) {
      stats.push(m.stats);
      const oldest = m.stats.t - WINDOW_SECONDS;
      while (stats.length && stats[0].t < oldest) stats.shift();
      chartsDirty = true;
    } else if (m.stats_history) {
      stats = m.stats_history;
      chartsDirty = true;
    }
    queueFrame();
  }

  // MARK: routers

  function upsert(device, attachedNow) {
    let r = routers.get(device.id);
    if (!r) {
      r = { id: device.id, node: "", events: 0, lastSeen: 0, row: null, cells: null };
      routers.set(device.id, r);
      membershipChanged = true;
    }
    if (device.node !== undefined) r.node = device.node;
    if (typeof device.events === "number") r.events = attachedNow ? device.events : Math.max(r.events, device.events);
    if (typeof device.silent_ms === "number") r.lastSeen = Math.max(r.lastSeen, Date.now() - device.silent_ms);
    else if (attachedNow) r.lastSeen = Date.now();
    dirtyRows.add(r);
    queueFrame();
  }

  function remove(id) {
    const r = routers.get(id);
    if (!r) return;
    routers.delete(id);
    dirtyRows.delete(r);
    if (r.row) r.row.remove();
    membershipChanged = true;
    queueFrame();
  }

  function makeRow(r) {
    const row = document.createElement("tr");
    row.dataset.router = r.id;
    const cells = ["id", "node", "seen", "events"].map(() => row.insertCell());
    cells[0].textContent = r.id;
    cells[3].className = "num";
    row.addEventListener("click", () => {
      $("stream-filter").value = r.id;
      $("command-router").value = r.id;
      setFilter(r.id);
    });
    r.row = row;
    r.cells = cells;
  }

  function ago(ms) {
    if (!ms) return "–";
    const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
    if (s < 2) return "now";
    if (s < 120) return `${s}s ago`;
    if (s < 7200) return `${Math.round(s / 60)}m ago`;
    return `${Math.round(s / 3600)}h ago`;
  }

  function renderRow(r) {
    if (!r.row) makeRow(r);
    r.cells[1].textContent = r.node;
    r.cells[2].textContent = ago(r.lastSeen);
    r.cells[3].textContent = r.events;
  }

  function renderMembership() {
    const body = $("routers").tBodies[0];
    const ids = [...routers.keys()].sort();
    const list = document.createDocumentFragment();
    const rows = document.createDocumentFragment();
    for (const id of ids) {
      const r = routers.get(id);
      renderRow(r);
      rows.appendChild(r.row);
      const option = document.createElement("option");
      option.value = id;
      list.appendChild(option);
    }
    body.replaceChildren(rows);
    $("router-ids").replaceChildren(list);
    $("router-count").textContent = routers.size;
  }

  // MARK: event stream

  function matches(e) { return !filter || e.router === filter; }

  function setFilter(value) {
    filter = value.trim();
    for (const row of document.querySelectorAll("tr.selected")) row.classList.remove("selected");
    const r = routers.get(filter);
    if (r && r.row) r.row.classList.add("selected");
    streamRebuild = true;
    queueFrame();
  }

  $("stream-filter").addEventListener("input", (e) => setFilter(e.target.value));
  $("stream-pause").addEventListener("change", (e) => {
    paused = e.target.checked;
    streamRebuild = !paused;
    queueFrame();
  });

  function streamItem(e) {
    const li = document.createElement("li");
    li.dataset.router = e.router;
    const time = document.createElement("span");
    time.className = "time";
    time.textContent = new Date(e.time).toLocaleTimeString();
    const router = document.createElement("span");
    router.className = "router";
    router.textContent = e.router;
    const data = document.createElement("span");
    data.className = "data";
    data.textContent = e.data;
    li.append(time, router, data);
    return li;
  }

  // Newest first: the newest STREAM_ROWS events of `list` go on top.
  function prependEvents(list, replace) {
    const stream = $("stream");
    const fragment = document.createDocumentFragment();
    const from = Math.max(0, list.length - STREAM_ROWS);
    for (let i = list.length - 1; i >= from; i--) fragment.appendChild(streamItem(list[i]));
    if (replace) stream.replaceChildren(fragment); else stream.prepend(fragment);
    while (stream.childElementCount > STREAM_ROWS) stream.lastElementChild.remove();
    $("stream-note").textContent = paused ? "paused" : filter ? `only ${filter}` : "";
  }

  // MARK: frame

  function queueFrame() {
    if (frameQueued) return;
    frameQueued = true;
    requestAnimationFrame(frame);
  }

  function frame() {
    frameQueued = false;
    const now = Date.now();
    if (pending.length) {
      const batch = pending;
      pending = [];
      for (const e of batch) {
        e.time = now;
        let r = routers.get(e.router);
        if (!r) {
          upsert({ id: e.router }, false);
          r = routers.get(e.router);
        }
        r.events++;
        r.lastSeen = now;
        dirtyRows.add(r);
      }
      recent.push(...batch);
      if (recent.length > 2 * KEPT_EVENTS) recent = recent.slice(-KEPT_EVENTS);
      if (!paused && !streamRebuild) prependEvents(batch.filter(matches), false);
    }
    if (streamRebuild && !paused) {
      streamRebuild = false;
      prependEvents(recent.filter(matches), true);
    }
    if (membershipChanged) {
      membershipChanged = false;
      renderMembership();
    } else {
      for (const r of dirtyRows) renderRow(r);
    }
    dirtyRows.clear();
    if (chartsDirty) {
      chartsDirty = false;
      drawCharts();
    }
  }

  setInterval(() => {
    $("event-rate").textContent = eventsThisSecond;
    eventsThisSecond = 0;
    for (const r of routers.values()) if (r.cells) r.cells[2].textContent = ago(r.lastSeen);
  }, 1000);

  // MARK: commands

  $("command-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const result = $("command-result");
    const id = $("command-router").value.trim();
    if (!connection) return;
    result.dataset.state = "pending";
    result.textContent = `sending to ${id}…`;
    try {
      const response = await connection.api("POST", `/devices/${encodeURIComponent(id)}/commands`, $("command-body").value);
      const text = await response.text();
      result.dataset.state = response.ok ? "reply" : "error";
      result.textContent = response.ok ? `REPLY from ${id}:\n${text}` : `${response.status} ${response.statusText}: ${text}`;
    } catch (e) {
      result.dataset.state = "error";
      result.textContent = `request failed: ${e.message}`;
    }
  });

  // MARK: charts

  const MiB = 1 << 20;
  const pools = ["received", "outbound", "tls_plaintext"];
  const bufferColors = ["#58a6ff", "#1f6feb", "#3fb950", "#238636", "#d29922", "#9e6a03"];
  const charts = [
    ["chart-memory", [
      { label: "RSS", color: "#58a6ff", value: (s) => s.rss / MiB },
      { label: "heap in use", color: "#3fb950", value: (s) => s.heap / MiB },
      { label: "heap reserved", color: "#d29922", value: (s) => s.heap_reserved / MiB },
    ]],
    ["chart-connections", [
      { label: "connections", color: "#58a6ff", value: (s) => s.connections },
      { label: "routers", color: "#3fb950", value: (s) => s.routers },
      { label: "/web clients", color: "#d29922", value: (s) => s.web_clients },
    ]],
    ["chart-operations", [
      { label: "in flight", color: "#58a6ff", value: (s) => s.in_flight },
      { label: "parked", color: "#f85149", value: (s) => s.parked },
    ]],
    ["chart-buffers", pools.flatMap((pool, i) => ["application", "kernel"].map((owner, j) => ({
      label: `${pool} ${owner === "application" ? "app" : "kernel"}`,
      color: bufferColors[2 * i + j],
      value: (s) => (s.buffers_out[pool] || {})[owner] || 0,
    })))],
  ];

  function drawCharts() {
    $("charts-panel").dataset.samples = stats.length;
    for (const [id, series] of charts) TorusCharts.draw($(id), stats, series, WINDOW_SECONDS);
  }

  window.addEventListener("resize", () => { chartsDirty = true; queueFrame(); });
  drawCharts();
  start();
})();
