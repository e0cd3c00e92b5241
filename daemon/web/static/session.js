// A session's page: its head, live status, timeline (the newest steps first loaded,
// older ones on demand), a step's params and result, a diff, and the actions.
"use strict";
const id = decodeURIComponent(location.pathname.split("/").pop());
const api = "/api/sessions/" + encodeURIComponent(id);
const rows = document.querySelector("#timeline tbody");
const said = document.getElementById("said");
const PAGE = 200;
let oldest = null;   // the step before the oldest shown (null: none loaded yet)
let lastSeq = 0;
let isOpen = false;

async function call(path, options) {
  const reply = await fetch(path, options);
  const body = await reply.json();
  if (!reply.ok) throw new Error(`${body.error.code}: ${body.error.message}`);
  return body;
}

function when(epoch) { return new Date(epoch * 1000).toLocaleTimeString(); }

async function loadHead() {
  const shown = await call(api + "?limit=1");
  const data = shown.data;
  isOpen = shown.status === "open";
  const head = document.getElementById("head");
  head.replaceChildren();
  if (!isOpen) {
    const img = Object.assign(document.createElement("img"), { src: api + "/thumbnail.png", alt: "thumbnail" });
    img.onerror = () => img.remove();
    head.append(img);
  }
  const text = document.createElement("div");
  const title = document.createElement("h1");
  title.textContent = data.name || data.session_id;
  const facts = document.createElement("div");
  facts.className = "muted";
  facts.id = "facts";
  facts.textContent = `${data.session_id} · ${shown.status} · ${data.command_count} commands · ` +
    `${data.state.objects.length} objects · Blender ${data.blender.version || "?"}`;
  const link = document.createElement("div");
  link.id = "link";
  link.className = "muted";
  text.append(title, facts, link);
  head.append(text);
  document.getElementById("data").textContent = JSON.stringify(data.data || {}, null, 2);
  document.getElementById("export").href = api + "/export.tar.gz";
  document.getElementById("export").setAttribute("download", id + ".tar.gz");
  for (const button of document.querySelectorAll("[data-action=close],[data-action=checkpoint]")) {
    button.disabled = !isOpen;
  }
  for (const button of document.querySelectorAll("[data-action=restore],[data-action=delete],#export")) {
    button.toggleAttribute("disabled", isOpen);
  }
}

function row(entry) {
  const tr = document.createElement("tr");
  tr.className = entry.kind + " " + entry.status;
  tr.dataset.seq = entry.seq;
  const what = entry.kind === "command" ? entry.summary : entry.summary;
  const objects = entry.objects && entry.objects.length ? " (" + entry.objects.slice(0, 4).join(", ") + ")" : "";
  const cells = [entry.kind === "checkpoint" ? "@" + entry.seq : entry.seq, when(entry.at), entry.kind,
                 what + objects + (entry.error ? " - " + entry.error : ""), entry.status,
                 entry.duration_ms == null ? "" : entry.duration_ms.toFixed(1)];
  for (const value of cells) {
    const td = document.createElement("td");
    td.textContent = value;
    tr.append(td);
  }
  const td = document.createElement("td");
  if (isOpen && entry.kind !== "checkpoint") {
    const button = Object.assign(document.createElement("button"), { textContent: "Rewind here" });
    button.className = "rewind";
    button.onclick = (e) => { e.stopPropagation(); act("rewind", { to_seq: entry.seq }); };
    td.append(button);
  }
  tr.append(td);
  tr.onclick = () => pick(entry);
  if (entry.kind === "checkpoint" && entry.status === "kept") drawCheckpoint(tr.children[3], entry.seq);
  return tr;
}

// A checkpoint's picture: its objects from above, drawn from the scene it recorded
// (no render: rendering at each checkpoint would cost Blender seconds on big scenes).
async function drawCheckpoint(cell, seq) {
  let state;
  try { state = await call(api + `/checkpoints/${seq}/state`); } catch { return; }
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", "0 0 64 64");
  svg.setAttribute("class", "map");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", `checkpoint ${seq}: ${state.objects.length} objects from above`);
  const xs = state.objects.map((o) => o.location[0]), ys = state.objects.map((o) => o.location[1]);
  const low = Math.min(...xs, ...ys, -1), high = Math.max(...xs, ...ys, 1);
  const scale = 56 / (high - low);
  for (const o of state.objects.slice(0, 2000)) {
    const dot = document.createElementNS("http://www.w3.org/2000/svg", "circle");
    dot.setAttribute("cx", 4 + (o.location[0] - low) * scale);
    dot.setAttribute("cy", 60 - (o.location[1] - low) * scale);
    dot.setAttribute("r", 2);
    const title = document.createElementNS("http://www.w3.org/2000/svg", "title");
    title.textContent = o.name;
    dot.append(title);
    svg.append(dot);
  }
  cell.prepend(svg);
}

async function pick(entry) {
  for (const picked of rows.querySelectorAll(".picked")) picked.classList.remove("picked");
  rows.querySelector(`tr[data-seq="${entry.seq}"]`)?.classList.add("picked");
  const step = document.getElementById("step");
  if (entry.kind !== "command") { step.textContent = JSON.stringify(entry, null, 2); return; }
  const shown = await call(api + `?after_seq=${entry.seq - 1}&limit=1`);
  const command = shown.data.commands.find((c) => c.seq === entry.seq);
  step.textContent = JSON.stringify(command || entry, null, 2);
}

async function loadPage(after) {
  return call(api + `/timeline?after_seq=${after}&limit=${PAGE}`);
}

async function loadNewest() {
  const first = await loadPage(0);
  lastSeq = first.last_seq;
  const from = Math.max(0, lastSeq - PAGE);
  const page = from === 0 ? first : await loadPage(from);
  rows.replaceChildren(...page.entries.map(row));
  oldest = from;
  document.getElementById("steps").textContent = `${lastSeq} steps`;
  document.getElementById("older").hidden = oldest === 0;
}

document.getElementById("older").onclick = async () => {
  const from = Math.max(0, oldest - PAGE);
  const page = await loadPage(from);
  rows.prepend(...page.entries.filter((e) => e.seq <= oldest).map(row));
  oldest = from;
  document.getElementById("older").hidden = oldest === 0;
};

async function act(action, body) {
  said.textContent = action + "...";
  try {
    if (action === "delete") {
      if (!confirm(`Delete session ${id} and its files? This cannot be undone.`)) { said.textContent = ""; return; }
      await call(api, { method: "DELETE" });
      location.href = "/";
      return;
    }
    const result = await call(api + "/" + action, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body || {}),
    });
    said.textContent = describe(action, result);
    if (action === "restore") { location.href = "/sessions/" + encodeURIComponent(result.session_id); return; }
    await loadHead();
    await loadNewest();
  } catch (error) {
    said.textContent = error.message;
  }
}

function describe(action, result) {
  switch (action) {
    case "rewind": return `rewound to step ${result.to_seq}`;
    case "checkpoint": return `checkpoint at step ${result.seq}`;
    case "close": return `closed; saved to ${result.path}`;
    case "restore": return `restored via ${result.path}`;
    default: return "done";
  }
}

for (const button of document.querySelectorAll("[data-action]")) {
  button.onclick = () => {
    const action = button.dataset.action;
    if (action !== "restore") { act(action); return; }
    const body = { path: document.getElementById("restore-path").value };
    const at = document.getElementById("restore-at").value;
    if (at !== "") { body.at_seq = Number(at); if (body.path === "auto") body.path = "checkpoint"; }
    act("restore", body);
  };
}

document.getElementById("diff-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const from = document.getElementById("diff-from").value || "0";
  const to = document.getElementById("diff-to").value;
  const box = document.getElementById("diff");
  try {
    const diff = await call(api + `/diff?from=${from}` + (to ? `&to=${to}` : ""));
    const lines = [];
    for (const o of diff.added) lines.push("added   " + o.name);
    for (const o of diff.removed) lines.push("removed " + o.name);
    for (const c of diff.changed) lines.push("changed " + c.name + ": " + Object.keys(c.fields || c.changes || {}).join(", "));
    box.textContent = lines.length ? lines.join("\n") : "no change";
    box.className = "step";
  } catch (error) {
    box.textContent = error.message;
  }
});

const live = document.getElementById("live");
const events = new EventSource("/api/events");
let refreshing = false;
async function refreshSoon() {
  // New steps only: the ones after the newest shown (events come coalesced, ~5 a second).
  if (refreshing) return;
  refreshing = true;
  try {
    const newest = rows.lastElementChild ? Number(rows.lastElementChild.dataset.seq) : 0;
    const page = await loadPage(newest);
    rows.append(...page.entries.filter((e) => e.seq > newest || (e.kind === "checkpoint" && e.seq >= newest)).map(row));
    lastSeq = page.last_seq;
    document.getElementById("steps").textContent = `${lastSeq} steps`;
    while (rows.children.length > 2000) rows.firstElementChild.remove();  // a bounded page
    if (!isOpen || page.next_after_seq !== null) await loadHead();
  } finally {
    refreshing = false;
  }
}
events.addEventListener("watching", () => { live.textContent = "live"; });
events.addEventListener("command", (e) => { if (JSON.parse(e.data).session_id === id) refreshSoon(); });
for (const name of ["command_late", "session_closed", "blender_restarted"]) {
  events.addEventListener(name, async () => { await loadHead(); await loadNewest(); });
}
events.addEventListener("shared_changed", async (e) => {  // changed by another daemon
  if (JSON.parse(e.data).session_id === id) { await loadHead(); await loadNewest(); }
});
events.addEventListener("heartbeat", (e) => {
  const link = JSON.parse(e.data);
  const ago = link.last_heartbeat ? ((Date.now() / 1000) - link.last_heartbeat).toFixed(1) + " s ago" : "never";
  live.textContent = `Blender ${link.blender_version || ""} ${link.status}`;
  const shown = document.getElementById("link");
  if (shown && isOpen) {
    shown.textContent = `Blender ${link.status} · last heartbeat ${ago} · queue ${link.queue_depth}` +
      (link.busy_for_ms ? ` · busy ${link.busy_for_ms} ms` : "");
  }
});
events.onerror = () => { live.textContent = "reconnecting..."; };
loadHead().then(loadNewest).catch((error) => { said.textContent = error.message; });
