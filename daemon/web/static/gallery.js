// The gallery: every session, newest first, with its thumbnail; search and a filter.
"use strict";
const gallery = document.getElementById("gallery");
const count = document.getElementById("count");
const q = document.getElementById("q");
const statusFilter = document.getElementById("status");

function when(epoch) {
  return epoch ? new Date(epoch * 1000).toLocaleString() : "-";
}

function size(bytes) {
  return bytes > 1048576 ? (bytes / 1048576).toFixed(1) + " MB" : Math.ceil(bytes / 1024) + " KB";
}

function card(s) {
  const link = document.createElement("a");
  link.className = "card";
  link.href = "/sessions/" + encodeURIComponent(s.session_id);
  link.dataset.session = s.session_id;
  const picture = s.status === "closed" ? document.createElement("img") : document.createElement("div");
  if (s.status === "closed") {
    picture.loading = "lazy";
    picture.alt = "thumbnail of " + (s.name || s.session_id);
    picture.src = "/api/sessions/" + encodeURIComponent(s.session_id) + "/thumbnail.png";
    picture.onerror = () => picture.replaceWith(Object.assign(document.createElement("div"),
      { className: "noimg", textContent: "no thumbnail" }));
  } else {
    picture.className = "noimg";
    picture.textContent = "recording";
  }
  const meta = document.createElement("div");
  meta.className = "meta";
  const name = document.createElement("div");
  name.className = "name";
  name.textContent = s.name || s.session_id;
  const badge = document.createElement("span");
  badge.className = "status " + s.status;
  badge.textContent = s.status;
  const facts = document.createElement("div");
  facts.className = "muted";
  facts.textContent = `${s.command_count} commands · ${size(s.size_bytes)}` +
    (s.blender_version ? ` · Blender ${s.blender_version}` : "");
  const times = document.createElement("div");
  times.className = "muted";
  times.textContent = `created ${when(s.created_at)}` + (s.closed_at ? ` · closed ${when(s.closed_at)}` : "");
  meta.append(name, badge, facts, times);
  if (s.held_by || s.detached) {  // another daemon's session (a shared store), or stopped
    const where = document.createElement("div");
    where.className = "muted held";
    where.textContent = s.held_by ? `held by ${s.held_by}` : s.detached;
    meta.append(where);
  }
  link.append(picture, meta);
  return link;
}

function damagedCard(d) {
  const box = document.createElement("div");
  box.className = "card";
  box.innerHTML = "<div class=noimg>damaged</div><div class=meta><div class=name></div>" +
    "<span class='status damaged'>damaged</span><div class=muted></div></div>";
  box.querySelector(".name").textContent = d.file;
  box.querySelector(".muted").textContent = d.reason;
  return box;
}

let asked = 0;
async function load() {
  const mine = ++asked;
  const params = new URLSearchParams({ limit: "10000", status: statusFilter.value });
  if (q.value.trim()) params.set("q", q.value.trim());
  const reply = await fetch("/api/sessions?" + params);
  if (mine !== asked) return;
  const listed = await reply.json();
  if (!reply.ok) { count.textContent = listed.error.message; return; }
  gallery.replaceChildren(...listed.sessions.map(card), ...(listed.damaged || []).map(damagedCard));
  count.textContent = `${listed.sessions.length} sessions`;
}

let typing;
q.addEventListener("input", () => { clearTimeout(typing); typing = setTimeout(load, 200); });
statusFilter.addEventListener("change", load);
document.getElementById("search").addEventListener("submit", (e) => { e.preventDefault(); load(); });

const live = document.getElementById("live");
const events = new EventSource("/api/events");
events.addEventListener("watching", () => { live.textContent = "live"; });
for (const name of ["session_opened", "session_closed"]) events.addEventListener(name, load);
// Another daemon's session changed (a shared store): the list again, at most once a second.
let sharedTimer = null;
events.addEventListener("shared_changed", () => {
  if (sharedTimer === null) sharedTimer = setTimeout(() => { sharedTimer = null; load(); }, 1000);
});
events.addEventListener("heartbeat", (e) => {
  const link = JSON.parse(e.data);
  live.textContent = `Blender ${link.blender_version || ""} ${link.status}`;
});
events.onerror = () => { live.textContent = "reconnecting..."; };
load();
