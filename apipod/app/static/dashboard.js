// The APIPod dashboard: polls dashboard/data once a second and draws it. Every value
// from the server is put in the page as text (textContent), never as HTML.
"use strict";
(function () {
  const KEY = "apipod-api-key";
  const POLL_MS = 1000;
  const $ = (id) => document.getElementById(id);
  let timer = null;

  function headers() {
    const key = sessionStorage.getItem(KEY);
    return key ? { Authorization: "Bearer " + key } : {};
  }

  async function call(method, path) {
    const response = await fetch(path, { method, headers: headers() });
    if (response.status === 401) throw Object.assign(new Error("unauthorized"), { auth: true });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(body.detail || response.status + " " + response.statusText);
    return body;
  }

  async function refresh() {
    try {
      const data = await call("GET", "dashboard/data");
      $("key-form").hidden = true;
      $("board").hidden = false;
      $("error").hidden = true;
      render(data);
    } catch (error) {
      if (error.auth) return askForKey();
      showError("cannot read the service: " + error.message);
    } finally {
      clearTimeout(timer);
      timer = setTimeout(refresh, POLL_MS);
    }
  }

  function askForKey() {
    $("board").hidden = true;
    $("key-form").hidden = false;
    $("key-input").focus();
  }

  function showError(text) {
    $("error").textContent = text;
    $("error").hidden = false;
  }

  function cell(row, text, className) {
    const td = row.insertCell();
    const missing = text === null || text === undefined;
    td.textContent = missing ? "–" : String(text);
    if (className) td.className = className + (missing ? " none" : "");
    return td;
  }

  function fill(tableId, items, build) {
    const body = $(tableId).tBodies[0];
    body.replaceChildren();
    for (const item of items) build(body.insertRow(), item);
    if (!items.length) {
      const td = body.insertRow().insertCell();
      td.colSpan = $(tableId).tHead.rows[0].cells.length;
      td.className = "muted";
      td.textContent = "none";
    }
  }

  function seconds(value) {
    if (value === null || value === undefined) return null;
    return value < 10 ? value.toFixed(2) + " s" : value < 120 ? value.toFixed(1) + " s"
      : (value / 60).toFixed(1) + " min";
  }

  function action(row, label, job, verb) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = verb;
    button.textContent = label;
    button.addEventListener("click", async () => {
      button.disabled = true;
      try {
        await call("POST", verb + "/" + encodeURIComponent(job.job_id));
        await refresh();
      } catch (error) {
        showError(label + " " + job.job_id + ": " + error.message);
        button.disabled = false;
      }
    });
    row.insertCell().append(button);
  }

  function render(data) {
    $("updated").textContent = "updated " + new Date(data.now).toLocaleTimeString();
    const queued = Object.values(data.queue).reduce((a, b) => a + b, 0);
    $("summary").textContent = queued + " queued · " + data.running.length + " running · "
      + data.workers.length + " worker(s)";
    const runningBy = {};
    for (const job of data.running) runningBy[job.endpoint] = (runningBy[job.endpoint] || 0) + 1;
    const endpoints = [...new Set([...Object.keys(data.queue), ...Object.keys(runningBy)])].sort();
    fill("queue", endpoints, (row, endpoint) => {
      row.dataset.endpoint = endpoint;
      cell(row, endpoint); cell(row, data.queue[endpoint] || 0); cell(row, runningBy[endpoint] || 0);
    });
    fill("workers", data.workers, (row, w) => {
      row.dataset.worker = w.id;
      cell(row, w.id, "id"); cell(row, w.gpu === null ? "CPU" : w.gpu);
      cell(row, w.stale ? w.state + " (silent)" : w.state);
      cell(row, w.current_job, "id"); cell(row, w.jobs_done);
      cell(row, w.rss_bytes ? (w.rss_bytes / 1e6).toFixed(0) + " MB" : null);
    });
    fill("running", data.running, (row, job) => {
      row.dataset.job = job.job_id;
      cell(row, job.job_id, "id"); cell(row, job.endpoint);
      const td = row.insertCell();
      const bar = document.createElement("span");
      bar.className = "bar";
      const fillBar = document.createElement("span");
      fillBar.style.width = Math.round((job.progress || 0) * 100) + "%";
      bar.append(fillBar);
      const text = document.createElement("span");
      text.className = "muted";
      text.textContent = " " + Math.round((job.progress || 0) * 100) + "% " + (job.message || "");
      td.append(bar, text);
      cell(row, job.worker, "id"); cell(row, seconds(job.run_s));
      action(row, "Cancel", job, "cancel");
    });
    fill("recent", data.recent, (row, job) => {
      row.dataset.job = job.job_id;
      cell(row, job.job_id, "id"); cell(row, job.endpoint);
      const status = row.insertCell();
      const badge = document.createElement("span");
      badge.className = "status " + job.status;
      badge.textContent = job.status + (job.queue_position ? " #" + job.queue_position : "");
      status.append(badge);
      cell(row, job.created_at ? new Date(job.created_at).toLocaleTimeString() : null);
      cell(row, seconds(job.run_s)); cell(row, job.error, "error");
      if (job.status === "queued" || job.status === "processing") action(row, "Cancel", job, "cancel");
      else if (job.status !== "finished") action(row, "Retry", job, "retry");
      else row.insertCell();
    });
    bars($("throughput"), data.charts.finished, data.charts.failed, data.charts.minutes);
    lines($("latency"), [data.charts.p50_s, data.charts.p95_s], ["--run", "--p95"]);
  }

  // --- charts, drawn on canvas -----------------------------------------------------------
  function color(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  }

  function frame(canvas, top, format) {
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth || canvas.width, height = canvas.clientHeight || canvas.height;
    canvas.width = width * ratio; canvas.height = height * ratio;
    const g = canvas.getContext("2d");
    g.scale(ratio, ratio);
    const box = { left: 44, right: width - 8, top: 8, bottom: height - 18 };
    g.font = "11px system-ui, sans-serif"; g.fillStyle = color("--muted");
    g.strokeStyle = color("--line"); g.lineWidth = 1;
    for (let i = 0; i <= 4; i++) {
      const y = box.bottom - (box.bottom - box.top) * i / 4;
      g.beginPath(); g.moveTo(box.left, y); g.lineTo(box.right, y); g.stroke();
      g.fillText(format(top * i / 4), 2, y + 4);
    }
    g.fillText("-60 min", box.left, height - 4);
    g.fillText("now", box.right - 20, height - 4);
    return { g, box };
  }

  function niceTop(value) {
    if (!(value > 0)) return 1;
    const step = Math.pow(10, Math.floor(Math.log10(value)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * step >= value) return m * step;
    return 10 * step;
  }

  function bars(canvas, ok, bad, minutes) {
    const top = niceTop(Math.max(...ok.map((v, i) => v + bad[i])));
    const { g, box } = frame(canvas, top, (v) => String(Math.round(v * 10) / 10));
    const slot = (box.right - box.left) / minutes.length;
    ok.forEach((v, i) => {
      const x = box.left + i * slot + 1, h1 = (box.bottom - box.top) * v / top;
      const h2 = (box.bottom - box.top) * bad[i] / top;
      g.fillStyle = color("--ok"); g.fillRect(x, box.bottom - h1, slot - 2, h1);
      g.fillStyle = color("--bad"); g.fillRect(x, box.bottom - h1 - h2, slot - 2, h2);
    });
  }

  function lines(canvas, series, colors) {
    const values = series.flat().filter((v) => v !== null);
    const top = niceTop(values.length ? Math.max(...values) : 1);
    const { g, box } = frame(canvas, top, (v) => seconds(v).replace(" ", ""));
    const slot = (box.right - box.left) / series[0].length;
    series.forEach((points, s) => {
      g.strokeStyle = g.fillStyle = color(colors[s]); g.lineWidth = 2; g.beginPath();
      let drawing = false;
      points.forEach((v, i) => {
        if (v === null) { drawing = false; return; }
        const x = box.left + (i + 0.5) * slot, y = box.bottom - (box.bottom - box.top) * v / top;
        if (drawing) g.lineTo(x, y); else g.moveTo(x, y);
        drawing = true;
        g.fillRect(x - 2, y - 2, 4, 4);
      });
      g.stroke();
    });
  }

  // --- start --------------------------------------------------------------------------------
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY, $("key-input").value.trim());
    $("key-input").value = "";
    $("forget-key").hidden = false;
    refresh();
  });
  $("forget-key").addEventListener("click", () => {
    sessionStorage.removeItem(KEY);
    $("forget-key").hidden = true;
    refresh();
  });
  $("forget-key").hidden = !sessionStorage.getItem(KEY);
  refresh();
})();
