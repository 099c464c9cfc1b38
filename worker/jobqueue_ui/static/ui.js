// The UI's only script, loaded from this origin (the CSP allows no other): live counts on
// the Queues page, and "select every job on this page" on the Jobs page.
"use strict";

const REFRESH_MS = 2000;

function formatAge(seconds) {
  if (seconds === null) return "-";
  if (seconds < 60) return `${Math.round(seconds)}s`;
  if (seconds < 3600) return `${Math.round(seconds / 60)}m`;
  if (seconds < 86400) return `${(seconds / 3600).toFixed(1)}h`;
  return `${(seconds / 86400).toFixed(1)}d`;
}

function formatRate(rate) {
  return rate === null ? "-" : `${rate.toFixed(1)}/s`;
}

function setCount(cell, queue, status, count) {
  cell.textContent = "";
  if (count === 0) {
    cell.textContent = "0";
    return;
  }
  const link = document.createElement("a");
  link.href = `/jobs?queue=${encodeURIComponent(queue)}&status=${status}`;
  link.textContent = count.toLocaleString("en-US");
  cell.appendChild(link);
}

async function refreshQueues(table) {
  let answer;
  try {
    answer = await fetch(table.dataset.refresh, {
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    });
  } catch (error) {
    document.getElementById("refreshed").textContent = "Not refreshed: the UI is unreachable.";
    return;
  }
  if (!answer.ok) {
    document.getElementById("refreshed").textContent = `Not refreshed: ${answer.status}.`;
    return;
  }
  const overview = await answer.json();
  const rows = new Map(
    Array.from(table.tBodies[0].rows, (row) => [row.dataset.queue, row]),
  );
  const names = overview.queues.map((queue) => queue.name);
  const paused = (row) => row.querySelector('[data-field="state"] .paused') !== null;
  const changed =
    names.length !== rows.size ||
    overview.queues.some(
      (queue) => !rows.has(queue.name) || paused(rows.get(queue.name)) !== (queue.paused_at !== null),
    );
  if (changed) {
    window.location.reload(); // a queue came or went, or was paused elsewhere
    return;
  }
  for (const queue of overview.queues) {
    const row = rows.get(queue.name);
    const field = (name) => row.querySelector(`[data-field="${name}"]`);
    for (const [status, count] of Object.entries(queue.counts)) {
      setCount(field(status), queue.name, status, count);
    }
    field("enqueued_rate").textContent = formatRate(queue.enqueued_rate);
    field("finished_rate").textContent = formatRate(queue.finished_rate);
    field("oldest_ready_age").textContent = formatAge(queue.oldest_ready_age);
    field("workers").textContent = String(queue.workers);
    field("busy").textContent = `${queue.busy}/${queue.slots}`;
  }
  const now = new Date();
  document.getElementById("refreshed").textContent =
    `Refreshed ${now.toISOString().slice(11, 19)} UTC.`;
  table.dataset.refreshes = String(Number(table.dataset.refreshes || "0") + 1);
}

function liveQueues() {
  const table = document.getElementById("queues");
  if (table === null) return;
  const tick = async () => {
    await refreshQueues(table);
    window.setTimeout(tick, REFRESH_MS);
  };
  window.setTimeout(tick, REFRESH_MS);
}

function selectAll() {
  const all = document.getElementById("select-all");
  if (all === null) return;
  all.addEventListener("change", () => {
    for (const box of document.querySelectorAll('#jobs input[name="id"]')) {
      box.checked = all.checked;
    }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  liveQueues();
  selectAll();
});
