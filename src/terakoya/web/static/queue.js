// The work queue: keyboard first, the next item preloaded, every answer sent once (idempotency key).
"use strict";

(() => {
  const { api, toast, newKey, duration, money } = Terakoya;
  const $ = (id) => document.getElementById(id);
  const app = $("app");
  const idleCap = Number(app.dataset.idleCap || 120);
  const currency = app.dataset.currency || "";
  const labelButtons = Array.from(document.querySelectorAll(".label-btn"));
  const rationale = $("rationale");

  let queue = [];          // tasks leased to me: [shown, preloaded, ...]
  let shownId = null;
  let busy = false;
  let filling = false;
  let exhausted = false;
  let lastAction = Date.now();
  let doneTotal = Number($("stat-total-items").textContent) || 0;
  let left = Number($("stat-left").textContent) || 0;

  // ------------------------------------------------------------------ showing

  function render() {
    const task = queue[0];
    $("loading").hidden = true;
    $("task").hidden = !task;
    $("empty").hidden = Boolean(task) || filling;
    if (!task) { shownId = null; return; }
    if (task.task_id === shownId) return;
    shownId = task.task_id;
    $("task-kind").textContent = task.kind === "verify" ? "verify" : "label";
    $("task-item").textContent = task.item_id;
    $("task-text").textContent = task.text;
    const verify = task.kind === "verify" && task.teacher_label;
    $("suggestion").hidden = !verify;
    $("btn-accept").hidden = !verify;
    if (verify) {
      $("sug-label").textContent = task.teacher_label;
      $("sug-conf").textContent = task.teacher_confidence == null ? "(confidence unknown)" : `(${Math.round(100 * task.teacher_confidence)}% sure)`;
    }
    for (const b of labelButtons) {
      b.classList.remove("chosen");
      b.classList.toggle("suggested", Boolean(verify) && b.dataset.label === task.teacher_label);
      b.disabled = false;
    }
    rationale.value = task._rationale || "";
    $("explain-box").open = Boolean(task._rationale);
    if (document.activeElement && document.activeElement !== document.body) document.activeElement.blur();
  }

  function progress() {
    const total = doneTotal + left;
    $("progress-bar").style.width = total ? `${Math.round((100 * doneTotal) / total)}%` : "0%";
  }

  async function refreshStats() {
    try {
      const s = await api("GET", `/api/v1/me/stats?utc_offset_minutes=${-new Date().getTimezoneOffset()}`);
      $("stat-today-items").textContent = s.today.items;
      $("stat-today-time").textContent = duration(s.today.active_seconds);
      $("stat-today-earn").textContent = money(s.today.earnings, currency);
      $("stat-week-items").textContent = s.week.items;
      $("stat-week-time").textContent = duration(s.week.active_seconds);
      $("stat-week-earn").textContent = money(s.week.earnings, currency);
      $("stat-total-items").textContent = s.total.items;
      $("stat-total-earn").textContent = money(s.total.earnings, currency);
      $("stat-left").textContent = s.remaining;
      doneTotal = s.total.items; left = s.remaining;
      progress();
    } catch (err) { /* the numbers catch up on the next answer */ }
  }

  // ------------------------------------------------------------------ the queue

  async function fill() {
    if (filling) return;
    filling = true;
    try {
      while (queue.length < 2 && !exhausted) {
        const query = queue.map((t) => `exclude=${t.task_id}`).join("&");
        const res = await api("GET", `/api/v1/tasks/next${query ? "?" + query : ""}`, undefined, { retries: 2 });
        if (!res.task) { exhausted = true; break; }
        if (queue.some((t) => t.task_id === res.task.task_id)) break;
        res.task._key = newKey();
        queue.push(res.task);
        if (queue.length === 1) { filling = false; render(); filling = true; }
      }
    } catch (err) {
      toast(err.message, { error: true });
    } finally {
      filling = false;
      render();
    }
  }

  function advance() {
    queue.shift();
    render();
    fill();
  }

  function lost(err, task) {
    toast(err.message, { error: !(err.status === 409 || err.status === 404) });
    if (err.status === 409 || err.status === 404) {
      queue = queue.filter((t) => t.task_id !== task.task_id);
      shownId = null;
      render();
      fill();
    }
  }

  function spent() {
    const now = Date.now();
    const seconds = Math.min((now - lastAction) / 1000, idleCap);
    return Math.max(0, Math.round(seconds * 1000) / 1000);
  }

  async function answer(label) {
    const task = queue[0];
    if (!task || busy) return;
    busy = true;
    for (const b of labelButtons) b.classList.toggle("chosen", b.dataset.label === label);
    const body = { label, rationale: rationale.value.trim() || null, active_seconds: spent(), idempotency_key: task._key };
    try {
      await api("POST", `/api/v1/tasks/${task.task_id}/answer`, body, { retries: 3 });
      lastAction = Date.now();
      doneTotal += 1; left = Math.max(0, left - 1);
      advance();
      refreshStats();
    } catch (err) {
      for (const b of labelButtons) b.classList.remove("chosen");
      lost(err, task);
    } finally {
      busy = false;
    }
  }

  async function undo() {
    if (busy) return;
    busy = true;
    try {
      const res = await api("POST", "/api/v1/answers/undo", {});
      lastAction = Date.now();
      if (res.task) {
        queue = queue.filter((t) => t.task_id !== res.task.task_id);
        res.task._key = newKey();
        queue.unshift(res.task);
        exhausted = false;
        shownId = null;
        render();
      }
      toast("Undone — answer it again");
      refreshStats();
    } catch (err) {
      toast(err.message, { error: true });
    } finally {
      busy = false;
    }
  }

  async function skip() {
    const task = queue[0];
    if (!task || busy) return;
    busy = true;
    try {
      await api("POST", `/api/v1/tasks/${task.task_id}/skip`, {}, { retries: 2 });
      lastAction = Date.now();
      left = Math.max(0, left - 1);
      advance();
      toast("Skipped");
    } catch (err) {
      lost(err, task);
    } finally {
      busy = false;
    }
  }

  // ------------------------------------------------------------------ dialogs and panel

  function openDialog(id) {
    const dialog = $(id);
    if (!dialog.open) dialog.showModal();
    const first = dialog.querySelector("input:not([type=radio]), textarea");
    if (first && id !== "help-dialog") first.focus();
  }
  for (const dialog of document.querySelectorAll("dialog")) {
    for (const cancel of dialog.querySelectorAll(".cancel")) cancel.addEventListener("click", () => dialog.close());
  }

  $("flag-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const task = queue[0];
    if (!task) { $("flag-dialog").close(); return; }
    const form = new FormData(event.target);
    const body = { reason: form.get("reason"), comment: form.get("comment") || "", active_seconds: spent(), idempotency_key: task._key };
    try {
      await api("POST", `/api/v1/tasks/${task.task_id}/flag`, body, { retries: 3 });
      lastAction = Date.now();
      $("flag-dialog").close();
      event.target.reset();
      doneTotal += 1; left = Math.max(0, left - 1);
      toast("Flagged — thank you");
      advance();
      refreshStats();
    } catch (err) {
      $("flag-dialog").close();
      lost(err, task);
    }
  });

  $("term-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = new FormData(event.target);
    const body = { term: form.get("term"), definition: form.get("definition"), example: form.get("example") || null };
    try {
      await api("POST", "/api/v1/glossary", body);
      $("term-dialog").close();
      event.target.reset();
      toast("Thanks — sent to the owner for approval");
    } catch (err) {
      toast(err.message, { error: true, ms: 5000 });
    }
  });

  function renderTerms(terms) {
    const holder = $("glossary-terms");
    if (!holder) return;
    const dl = document.createElement("dl");
    dl.className = "terms";
    dl.id = "glossary-terms";
    for (const t of terms) {
      const dt = document.createElement("dt");
      dt.textContent = t.term;
      const dd = document.createElement("dd");
      dd.textContent = t.definition;
      if (t.example) {
        const ex = document.createElement("span");
        ex.className = "muted";
        ex.textContent = ` e.g. “${t.example}”`;
        dd.append(document.createElement("br"), ex);
      }
      dl.append(dt, dd);
    }
    if (terms.length) holder.replaceWith(dl);
  }

  async function togglePanel(force) {
    const panel = $("panel");
    const show = force === undefined ? panel.hidden : force;
    panel.hidden = !show;
    if (show) {
      try {
        const g = await api("GET", "/api/v1/guidelines");
        renderTerms(g.terms);
      } catch (err) { /* the panel keeps what the page brought */ }
    }
  }

  // ------------------------------------------------------------------ keys and taps

  function accept() {
    const task = queue[0];
    if (task && task.kind === "verify" && task.teacher_label) answer(task.teacher_label);
  }

  document.addEventListener("keydown", (event) => {
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) return;
    if (document.querySelector("dialog[open]")) return;
    const target = event.target;
    if (target.matches && target.matches("input, textarea, select")) {
      if (event.key === "Escape") { target.blur(); event.preventDefault(); }
      return;
    }
    const key = event.key;
    if (/^[0-9]$/.test(key)) {
      const button = labelButtons.find((b) => b.dataset.key === key);
      if (button) { event.preventDefault(); answer(button.dataset.label); }
      return;
    }
    const actions = {
      Enter: accept,
      Backspace: undo,
      s: skip, S: skip,
      "?": () => openDialog("help-dialog"),
      g: () => togglePanel(), G: () => togglePanel(),
      e: () => { $("explain-box").open = true; rationale.focus(); },
      E: () => { $("explain-box").open = true; rationale.focus(); },
      f: () => queue[0] && openDialog("flag-dialog"), F: () => queue[0] && openDialog("flag-dialog"),
      t: () => openDialog("term-dialog"), T: () => openDialog("term-dialog"),
      Escape: () => togglePanel(false),
    };
    if (actions[key]) { event.preventDefault(); actions[key](); }
  });

  rationale.addEventListener("input", () => { if (queue[0]) queue[0]._rationale = rationale.value; });
  for (const b of labelButtons) b.addEventListener("click", () => answer(b.dataset.label));
  $("btn-accept").addEventListener("click", accept);
  $("btn-undo").addEventListener("click", undo);
  $("btn-undo-empty").addEventListener("click", undo);
  $("btn-skip").addEventListener("click", skip);
  $("btn-flag").addEventListener("click", () => queue[0] && openDialog("flag-dialog"));
  $("btn-term").addEventListener("click", () => openDialog("term-dialog"));
  $("btn-help").addEventListener("click", () => openDialog("help-dialog"));
  $("btn-panel").addEventListener("click", () => togglePanel());
  $("btn-panel-close").addEventListener("click", () => togglePanel(false));

  // when the queue runs dry, look again now and then
  setInterval(() => { if (!queue.length && !filling) { exhausted = false; fill(); } }, 20000);

  progress();
  fill();
})();
