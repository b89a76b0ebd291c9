// The review in artserve's tagging report (tagging/review_report.py inlines this file): accept or correct each
// tag, keep the decisions in localStorage under the report's id, export them as corrections.csv.
// Plain JavaScript, no external assets: the page works offline from disk.
"use strict";
(function () {
  const data = JSON.parse(document.getElementById("review-data").textContent);
  const storageKey = "artserve-review:" + data.report_id;
  const figures = Array.from(document.querySelectorAll("figure.item"));
  const items = data.items;
  let decisions = {}; // path -> {label, decision, reviewed_at}
  let canSave = true;

  try {
    const saved = JSON.parse(window.localStorage.getItem(storageKey) || "{}");
    const known = new Set(items.map((item) => item.path));
    for (const [path, d] of Object.entries(saved)) {
      if (known.has(path) && data.labels.includes(d.label)) decisions[path] = d;
    }
  } catch (e) {
    canSave = false;
  }

  function save() {
    try {
      window.localStorage.setItem(storageKey, JSON.stringify(decisions));
    } catch (e) {
      canSave = false;
    }
    document.getElementById("storage-warning").classList.toggle("hidden", canSave);
  }

  function itemOf(figure) {
    return items[Number(figure.dataset.i)];
  }

  function show(figure) {
    const item = itemOf(figure);
    const d = decisions[item.path];
    figure.classList.toggle("accepted", !!d && d.decision === "accepted");
    figure.classList.toggle("corrected", !!d && d.decision === "corrected");
    for (const button of figure.querySelectorAll(".pick button[data-label]")) {
      button.classList.toggle("chosen", !!d && button.dataset.label === d.label);
    }
    const text = !d ? "" : d.decision === "accepted" ? "accepted: " + d.label : "corrected to " + d.label;
    figure.querySelector(".decision").textContent = text;
  }

  function count() {
    const reviewed = items.filter((item) => decisions[item.path]).length;
    const flagged = items.filter((item) => item.review);
    const flaggedLeft = flagged.filter((item) => !decisions[item.path]).length;
    document.getElementById("review-count").textContent =
      "reviewed " + reviewed + " / " + items.length + ", left " + (items.length - reviewed) +
      " (for review: " + flaggedLeft + " of " + flagged.length + " left)";
  }

  function decide(figure, label) {
    const item = itemOf(figure);
    if (label === null) {
      delete decisions[item.path];
    } else {
      decisions[item.path] = {
        label: label,
        decision: label === item.label ? "accepted" : "corrected",
        reviewed_at: new Date().toISOString(),
      };
    }
    save();
    show(figure);
    count();
  }

  function visible() {
    return figures.filter((f) => !f.classList.contains("hidden"));
  }

  function applyFilters() {
    const status = document.getElementById("filter-status").value;
    const cls = document.getElementById("filter-class").value;
    for (const figure of figures) {
      const item = itemOf(figure);
      let keep = !cls || item.label === cls;
      if (status === "review") keep = keep && item.review;
      if (status === "disagree") keep = keep && !!item.true_label && item.true_label !== item.label;
      if (status === "todo") keep = keep && !decisions[item.path];
      figure.classList.toggle("hidden", !keep);
    }
    for (const section of document.querySelectorAll("section.class-section")) {
      section.classList.toggle("hidden", !section.querySelector("figure.item:not(.hidden)"));
    }
  }

  // The figure above or below: the nearest one horizontally in the next row of visible figures.
  function vertical(list, at, step) {
    const here = list[at].getBoundingClientRect();
    let best = null;
    let bestRowTop = null;
    for (let i = at + step; i >= 0 && i < list.length; i += step) {
      const r = list[i].getBoundingClientRect();
      if (Math.abs(r.top - here.top) < 2) continue;
      if (bestRowTop === null) bestRowTop = r.top;
      if (Math.abs(r.top - bestRowTop) >= 2) break;
      if (best === null || Math.abs(r.left - here.left) < Math.abs(list[best].getBoundingClientRect().left - here.left)) {
        best = i;
      }
    }
    return best === null ? at : best;
  }

  function move(figure, key) {
    const list = visible();
    const at = list.indexOf(figure);
    if (at < 0) {
      if (list.length) list[0].focus();
      return;
    }
    let to = at;
    if (key === "ArrowRight") to = Math.min(at + 1, list.length - 1);
    if (key === "ArrowLeft") to = Math.max(at - 1, 0);
    if (key === "ArrowDown") to = vertical(list, at, 1);
    if (key === "ArrowUp") to = vertical(list, at, -1);
    list[to].focus();
    list[to].scrollIntoView({ block: "nearest" });
  }

  function next(figure) {
    const list = visible();
    const at = list.indexOf(figure);
    if (at >= 0 && at + 1 < list.length) {
      list[at + 1].focus();
      list[at + 1].scrollIntoView({ block: "nearest" });
    }
  }

  function csvField(value) {
    const text = value === null || value === undefined ? "" : String(value);
    return /[",\r\n]/.test(text) ? '"' + text.replace(/"/g, '""') + '"' : text;
  }

  function exportCsv() {
    const lines = [data.columns.join(",")];
    const decided = items.filter((item) => decisions[item.path]);
    decided.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
    for (const item of decided) {
      const d = decisions[item.path];
      const row = {
        path: item.path,
        label: d.label,
        decision: d.decision,
        model_label: item.label,
        model_probability: item.probability,
        model_version: item.model_version,
        reviewed_at: d.reviewed_at,
      };
      lines.push(data.columns.map((column) => csvField(row[column])).join(","));
    }
    const blob = new Blob([lines.join("\r\n") + "\r\n"], { type: "text/csv" });
    const link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = "corrections.csv";
    document.body.appendChild(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 10000);
  }

  for (const figure of figures) {
    show(figure);
    figure.addEventListener("click", (event) => {
      const button = event.target.closest("button");
      if (!button) return;
      decide(figure, button.classList.contains("accept") ? itemOf(figure).label : button.dataset.label);
      figure.focus();
    });
  }

  document.addEventListener("keydown", (event) => {
    if (event.altKey || event.ctrlKey || event.metaKey) return;
    if (event.target.closest && event.target.closest("select, input, textarea")) return;
    const figure = event.target.closest ? event.target.closest("figure.item") : null;
    const key = event.key;
    if (key.startsWith("Arrow")) {
      event.preventDefault();
      if (figure) move(figure, key);
      else if (visible().length) visible()[0].focus();
      return;
    }
    if (!figure) return;
    if (/^[0-9]$/.test(key)) {
      const n = key === "0" ? 9 : Number(key) - 1;
      if (n < data.labels.length) {
        event.preventDefault();
        decide(figure, data.labels[n]);
        next(figure);
      }
    } else if (key === "a" || key === "Enter") {
      if (event.target.tagName === "BUTTON" && key === "Enter") return; // Enter on a button clicks it
      event.preventDefault();
      decide(figure, itemOf(figure).label);
      next(figure);
    } else if (key === "u" || key === "Backspace" || key === "Delete") {
      event.preventDefault();
      decide(figure, null);
    }
  });

  document.getElementById("filter-status").addEventListener("change", applyFilters);
  document.getElementById("filter-class").addEventListener("change", applyFilters);
  document.getElementById("export").addEventListener("click", exportCsv);
  const camToggle = document.getElementById("show-cam");
  if (camToggle) {
    camToggle.addEventListener("change", () => document.body.classList.toggle("no-cam", !camToggle.checked));
  }
  save();
  count();
  applyFilters();
})();
