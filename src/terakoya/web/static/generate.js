// The written-answer widget (generate.v1): rate, compare or correct the teacher's answer.
//
// queue.js owns the queue, the outbox and the common keys; it calls this widget to show a task (show), gives it
// the keys first (key), and takes its answers (TerakoyaQueue.answer). Keys:
//   rate:    1-5 rate the highlighted rubric line and move to the next; ↑/↓ move; Enter saves; C corrects
//   compare: 1 A is better, 2 B is better, 3 tie, 4 both bad
//   correct: the text box opens with the answer in it; Ctrl+Enter saves; Esc leaves the box
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const root = $("gen");
  if (!root) return;

  // earlier turns of a conversation go above the prompt, which queue.js shows as the task's text
  const taskText = $("task-text");
  if (taskText) taskText.parentNode.insertBefore($("gen-history"), taskText);

  let task = null;
  let ratings = {};
  let line = 0;

  // a word-level diff (characters for text without spaces, such as Japanese): longest common subsequence
  function tokens(text) {
    return /\s/.test(text) ? text.split(/(\s+)/).filter((t) => t !== "") : Array.from(text);
  }
  function diff(before, after) {
    const a = tokens(before), b = tokens(after);
    if (a.length * b.length > 4e6) return [{ op: "del", text: before }, { op: "ins", text: after }];
    const n = a.length, m = b.length;
    const dp = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
    for (let i = n - 1; i >= 0; i--) for (let j = m - 1; j >= 0; j--) {
      dp[i][j] = a[i] === b[j] ? dp[i + 1][j + 1] + 1 : Math.max(dp[i + 1][j], dp[i][j + 1]);
    }
    const out = [];
    const push = (op, text) => { const last = out[out.length - 1]; if (last && last.op === op) last.text += text; else out.push({ op, text }); };
    let i = 0, j = 0;
    while (i < n && j < m) {
      if (a[i] === b[j]) { push("same", a[i]); i++; j++; }
      else if (dp[i + 1][j] >= dp[i][j + 1]) { push("del", a[i]); i++; }
      else { push("ins", b[j]); j++; }
    }
    while (i < n) push("del", a[i++]);
    while (j < m) push("ins", b[j++]);
    return out;
  }
  function renderDiff() {
    const original = task ? task.content.answers[0].text : "";
    const parts = diff(original, $("gen-edit-text").value);
    $("gen-diff").replaceChildren(...parts.map((p) => {
      if (p.op === "same") return document.createTextNode(p.text);
      const el = document.createElement(p.op === "del" ? "del" : "ins");
      el.textContent = p.text;
      return el;
    }));
  }

  function text(el, value) {
    el.textContent = value || "(empty answer)";
    el.classList.toggle("muted", !value);
  }

  function renderRubric() {
    const rows = $("gen-rubric-rows");
    const rubric = task.content.rubric || [];
    rows.replaceChildren(...rubric.map((r, index) => {
      const row = document.createElement("div");
      row.className = `gen-rubric-row${index === line ? " current" : ""}`;
      row.setAttribute("role", "radiogroup");
      row.setAttribute("aria-label", r.name);
      const name = document.createElement("span");
      name.className = "gen-rubric-name";
      name.innerHTML = "";
      const strong = document.createElement("strong");
      strong.textContent = r.name;
      name.append(strong);
      if (r.description) { const d = document.createElement("span"); d.className = "muted small"; d.textContent = ` ${r.description}`; name.append(d); }
      const scores = document.createElement("span");
      scores.className = "gen-scores";
      for (let v = 1; v <= 5; v++) {
        const b = document.createElement("button");
        b.type = "button";
        b.className = "gen-score";
        b.textContent = String(v);
        b.setAttribute("role", "radio");
        b.setAttribute("aria-checked", String(ratings[r.name] === v));
        b.setAttribute("aria-label", `${r.name} ${v}`);
        b.addEventListener("click", () => { rate(index, v); });
        scores.append(b);
      }
      row.append(name, scores);
      return row;
    }));
    const done = rubric.every((r) => ratings[r.name]);
    $("gen-submit-rating").disabled = !done;
  }

  function rate(index, value) {
    const rubric = task.content.rubric || [];
    if (!rubric[index]) return;
    ratings[rubric[index].name] = value;
    line = Math.min(index + 1, rubric.length - 1);
    if (rubric.every((r) => ratings[r.name])) line = index;
    renderRubric();
  }

  function openEdit() {
    $("gen-edit").hidden = false;
    const box = $("gen-edit-text");
    if (!box.value) box.value = task.content.answers[0].text;
    renderDiff();
    box.focus();
  }

  function verdictLabel(value) {
    if (value.choice) return { a: "A better", b: "B better", tie: "Tie", both_bad: "Both bad" }[value.choice];
    if (value.text !== undefined) return "Corrected";
    return `Rated ${Object.values(value.ratings).join("/")}`;
  }

  function send(value) {
    if (!task) return;
    window.TerakoyaQueue.answer(verdictLabel(value), value);
  }

  function submitRatings() {
    const rubric = task.content.rubric || [];
    if (!rubric.every((r) => ratings[r.name])) return;
    send({ ratings: { ...ratings } });
  }

  function submitEdit() {
    const edited = $("gen-edit-text").value;
    if (!edited.trim()) { window.Terakoya.toast("The corrected answer is empty; write the answer as it should be", { error: true }); return; }
    const value = { text: edited };
    const rubric = task.content.rubric || [];
    if (task.kind === "rate" && rubric.every((r) => ratings[r.name])) value.ratings = { ...ratings };
    send(value);
  }

  const titles = {
    rate: "Rate the teacher's answer",
    compare: "Which answer is better?",
    correct: "Correct the teacher's answer",
  };

  window.TerakoyaWidget = {
    title: (t) => titles[t.kind] || "Answer",
    // the prompt (the last user turn) goes where every task shows its text; earlier turns above it
    text: (t) => {
      const turns = (t.content && t.content.messages) || [];
      return turns.length ? turns[turns.length - 1].content : t.text;
    },
    show(t) {
      task = t;
      ratings = {};
      line = 0;
      root.hidden = false;
      const turns = t.content.messages || [];
      const history = $("gen-history");
      history.hidden = turns.length < 2;
      history.replaceChildren(...turns.slice(0, -1).map((m) => {
        const li = document.createElement("li");
        li.className = `turn ${m.role}`;
        const who = document.createElement("strong");
        who.textContent = `${m.role}: `;
        li.append(who, m.content);
        return li;
      }));
      const compare = t.kind === "compare";
      $("gen-pair").hidden = !compare;
      $("gen-single").hidden = compare;
      $("gen-rubric").hidden = t.kind !== "rate";
      $("gen-edit").hidden = true;
      $("gen-edit-text").value = "";
      if (compare) {
        text($("gen-a"), t.content.answers[0].text);
        text($("gen-b"), t.content.answers[1].text);
      } else {
        text($("gen-answer-text"), t.content.answers[0].text);
        if (t.kind === "rate") renderRubric();
        if (t.kind === "correct") openEdit();
      }
    },
    hide() { root.hidden = true; task = null; },
    // keys for the task shown; true when the widget used the key
    key(event) {
      if (!task) return false;
      const k = event.key;
      if (task.kind === "compare") {
        const choice = { 1: "a", 2: "b", 3: "tie", 4: "both_bad" }[k];
        if (choice) { send({ choice }); return true; }
        return false;
      }
      if (task.kind === "rate") {
        if (/^[1-5]$/.test(k)) { rate(line, Number(k)); return true; }
        if (k === "ArrowDown") { line = Math.min(line + 1, (task.content.rubric || []).length - 1); renderRubric(); return true; }
        if (k === "ArrowUp") { line = Math.max(line - 1, 0); renderRubric(); return true; }
        if (k === "Enter") { submitRatings(); return true; }
        if (k === "c" || k === "C") { openEdit(); return true; }
        if (/^[0-9]$/.test(k)) return true;  // 6-9 and 0 rate nothing
      }
      if (task.kind === "correct" && (k === "c" || k === "C" || k === "Enter")) { openEdit(); return true; }
      return false;
    },
  };

  for (const b of document.querySelectorAll(".gen-choice")) b.addEventListener("click", () => send({ choice: b.dataset.choice }));
  $("gen-submit-rating").addEventListener("click", submitRatings);
  $("gen-correct").addEventListener("click", openEdit);
  $("gen-save-edit").addEventListener("click", submitEdit);
  $("gen-cancel-edit").addEventListener("click", () => { $("gen-edit-text").value = task ? task.content.answers[0].text : ""; renderDiff(); });
  $("gen-edit-text").addEventListener("input", renderDiff);
  $("gen-edit-text").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) { event.preventDefault(); submitEdit(); }
    else if (event.key === "Escape") { event.preventDefault(); event.target.blur(); $("task").focus({ preventScroll: true }); }
  });
})();
