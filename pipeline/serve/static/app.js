// Shoal's pages: live job progress on the dashboard, and the version-diff form.
"use strict";

function jobRow(j) {
  const tr = document.createElement("tr");
  tr.dataset.job = j.id;
  const cells = [
    `<a href="/v1/jobs/${j.id}">${j.id}</a>`, j.kind, j.state,
    `<progress max="1"></progress> <span class="pct"></span>`, "", j.worker_host || "",
    (j.created_at || "").slice(0, 16).replace("T", " "),
  ];
  tr.innerHTML = cells.map((c) => `<td>${c}</td>`).join("");
  tr.children[2].className = "state";
  tr.children[4].className = "msg";
  return tr;
}

function updateRow(tr, j) {
  const state = tr.children[2];
  state.textContent = j.state;
  state.className = `state ${j.state}`;
  tr.querySelector("progress").value = j.progress;
  tr.querySelector(".pct").textContent = `${Math.round(j.progress * 100)}%`;
  tr.querySelector(".msg").textContent = (j.error || j.message || "").slice(0, 80);
}

async function refreshJobs(table) {
  let jobs;
  try {
    const response = await fetch(table.dataset.live, { headers: { Accept: "application/json" } });
    if (!response.ok) return;
    jobs = await response.json();
  } catch (_err) {
    return;  // the server restarts or the network blips: try again at the next tick
  }
  const body = table.tBodies[0];
  const empty = body.querySelector("tr.empty");
  if (empty && jobs.length) empty.remove();
  for (const j of jobs.slice().reverse()) {
    let tr = body.querySelector(`tr[data-job="${j.id}"]`);
    if (!tr) {
      tr = jobRow(j);
      body.prepend(tr);
    }
    updateRow(tr, j);
  }
  table.dataset.refreshed = String(Date.now());
}

function shoalDiff(form) {
  const old = form.querySelector("input[name=old]:checked");
  const neu = form.querySelector("input[name=new]:checked");
  if (old && neu) {
    window.location.href = `/datasets/${encodeURIComponent(old.value)}/diff/${encodeURIComponent(neu.value)}`;
  }
  return false;
}

document.addEventListener("DOMContentLoaded", () => {
  const table = document.querySelector("table[data-live]");
  if (table) {
    refreshJobs(table);
    setInterval(() => refreshJobs(table), 2000);
  }
});
