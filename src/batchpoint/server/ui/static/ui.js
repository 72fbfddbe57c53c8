// Batchpoint's web page: a job page follows its job live over the job events' server-sent stream
// (EventSource, the session cookie), and refreshes its phases and errors when the job ends.
"use strict";

(function () {
  const root = document.getElementById("job");
  if (!root) return;
  const initial = JSON.parse(root.dataset.job);
  const name = initial.name;
  const base = "/ui/jobs/" + encodeURIComponent(name);
  const terminal = ["Completed", "Failed", "Canceled"];
  const $ = (id) => document.getElementById(id);
  let runningAt = null;

  function text(id, value) {
    const el = $(id);
    if (el) el.textContent = value === null || value === undefined ? "?" : String(value);
  }

  function showProgress(d, at) {
    const done = (d.mini_batches_completed || 0) + (d.mini_batches_failed || 0);
    const complete = !!d.listing_complete;
    const total = d.mini_batches_total;
    text("mb-done", done);
    text("mb-failed", d.mini_batches_failed || 0);
    text("mb-total", total === null || total === undefined ? "?" : complete ? total : total + "+");
    text("files-done", d.files_completed || 0);
    text("files-failed", d.files_failed || 0);
    text("files-total", d.files_total === null || d.files_total === undefined ? "?" : d.files_total);
    text("rows", d.rows || 0);
    const bar = $("bar");
    if (bar) {
      if (total) { bar.max = total; bar.value = done; } else { bar.removeAttribute("value"); }
    }
    if (runningAt && at) {
      const secs = (Date.parse(at) - runningAt) / 1000;
      if (secs > 0) text("rate", "(" + ((d.rows || 0) / secs).toFixed(1) + " rows/s)");
    }
  }

  function addPhaseRow(ev) {
    const table = $("phases");
    if (!table) return;
    const row = table.insertRow(-1);
    row.className = ev.type === "status" ? "status" + (ev.status === "Crashed" ? " crashed" : "") : "phase";
    const label = ev.type === "status" ? ev.status : "\u00a0\u00a0" + (ev.data.phase || "?");
    const state = ev.type === "status" ? (ev.status === "Crashed" ? ev.message || "" : "") : (ev.data.state || "");
    const secs = typeof ev.data.seconds === "number" ? ev.data.seconds.toFixed(1) : "";
    [label, state, secs].forEach((value) => { row.insertCell(-1).textContent = value; });
  }

  function refresh() {
    fetch(base + "/summary.json", { credentials: "same-origin" })
      .then((r) => (r.ok ? r.json() : null))
      .then((s) => {
        if (!s) return;
        text("status", s.status_text || s.status);  // "Completed with N failed files"
        $("status").className = "status " + (s.status_class || "status-" + s.status.toLowerCase());
        $("status").dataset.status = s.status;
        text("status-message", s.status_message || "");
        showProgress(s.progress);
        const table = $("phases");
        if (table) {
          while (table.rows.length > 1) table.deleteRow(1);
          s.phases.forEach((p) => {
            const row = table.insertRow(-1);
            row.className = p.kind + (p.name === "Crashed" ? " crashed" : "");
            [(p.kind === "phase" ? "\u00a0\u00a0" : "") + p.name, p.state || p.message || "", (p.seconds || 0).toFixed(1)]
              .forEach((value) => { row.insertCell(-1).textContent = value; });
          });
        }
        const summary = $("errors-summary");
        if (summary && s.errors) {
          summary.textContent = "";
          const p = document.createElement("p");
          p.textContent = s.errors.failed_files + " failed file(s): " +
            Object.entries(s.errors.by_kind).map(([k, n]) => n + " " + k).join(", ");
          summary.appendChild(p);
          const ul = document.createElement("ul");
          s.errors.first.forEach((e) => {
            const li = document.createElement("li");
            li.textContent = e.file + ": " + (e.exception_type || "") + " " + e.message +
              " (mini-batch " + e.mini_batch + ", attempt " + e.attempt + ", " + e.kind + ")";
            ul.appendChild(li);
          });
          summary.appendChild(ul);
        }
        const files = $("files");
        if (files && s.files) {
          files.textContent = "";
          s.files.forEach((f) => {
            const li = document.createElement("li");
            const a = document.createElement("a");
            a.className = "download";
            a.href = base + "/outputs/" + encodeURIComponent(f.output) + "/files/" + f.path.split("/").map(encodeURIComponent).join("/");
            a.textContent = "download " + f.path;
            li.appendChild(a);
            files.appendChild(li);
          });
        }
        const logs = $("logs");
        if (logs && s.log_files) {
          logs.textContent = "";
          s.log_files.forEach((log) => {
            const li = document.createElement("li");
            const a = document.createElement("a");
            a.href = base + "/logs/" + encodeURIComponent(log);
            a.textContent = log;
            li.appendChild(a);
            logs.appendChild(li);
          });
        }
        const cancel = $("cancel");
        if (cancel && terminal.includes(s.status)) cancel.remove();
      });
  }

  if (terminal.includes(initial.status)) return;
  const live = $("live");
  const source = new EventSource(base + "/events");
  source.onopen = () => { if (live) live.hidden = false; };
  source.onmessage = (message) => {
    const ev = JSON.parse(message.data);
    if (ev.type === "status") {
      if (ev.status === "Running" && !runningAt) runningAt = Date.parse(ev.at);
      text("status", ev.status);
      $("status").className = "status status-" + ev.status.toLowerCase();
      $("status").dataset.status = ev.status;
      text("status-message", ev.message || "");
    } else if (ev.type === "phase") {
      addPhaseRow(ev);
      text("status-message", ev.message || "");
    }
    if (ev.data && "files_completed" in ev.data) showProgress(ev.data, ev.at);
    if (ev.type === "status" && terminal.includes(ev.status)) {
      source.close();
      if (live) live.hidden = true;
      refresh();
    }
  };
})();
