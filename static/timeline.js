/* The execution page's timeline: a row opens its operation in the side panel; "Failures only".
   Plain JS on top of htmx (detail.html loads it); the panel is views/operations.py's partial. */
(function () {
  "use strict";

  const $ = (selector, root) => (root || document).querySelector(selector);
  const $$ = (selector, root) => Array.from((root || document).querySelectorAll(selector));
  const failuresOnly = new Set(); // timeline ids with the toggle on (kept across live refreshes)
  let openOp = null; // the operation id shown in the panel

  function panel() { return $("#op-panel"); }

  function markOpen() {
    $$("table[data-timeline] tr.is-open").forEach((row) => row.classList.remove("is-open"));
    const row = openOp && document.getElementById("op-" + openOp);
    if (row) row.classList.add("is-open");
  }

  function openPanel(table, row) {
    const url = table.dataset.opPanel;
    if (!url || !panel() || typeof htmx === "undefined") return;
    openOp = row.id.slice(3);
    panel().hidden = false;
    markOpen();
    htmx.ajax("GET", url.replace("OPERATION", encodeURIComponent(openOp)), { target: "#op-panel-body", swap: "innerHTML" })
      .then(() => { const title = $("#op-panel-title"); if (title) title.focus(); });
  }

  function closePanel() {
    if (!panel() || panel().hidden) return;
    panel().hidden = true;
    const row = openOp && document.getElementById("op-" + openOp);
    openOp = null;
    markOpen();
    const label = row && row.querySelector("[data-op-open]");
    if (label) label.focus();
  }

  document.addEventListener("click", (event) => {
    if (event.target.closest("[data-op-panel-close]")) { closePanel(); return; }
    const toggle = event.target.closest("[data-failures-only]");
    if (toggle) {
      const table = $(toggle.getAttribute("data-failures-only"));
      if (!table) return;
      if (failuresOnly.has(table.id)) failuresOnly.delete(table.id); else failuresOnly.add(table.id);
      applyFailuresOnly();
      return;
    }
    // A click anywhere on an operation's row, except on its own links and buttons (fold, attempts diff, ...).
    const row = event.target.closest("table[data-timeline] tbody tr[data-depth]");
    if (!row) return;
    const own = event.target.closest("a, input, select, textarea, button:not([data-op-open]), [data-toggle]");
    if (own) return;
    openPanel(row.closest("table[data-timeline]"), row);
  });

  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && panel() && !panel().hidden) { closePanel(); }
  });

  function applyFailuresOnly() {
    $$("table[data-timeline]").forEach((table) => {
      const on = failuresOnly.has(table.id);
      table.classList.toggle("failures-only", on);
      $$('[data-failures-only="#' + table.id + '"]').forEach((b) => b.setAttribute("aria-pressed", String(on)));
    });
  }

  // Live refreshes and fetched rows replace the table: keep the toggle and the open row marked.
  function reapply() { applyFailuresOnly(); markOpen(); }
  document.addEventListener("htmx:load", reapply);
  document.addEventListener("htmx:oobAfterSwap", reapply);
  document.addEventListener("DOMContentLoaded", reapply);
})();
