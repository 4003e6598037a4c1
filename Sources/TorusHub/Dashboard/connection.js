"use strict";
// The page's link to the hub: the /web WebSocket (events, routers coming and going,
// stats) that reconnects by itself with backoff, and API requests with the token.
// Browsers set no header on a WebSocket, so the token goes in ?access_token= there
// and in Authorization: Bearer on every other request.
class HubConnection {
  constructor(token, withStats, handlers) {
    this.token = token;
    this.withStats = withStats;
    this.handlers = handlers;   // {state(name), opened(), message(text)}
    this.attempt = 0;
    this.ws = null;
    this.timer = null;
    this.stopped = false;
  }

  url() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const feeds = this.withStats ? "routers,stats" : "routers";
    return `${scheme}//${location.host}/web?feeds=${feeds}&access_token=${encodeURIComponent(this.token)}`;
  }

  start() {
    this.stopped = false;
    this.open();
  }

  open() {
    this.timer = null;
    this.handlers.state(this.attempt === 0 ? "connecting" : "disconnected");
    const ws = new WebSocket(this.url());
    let live = false;
    this.ws = ws;
    ws.onmessage = (m) => {
      if (!live) {
        // The hub's first message ({"subscribed":["*"]}): the link is up.
        live = true;
        this.attempt = 0;
        this.handlers.state("connected");
        this.handlers.opened();
      }
      this.handlers.message(m.data);
    };
    ws.onclose = () => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.handlers.state("disconnected");
      if (!this.stopped) this.retry();
    };
  }

  // Backoff: 0.25 s doubling to 5 s, ±20 %; reset once a connection is up.
  retry() {
    const delay = Math.min(5000, 250 * 2 ** this.attempt) * (0.8 + Math.random() * 0.4);
    this.attempt = Math.min(this.attempt + 1, 10);
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.open(), delay);
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    const ws = this.ws;
    this.ws = null;
    if (ws) ws.close(1000);
  }

  api(method, path, body) {
    const headers = { Authorization: `Bearer ${this.token}` };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    return fetch(path, { method, headers, body, cache: "no-store" });
  }
}
