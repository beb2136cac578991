/* The execution page's timeline: a row (or any operation link) opens its operation in the side
   panel; "Failures only"; axis labels that would overlap are hidden.
   Plain JS on top of htmx (detail.html loads it); the panel is views/operations.py's partial. */
(function () {
  "use strict";

  const $ = (selector, root) => (root || document).querySelector(selector);
  const $$ = (selector, root) => Array.from((root || document).querySelectorAll(selector));
  const failuresOnly = new Set(); // timeline ids with the toggle on (kept across live refreshes)
  // While "Failures only" is on, the page's own rows wait here (out of the document, so ids stay
  // unique) and the tbody holds the server's failing rows; switching off puts them back.
  const stashed = new Map(); // timeline id -> DocumentFragment
  let openOp = null; // the operation id shown in the panel

  function panel() { return $("#op-panel"); }

  function markOpen() {
    $$("table[data-timeline] tr.is-open").forEach((row) => row.classList.remove("is-open"));
    const row = openOp && document.getElementById("op-" + openOp);
    if (row) row.classList.add("is-open");
  }

  // The operation's panel, whether or not its timeline row is on the page (a folded map's item,
  // a row past "Show 50 more", a history row's operation).
  function openOperation(opId, url) {
    if (!url || !panel() || typeof htmx === "undefined") return false;
    openOp = opId;
    panel().hidden = false;
    markOpen();
    htmx.ajax("GET", url, { target: "#op-panel-body", swap: "innerHTML" })
      .then(() => { const title = $("#op-panel-title"); if (title) title.focus(); });
    return true;
  }

  function openPanel(table, row) {
    const url = table.dataset.opPanel;
    if (!url) return;
    const opId = row.id.slice(3);
    openOperation(opId, url.replace("OPERATION", encodeURIComponent(opId)));
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
    // History rows and the panel's own links: <a href="/executions/N/operations/OP/" data-op-link="OP">.
    const link = event.target.closest("a[data-op-link]");
    if (link && !event.ctrlKey && !event.metaKey && !event.shiftKey && event.button === 0) {
      if (openOperation(link.dataset.opLink, link.getAttribute("href"))) event.preventDefault();
      return;
    }
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
    if (!row || !row.id.startsWith("op-")) return;
    const own = event.target.closest("a, input, select, textarea, button:not([data-op-open]), [data-toggle]");
    if (own) return;
    openPanel(row.closest("table[data-timeline]"), row);
  });

  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && panel() && !panel().hidden) { closePanel(); }
  });

  /* --- "Failures only": every failing row from the server, rendered on the page or not ------- */
  function showFailures(table, url) {
    const body = $("tbody[data-timeline-rows]", table);
    if (!body || body.hasAttribute("data-failure-rows") || !url || typeof htmx === "undefined") return;
    const rows = document.createDocumentFragment();
    while (body.firstChild) rows.appendChild(body.firstChild);
    stashed.set(table.id, rows);
    body.setAttribute("data-failure-rows", "");
    body.innerHTML = '<tr class="loading-failures"><td colspan="4" class="empty">Loading the failures…</td></tr>';
    htmx.ajax("GET", url, { target: body, swap: "innerHTML" });
  }

  function showAllRows(table) {
    const body = $("tbody[data-timeline-rows]", table);
    if (!body || !body.hasAttribute("data-failure-rows")) return;
    body.replaceChildren(stashed.get(table.id) || document.createDocumentFragment());
    stashed.delete(table.id);
    body.removeAttribute("data-failure-rows");
  }

  function applyFailuresOnly() {
    $$("table[data-timeline]").forEach((table) => {
      const on = failuresOnly.has(table.id);
      const buttons = $$('[data-failures-only="#' + table.id + '"]');
      if (on) showFailures(table, buttons.length ? buttons[0].dataset.failuresUrl : ""); else showAllRows(table);
      table.classList.toggle("failures-only", on);
      buttons.forEach((b) => b.setAttribute("aria-pressed", String(on)));
    });
  }

  /* --- the time axis: hide labels that overlap on this track (the server spaced them for ~400 px) --- */
  const AXIS_GAP = 6;
  function fitAxis(axis) {
    const kept = [];
    $$(".axis-label", axis).forEach((label) => { // most important first
      label.removeAttribute("data-hidden");
      const range = document.createRange(); // the glyphs' box (the element is n ch wide, "≈" may not be)
      range.selectNodeContents(label);
      const box = range.getBoundingClientRect();
      if (!box.width) return;
      const clash = kept.some((other) => box.left < other.right + AXIS_GAP && other.left < box.right + AXIS_GAP);
      if (clash) label.setAttribute("data-hidden", ""); else kept.push(box);
    });
  }
  function fitAxes() { $$("table[data-timeline] [data-axis]").forEach(fitAxis); }
  let fitting = false;
  window.addEventListener("resize", () => {
    if (fitting) return;
    fitting = true;
    requestAnimationFrame(() => { fitting = false; fitAxes(); });
  });

  // Live refreshes and fetched rows replace the table: keep the toggle, the open row and the axis.
  function reapply() { applyFailuresOnly(); markOpen(); fitAxes(); }
  document.addEventListener("htmx:load", reapply);
  document.addEventListener("htmx:oobAfterSwap", reapply);
  document.addEventListener("DOMContentLoaded", reapply);
})();
