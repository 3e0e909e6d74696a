// The monitor page's behaviour (watcher/web/page.py renders everything; this only asks for
// it again). Served by the service itself: the page's Content-Security-Policy allows no
// inline script and no other origin.
"use strict";
(function () {
  const body = document.body;
  const lang = body.dataset.lang || "es";
  const csrf = body.dataset.csrf || "";
  const main = document.getElementById("view");
  const button = document.getElementById("backup");
  const note = document.getElementById("backup-note");
  if (!main || !button || !note) { return; }
  const IDLE_MS = 10000;    // nothing happening: look again every 10 s
  const BUSY_MS = 1000;     // a backup in progress: follow it every second
  let timer = null;
  let watching = null;      // the last run's start time when the button was pressed

  function now() { return main.querySelector(".now"); }

  function update() {
    const section = now();
    const running = section && section.dataset.running === "1";
    button.disabled = running;
    if (watching !== null && section && !running && section.dataset.run !== watching) {
      note.textContent = section.dataset.result || "";
      watching = null;
    }
    return running || watching !== null;
  }

  function schedule(ms) {
    clearTimeout(timer);
    if (!document.hidden) { timer = setTimeout(refresh, ms); }
  }

  async function refresh() {
    try {
      const answer = await fetch("/view?lang=" + lang, { credentials: "same-origin",
                                                        cache: "no-store" });
      if (answer.status === 401) { window.location.reload(); return; }
      if (answer.ok) { main.innerHTML = await answer.text(); }
    } catch (e) {
      // the service is restarting or the network dropped: try again later
    }
    schedule(update() ? BUSY_MS : IDLE_MS);
  }

  button.addEventListener("click", async function () {
    button.disabled = true;
    const section = now();
    const before = section ? section.dataset.run || "" : "";
    try {
      const answer = await fetch("/api/backup?lang=" + lang, {
        method: "POST", credentials: "same-origin", headers: { "X-CSRF-Token": csrf } });
      const data = await answer.json();
      note.textContent = data.message || data.error || "";
      if (data.state === "started" || data.state === "running") { watching = before; }
    } catch (e) {
      note.textContent = "";
    }
    schedule(300);
  });

  document.addEventListener("visibilitychange", function () {
    if (document.hidden) { clearTimeout(timer); } else { refresh(); }
  });
  update();
  schedule(IDLE_MS);
})();
