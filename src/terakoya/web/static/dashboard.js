// Dashboard: follow running jobs by polling the API; reload when one ends so the numbers are fresh.
"use strict";

(() => {
  const list = document.getElementById("job-list");
  if (!list) return;
  const running = () => Array.from(list.querySelectorAll(".job")).filter((li) => ["queued", "running"].includes(li.dataset.status));

  async function poll() {
    if (!running().length) return;
    try {
      const jobs = await Terakoya.api("GET", "/api/v1/jobs");
      let ended = false;
      for (const job of jobs) {
        const li = list.querySelector(`[data-job-id="${job.id}"]`);
        if (!li) continue;
        if (["queued", "running"].includes(li.dataset.status) && ["done", "failed"].includes(job.status)) ended = true;
        li.dataset.status = job.status;
        const pill = li.querySelector(".pill");
        pill.textContent = job.status; pill.className = `pill ${job.status}`;
        li.querySelector(".job-bar").style.width = `${Math.round(100 * (job.fraction || 0))}%`;
        li.querySelector(".job-message").textContent = job.message + (job.total ? ` (${job.done}/${job.total})` : "");
      }
      if (ended) { window.location.reload(); return; }
    } catch (err) { /* keep polling; the page still shows the last known state */ }
    setTimeout(poll, 1000);
  }
  setTimeout(poll, 700);
})();
