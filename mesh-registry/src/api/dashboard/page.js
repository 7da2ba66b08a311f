// The mesh dashboard: follows /dashboard/events and draws each view. Every value from the
// registry is written as text (textContent), never as markup: registrants choose their ids,
// hosts and metadata.
"use strict";

let latest = null;
// The registry's clock minus this page's, so renewal ages tick between events.
let skew = 0;

function cell(row, text, className) {
  const td = row.insertCell();
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function ago(ms) {
  const seconds = Math.max(0, Math.round((Date.now() + skew - ms) / 1000));
  return seconds < 60 ? `${seconds} s ago` : `${Math.floor(seconds / 60)} min ago`;
}

function breakers(td, summary) {
  if (!summary || summary.breakers.length === 0) {
    td.textContent = summary ? "none" : "—";
    td.className = "none";
    return;
  }
  for (const breaker of summary.breakers) {
    const chip = document.createElement("span");
    chip.className = `breaker breaker-${breaker.state}`;
    chip.textContent = `${breaker.name}: ${breaker.state}`;
    chip.title = `failure rate ${(breaker.failure_rate * 100).toFixed(0)} %`;
    td.appendChild(chip);
  }
}

function draw() {
  const view = latest;
  if (!view) return;
  document.getElementById("totals").textContent =
    `${view.services.length} services · ${view.instances} instances · revision ${view.revision}`;
  document.getElementById("preservation").hidden = !view.self_preservation;
  const template = document.getElementById("service-template");
  const sections = [];
  for (const service of view.services) {
    const section = template.content.firstElementChild.cloneNode(true);
    section.dataset.service = service.name;
    section.querySelector("h2").textContent = service.name;
    const body = section.querySelector("tbody");
    for (const instance of service.instances) {
      const row = body.insertRow();
      row.dataset.instance = instance.id;
      const summary = instance.summary;
      cell(row, instance.id);
      cell(row, `${instance.host}:${instance.port}`);
      cell(row, instance.overridden ? `${instance.status} (override)` : instance.status,
        `status-${instance.status}`);
      cell(row, instance.version ?? "—");
      const expired = Date.now() + skew > instance.lease_expires_ms;
      cell(row, ago(instance.last_renewal_ms), expired ? "stale" : "").dataset.renewal =
        instance.last_renewal_ms;
      // A summary older than the last renewal came before it: the latest renewal reached
      // another replica, or the instance stopped sending them. Shown, but greyed.
      const figures = summary && instance.summary_ms + 1000 < instance.last_renewal_ms
        ? "number old" : "number";
      cell(row, summary ? summary.requests_per_second.toFixed(1) : "—", figures);
      cell(row, summary ? `${(summary.error_rate * 100).toFixed(1)} %` : "—", figures);
      cell(row, summary ? `${summary.mean_latency_ms.toFixed(1)} ms` : "—", figures);
      breakers(row.insertCell(), summary);
    }
    sections.push(section);
  }
  document.getElementById("services").replaceChildren(...sections);
}

function connect() {
  const connection = document.getElementById("connection");
  const events = new EventSource("/dashboard/events");
  events.addEventListener("view", (event) => {
    latest = JSON.parse(event.data);
    skew = latest.now_ms - Date.now();
    connection.dataset.state = "live";
    connection.textContent = "live";
    draw();
  });
  events.addEventListener("unavailable", (event) => {
    connection.dataset.state = "lost";
    connection.textContent = `registry store unavailable: ${event.data}`;
  });
  events.onerror = () => {
    connection.dataset.state = "lost";
    connection.textContent = "reconnecting…";
  };
}

// Renewal ages move every second without a new view.
setInterval(() => {
  for (const td of document.querySelectorAll("td[data-renewal]")) {
    td.textContent = ago(Number(td.dataset.renewal));
  }
}, 1000);

connect();
