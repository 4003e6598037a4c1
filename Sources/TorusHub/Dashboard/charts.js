"use strict";
// Line charts on a canvas over a sliding time window (the last hour, or since the
// first sample when that is shorter): no library, one function.
// TorusCharts.draw(canvas, samples, series, windowSeconds), where samples are the
// hub's stats samples ({t: seconds, ...}) and each series is {label, color, value(s)}.
const TorusCharts = (() => {
  const grid = "#2a333d", text = "#7d8a96";

  function niceCeiling(x) {
    if (!(x > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(x)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= x) return m * p;
    return 10 * p;
  }

  function short(v) {
    if (v >= 1e6) return (v / 1e6).toFixed(1) + "M";
    if (v >= 1e4) return (v / 1e3).toFixed(0) + "k";
    return Number.isInteger(v) ? String(v) : v.toFixed(1);
  }

  function draw(canvas, samples, series, windowSeconds) {
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth, h = canvas.clientHeight;
    if (w === 0 || h === 0) return;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(h * dpr);
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    ctx.font = "11px system-ui, sans-serif";
    // The legend first: its lines decide where the plot begins.
    const legend = [];
    let lineX = 0, line = 0;
    for (const s of series) {
      const last = samples.length ? s.value(samples[samples.length - 1]) || 0 : 0;
      const label = `${s.label} ${short(last)}`;
      const width = ctx.measureText(label).width + 12;
      if (lineX > 0 && lineX + width > w - 44) { line++; lineX = 0; }
      legend.push({ label, color: s.color, x: 44 + lineX, y: 11 + 13 * line });
      lineX += width;
    }
    const left = 44, right = 8, top = 18 + 13 * line, bottom = 16;
    const end = samples.length ? samples[samples.length - 1].t : Date.now() / 1000;
    // The last hour, or less while the hub has not been up that long (at least a minute).
    const span = samples.length ? end - samples[0].t : 0;
    windowSeconds = Math.min(windowSeconds, Math.max(60, span));
    const start = end - windowSeconds;
    let first = samples.findIndex((s) => s.t >= start);
    if (first < 0) first = samples.length;
    let max = 0;
    for (let i = first; i < samples.length; i++) {
      for (const s of series) max = Math.max(max, s.value(samples[i]) || 0);
    }
    max = niceCeiling(max);
    const x = (t) => left + ((t - start) / windowSeconds) * (w - left - right);
    const y = (v) => top + (1 - v / max) * (h - top - bottom);

    ctx.strokeStyle = grid;
    ctx.fillStyle = text;
    ctx.lineWidth = 1;
    ctx.textAlign = "right";
    for (let k = 0; k <= 2; k++) {
      const v = (max * k) / 2, yy = Math.round(y(v)) + 0.5;
      ctx.beginPath(); ctx.moveTo(left, yy); ctx.lineTo(w - right, yy); ctx.stroke();
      ctx.fillText(short(v), left - 4, yy + 4);
    }
    ctx.textAlign = "center";
    const ago = (seconds) => seconds < 120 ? `-${Math.round(seconds)}s` : `-${Math.round(seconds / 60)}m`;
    for (const [label, t] of [[ago(windowSeconds), start], [ago(windowSeconds / 2), start + windowSeconds / 2], ["now", end]]) {
      ctx.fillText(label, Math.min(Math.max(x(t), left + 12), w - right - 12), h - 3);
    }

    ctx.lineWidth = 1.5;
    ctx.textAlign = "left";
    for (const s of series) {
      ctx.strokeStyle = s.color;
      ctx.beginPath();
      for (let i = first; i < samples.length; i++) {
        const px = x(samples[i].t), py = y(s.value(samples[i]) || 0);
        if (i === first) ctx.moveTo(px, py); else ctx.lineTo(px, py);
      }
      ctx.stroke();
    }
    for (const item of legend) {
      ctx.fillStyle = item.color;
      ctx.fillText(item.label, item.x, item.y);
    }
  }

  return { draw };
})();
