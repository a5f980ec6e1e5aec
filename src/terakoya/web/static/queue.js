// The work queue: keyboard first, and never waiting for the server.
//
// - The next task is leased ahead (prefetched), so an answer shows the next item at once.
// - Answers go to an outbox kept in localStorage and are sent in the background, one at a time and in order;
//   one the network lost is sent again (its idempotency key makes a resend harmless) until the server answers,
//   after a reload too. Only an answer the server refuses (a lease that ran out) is dropped, and the trainer is told.
// - After each answer a short trace says what was recorded, and the last few answers are listed with their state.
// - Single-key shortcuts can be switched off (WCAG 2.1.4); the setting is kept in this browser.
"use strict";

(() => {
  const { api, toast, newKey, duration, money, store, csrf: csrfToken } = Terakoya;
  const $ = (id) => document.getElementById(id);
  const app = $("app");
  const idleCap = Number(app.dataset.idleCap || 120);
  const maxHeld = Number(app.dataset.maxHeld || 3);
  const currency = app.dataset.currency || "";
  const outboxKey = app.dataset.outbox || "terakoya.outbox";
  const keysKey = "terakoya.shortcuts";
  const panelKey = "terakoya.panel";
  const labelButtons = Array.from(document.querySelectorAll(".label-btn"));
  const rationale = $("rationale");
  const touch = window.matchMedia("(hover: none)").matches;
  const wide = window.matchMedia("(min-width: 1100px)");
  const RECENT = 5;

  let queue = [];           // tasks leased to me and not answered yet: [shown, preloaded]
  let shownId = null;
  let filling = false;
  // paused (the server rendered the notice, or the API said so): no task is asked for
  let paused = !document.getElementById("paused").hidden;
  let exhausted = paused;
  let lastAction = Date.now();
  let doneTotal = Number($("stat-total-items").textContent) || 0;
  let left = Number($("stat-left").textContent) || 0;
  let keysOn = store.get(keysKey, true) !== false;
  const recent = [];        // my last answers, newest first: {key, label, text, state, answerId}

  // ------------------------------------------------------------------ the outbox

  // entries: {key, type: "answer" | "flag", task_id, body, label, text, task, tried}; the oldest is sent first.
  // Storage is read and written per change, so that two tabs of the same person do not drop each other's.
  const outbox = {
    read() { const list = store.get(outboxKey, []); return Array.isArray(list) ? list : []; },
    add(entry) { store.set(outboxKey, [...outbox.read().filter((e) => e.key !== entry.key), entry]); },
    remove(key) { store.set(outboxKey, outbox.read().filter((e) => e.key !== key)); },
    update(entry) { store.set(outboxKey, outbox.read().map((e) => (e.key === entry.key ? entry : e))); },
  };
  let pending = outbox.read();  // what an earlier page (or another tab) left unsent is sent from here too
  let sending = null;           // the entry on the wire
  let sendingDone = null;       // ...and the promise that settles with it
  let retryTimer = null;
  let failures = 0;

  const url = (entry) => `/api/v1/tasks/${entry.task_id}/${entry.type === "flag" ? "flag" : "answer"}`;
  // worth sending again: the network, a server error or a busy server; a refusal (4xx) is final
  const retriable = (err) => err.status === 0 || err.status >= 500 || err.status === 429 || err.status === 401;

  function flush() {
    if (sending || retryTimer || !pending.length) return sendingDone;
    const entry = pending[0];
    sending = entry;
    if (!entry.tried) { entry.tried = true; outbox.update(entry); }
    sendingDone = (async () => {
      try {
        const res = await api("POST", url(entry), entry.body);
        failures = 0;
        settle(entry, "saved", res);
        // this answer, on a check item, paused its author: stop offering items and say why
        if (res && res.paused) showPaused(res.paused);
      } catch (err) {
        if (retriable(err)) {
          failures += 1;
          retryTimer = setTimeout(() => { retryTimer = null; flush(); }, Math.min(15000, 250 * 2 ** Math.min(failures - 1, 6)));
        } else {
          settle(entry, "refused", null, err);
        }
      } finally {
        sending = null;
        sendingDone = null;
        showSync();
      }
      if (!retryTimer) flush();
      fill();
    })();
    return sendingDone;
  }

  function settle(entry, state, res, err) {
    pending = pending.filter((e) => e.key !== entry.key);
    outbox.remove(entry.key);
    const row = recent.find((r) => r.key === entry.key);
    if (row) { row.state = state; row.answerId = res ? res.answer_id : null; row.error = err ? err.message : ""; }
    renderRecent();
    if (state === "refused") {
      toast(`Not saved: “${snippet(entry.text, 40)}” — ${err.message}`, { error: true, ms: 8000 });
      doneTotal = Math.max(0, doneTotal - 1);
      progress();
    }
    refreshStatsSoon();
  }

  function showSync() {
    const sync = $("sync");
    const waiting = pending.length;
    sync.hidden = !waiting || (!retryTimer && failures === 0);
    sync.textContent = waiting === 1 ? "1 answer waiting for the connection…" : `${waiting} answers waiting for the connection…`;
  }

  window.addEventListener("online", () => { if (retryTimer) { clearTimeout(retryTimer); retryTimer = null; } flush(); });

  // ------------------------------------------------------------------ showing

  function snippet(text, n) {
    const t = (text || "").replace(/\s+/g, " ").trim();
    return t.length > n ? `${t.slice(0, n - 1)}…` : t;
  }

  function render() {
    const task = paused ? null : queue[0];
    $("task").hidden = !task;
    $("empty").hidden = Boolean(task) || !exhausted || paused;
    $("loading").hidden = Boolean(task) || exhausted;
    $("loading").textContent = failures && pending.length ? "Waiting for the connection to send your answers…" : "Loading…";
    if (!task) { shownId = null; return; }
    if (task.task_id === shownId) return;
    shownId = task.task_id;
    const w = widget(task);
    if (w) {
      // a written-answer task: its widget shows the answers to judge and takes the keys first
      $("task-prompt").textContent = w.title(task);
      $("task-text").textContent = w.text(task);
      $("suggestion").hidden = true;
      $("btn-accept").hidden = true;
      w.show(task);
      rationale.value = task._rationale || "";
      $("explain-box").open = Boolean(task._rationale);
      if (!document.querySelector("dialog[open]") && !$("panel").contains(document.activeElement)
          && document.activeElement !== $("gen-edit-text")) {
        $("task").focus({ preventScroll: true });
      }
      return;
    }
    const verify = task.kind === "verify" && Boolean(task.teacher_label);
    $("task-prompt").textContent = verify ? "Check the teacher's label" : "Choose the label that fits";
    $("task-text").textContent = task.text;
    $("suggestion").hidden = !verify;
    $("btn-accept").hidden = !verify;
    if (verify) {
      $("sug-label").textContent = task.teacher_label;
      $("accept-label").textContent = task.teacher_label;
      $("sug-conf").textContent = task.teacher_confidence == null ? "(sureness unknown)" : `(${Math.round(100 * task.teacher_confidence)}% sure)`;
    }
    for (const b of labelButtons) {
      b.classList.toggle("suggested", verify && b.dataset.label === task.teacher_label);
      b.disabled = false;
    }
    rationale.value = task._rationale || "";
    $("explain-box").open = Boolean(task._rationale);
    // the work area keeps the focus: keys and screen readers stay with the item
    if (!document.querySelector("dialog[open]") && !$("panel").contains(document.activeElement)) {
      $("task").focus({ preventScroll: true });
    }
  }

  // the task kind's own widget, for tasks that bring their content (generate.v1); null for label tasks
  function widget(task) {
    return task && task.content && window.TerakoyaWidget ? window.TerakoyaWidget : null;
  }

  function trace(text) {
    $("trace-text").textContent = text;
  }

  const undoHint = () => (keysOn && !touch ? "Backspace to undo" : "Undo takes it back");

  function renderRecent() {
    const list = $("recent-list");
    $("recent").hidden = !recent.length;
    list.replaceChildren(...recent.map((r) => {
      const li = document.createElement("li");
      li.className = `recent-item ${r.state}`;
      const label = document.createElement("strong");
      label.textContent = r.label;
      const text = document.createElement("span");
      text.className = "recent-text";
      text.textContent = snippet(r.text, 90);
      const state = document.createElement("span");
      state.className = "recent-state";
      state.textContent = {
        sending: "saving…", saved: "saved ✓", refused: `not saved: ${r.error}`, undone: "undone",
      }[r.state] || r.state;
      li.append(label, " ", text, " ", state);
      return li;
    }));
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
      doneTotal = s.total.items + pending.length; left = Math.max(0, s.remaining - pending.length);
      progress();
    } catch (err) { /* the numbers catch up after the next answer */ }
  }

  let statsTimer = null;
  function refreshStatsSoon() {
    clearTimeout(statsTimer);
    statsTimer = setTimeout(refreshStats, 250);
  }

  // ------------------------------------------------------------------ the queue

  const skipping = new Set();  // tasks whose skip is on its way: the server counts them as held until it lands
  const held = () => queue.length + pending.length + skipping.size;

  // lease tasks until one is shown and one is ready behind it; ``again``: look even after the queue ran dry
  async function fill(again = false) {
    if (filling || paused) return;
    filling = true;
    try {
      // the server lets one person hold a few tasks; answers on their way still hold theirs
      while (queue.length < 2 && (again || !exhausted) && held() < maxHeld) {
        const skip = [...queue.map((t) => t.task_id), ...pending.map((e) => e.task_id), ...skipping];
        const query = skip.map((id) => `exclude=${id}`).join("&");
        const res = await api("GET", `/api/v1/tasks/next${query ? "?" + query : ""}`, undefined, { retries: 2 });
        if (paused) {  // paused while the request was on its way: the task goes back to the others
          if (res.task) api("POST", "/api/v1/tasks/release", { task_ids: [res.task.task_id] }).catch(() => {});
          break;
        }
        if (!res.task) { exhausted = true; break; }
        exhausted = false;
        const id = res.task.task_id;
        if (queue.some((t) => t.task_id === id) || pending.some((e) => e.task_id === id) || skipping.has(id)) break;
        res.task._key = newKey();
        queue.push(res.task);
        if (queue.length === 1) render();
      }
    } catch (err) {
      // paused for check items answered wrongly: say why, and offer no more tasks
      if (err.code === "paused") showPaused(err.message);
      // 409: the server still counts tasks whose answers or skips are on their way; look again shortly
      else if (err.status === 409) setTimeout(() => fill(), 1000);
      else toast(err.message, { error: true });
    } finally {
      filling = false;
      render();
    }
  }

  function showPaused(message) {
    paused = true;
    exhausted = true;
    // the tasks held for later go back to the others (answers on their way are still sent)
    const ids = queue.map((t) => t.task_id).filter((id) => !pending.some((e) => e.task_id === id));
    if (ids.length) api("POST", "/api/v1/tasks/release", { task_ids: ids }).catch(() => {});
    queue = [];
    $("paused-reason").textContent = message.replace(/^you are paused on this project: /, "").split(". Look at")[0].replace(/\.?$/, ".");
    $("paused").hidden = false;
    render();
  }

  function spent() {
    const now = Date.now();
    const seconds = Math.min((now - lastAction) / 1000, idleCap);
    lastAction = now;
    return Math.max(0, Math.round(seconds * 1000) / 1000);
  }

  // record an answer (or a flag) for the task shown: the next item shows now, the server hears in the background
  function submit(type, label, body) {
    const task = queue[0];
    if (!task) return;
    const entry = {
      key: task._key, type, task_id: task.task_id, body: { ...body, idempotency_key: task._key },
      label, text: task.text, task: { ...task, _rationale: rationale.value }, tried: false,
    };
    pending.push(entry);
    outbox.add(entry);
    queue.shift();
    render();
    doneTotal += 1; left = Math.max(0, left - 1);
    progress();
    trace(`${label} ✓ — ${undoHint()}`);
    recent.unshift({ key: entry.key, label, text: task.text, state: "sending" });
    recent.length = Math.min(recent.length, RECENT);
    renderRecent();
    setTimeout(() => { flush(); fill(); }, 0);
  }

  function answer(label) {
    if (!queue[0]) return;
    submit("answer", label, { label, rationale: rationale.value.trim() || null, active_seconds: spent() });
  }

  // a widget's answer: ``label`` is what the trace and the recent list say, ``value`` what the server reads
  window.TerakoyaQueue = {
    answer(label, value) {
      if (!queue[0]) return;
      submit("answer", label, { value, rationale: rationale.value.trim() || null, active_seconds: spent() });
    },
  };

  function putBack(task) {
    queue = [task, ...queue.filter((t) => t.task_id !== task.task_id)];
    exhausted = false;
    shownId = null;
    render();
  }

  let undoing = false;
  async function undo() {
    if (undoing) return;
    undoing = true;
    try {
      // an answer still in this browser and never sent is taken back here; one on the wire is waited for
      for (;;) {
        const last = pending[pending.length - 1];
        if (!last) break;
        if (last !== sending && !last.tried) {
          pending.pop();
          outbox.remove(last.key);
          putBack({ ...last.task, _key: newKey() });
          markUndone((r) => r.key === last.key);
          doneTotal = Math.max(0, doneTotal - 1); left += 1;
          progress();
          trace("Undone — answer it again");
          return;
        }
        if (sendingDone) { await sendingDone; continue; }
        // sent before without an answer back, and the connection is still down: it must land before it can be undone
        toast("Your last answer is still on its way; undo once it is saved", { error: true });
        return;
      }
      const res = await api("POST", "/api/v1/answers/undo", {});
      lastAction = Date.now();
      if (res.task) putBack({ ...res.task, _key: newKey() });
      markUndone((r) => r.answerId === res.answer_id);
      trace("Undone — answer it again");
      refreshStatsSoon();
    } catch (err) {
      toast(err.message, { error: true });
    } finally {
      undoing = false;
    }
  }

  function markUndone(match) {
    const row = recent.find(match);
    if (row) row.state = "undone";
    renderRecent();
  }

  async function skip() {
    const task = queue[0];
    if (!task) return;
    spent();
    queue.shift();
    left = Math.max(0, left - 1);
    render();
    progress();
    trace("Skipped");
    skipping.add(task.task_id);
    fill();
    try {
      await api("POST", `/api/v1/tasks/${task.task_id}/skip`, {}, { retries: 3 });
    } catch (err) {
      // the lease runs out by itself; nothing is lost
      if (err.status !== 409 && err.status !== 404) toast(err.message, { error: true });
    } finally {
      skipping.delete(task.task_id);
    }
    fill();
  }

  // ------------------------------------------------------------------ dialogs and panel

  function openDialog(id) {
    const dialog = $(id);
    if (!dialog.open) dialog.showModal();
    const first = id === "flag-dialog" ? dialog.querySelector("input[type=radio]") : dialog.querySelector("input, textarea");
    if (first && id !== "help-dialog") first.focus();
  }
  for (const dialog of document.querySelectorAll("dialog")) {
    for (const cancel of dialog.querySelectorAll(".cancel")) cancel.addEventListener("click", () => dialog.close());
    dialog.addEventListener("close", () => { if (queue[0] && !$("panel").contains(document.activeElement)) $("task").focus({ preventScroll: true }); });
  }

  $("flag-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const form = new FormData(event.target);
    $("flag-dialog").close();
    event.target.reset();
    if (!queue[0]) return;
    submit("flag", "Flagged", { reason: form.get("reason"), comment: form.get("comment") || "", active_seconds: spent() });
  });

  $("term-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = new FormData(event.target);
    const body = { term: form.get("term"), definition: form.get("definition"), example: form.get("example") || null };
    try {
      await api("POST", "/api/v1/glossary", body, { retries: 2 });
      $("term-dialog").close();
      event.target.reset();
      toast("Thanks — sent to the owner for approval");
    } catch (err) {
      toast(err.message, { error: true, ms: 5000 });
    }
  });

  function renderTerms(terms) {
    const holder = $("glossary-terms");
    if (!holder || !terms.length) return;
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
    holder.replaceWith(dl);
  }

  // beside the item on wide screens (and remembered there); a sheet from the bottom on narrow ones
  async function togglePanel(force) {
    const panel = $("panel");
    const show = force === undefined ? panel.hidden : force;
    panel.hidden = !show;
    app.classList.toggle("panel-open", show);
    $("btn-panel").setAttribute("aria-expanded", String(show));
    if (wide.matches) store.set(panelKey, show);
    if (!show && panel.contains(document.activeElement)) $("btn-panel").focus();
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

  function setKeys(on) {
    keysOn = on;
    store.set(keysKey, on);
    document.body.classList.toggle("keys-off", !on);
    $("keys-toggle").checked = on;
    const hint = $("keys-hint") ? $("keys-hint").textContent : "Number keys answer; Enter accepts the teacher's label; ? lists the keys";
    if (!recent.length) trace(on && !touch ? hint : "");
  }
  $("keys-toggle").addEventListener("change", (event) => setKeys(event.target.checked));
  setKeys(keysOn);

  const answerKeys = new Set(["Enter", "Backspace"]);

  document.addEventListener("keydown", (event) => {
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) return;
    if (document.querySelector("dialog[open]")) return;
    const target = event.target;
    const key = event.key;
    // typing into a field is typing, not a shortcut (a checkbox is no field: the keys work there)
    if (target.matches && target.matches("textarea, select, input:not([type=checkbox]):not([type=radio])")) {
      if (event.key === "Escape" && target === rationale) { target.blur(); $("task").focus({ preventScroll: true }); event.preventDefault(); }
      return;
    }
    if (key === "Escape") { if (!$("panel").hidden) { event.preventDefault(); togglePanel(false); } return; }
    if (!keysOn) return;
    // Enter and Space on a focused button, link, summary or checkbox do what they do there
    if ((key === "Enter" || key === " ") && target.closest && target.closest("button, a, summary, input")) return;
    // holding a key down answers once, not once per repeat
    if (event.repeat && (answerKeys.has(key) || /^[0-9]$/.test(key))) { event.preventDefault(); return; }
    const w = widget(queue[0]);
    if (w && w.key(event)) { event.preventDefault(); return; }
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
  setInterval(() => { if (!queue.length && !filling) fill(true); }, 20000);

  // leaving the page: the tasks held for later (never one whose answer is still on its way) go back to the others
  window.addEventListener("pagehide", () => {
    const ids = queue.map((t) => t.task_id).filter((id) => !pending.some((e) => e.task_id === id));
    if (!ids.length) return;
    fetch("/api/v1/tasks/release", {
      method: "POST", keepalive: true, credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrfToken() },
      body: JSON.stringify({ task_ids: ids }),
    }).catch(() => {});
    queue = [];
  });
  // coming back to a page kept in the browser's cache: its tasks were given back, so lease afresh
  window.addEventListener("pageshow", (event) => { if (event.persisted) { queue = []; shownId = null; fill(true); } });

  for (const entry of pending) {
    recent.unshift({ key: entry.key, label: entry.label, text: entry.text, state: "sending" });
  }
  recent.length = Math.min(recent.length, RECENT);
  renderRecent();
  if (wide.matches && store.get(panelKey, false) === true) togglePanel(true);
  progress();
  flush();
  fill();
})();
