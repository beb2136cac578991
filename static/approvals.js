/* Approvals inbox: keyboard triage (j/k move and open, a/r choose approve/reject and focus the
   comment, Ctrl+Enter submits) and the polling indicator. Plain JS on top of htmx.
   Rows carry no data-nav-item, so the console's own j/k handler leaves this list alone. */
(function () {
  "use strict";

  const $ = (selector, root) => (root || document).querySelector(selector);
  const $$ = (selector, root) => Array.from((root || document).querySelectorAll(selector));
  const typing = (el) => el && (el.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(el.tagName));
  let openTimer = null;

  function rows() {
    return $$("#approval-list [data-testid='approval-row']");
  }

  function openField() {
    return $("#approval-open");
  }

  function markCurrent(row) {
    rows().forEach((el) => el.classList.toggle("is-current", el === row));
    if (row) {
      row.scrollIntoView({ block: "nearest" });
      if (openField()) openField().value = row.dataset.request;
    }
  }

  function openRow(row, delay) {
    clearTimeout(openTimer);
    const link = row && row.querySelector("[data-row-link]");
    if (!link) return;
    // A short delay: holding j down skims the list without loading every request.
    openTimer = setTimeout(() => link.click(), delay);
  }

  function move(step) {
    const all = rows();
    if (!all.length) return;
    const at = all.findIndex((el) => el.classList.contains("is-current"));
    const next = all[Math.max(0, Math.min(all.length - 1, at < 0 ? (step > 0 ? 0 : all.length - 1) : at + step))];
    markCurrent(next);
    openRow(next, 150);
  }

  function choose(outcome) {
    const form = $("#decision-form");
    if (!form) return false;
    form.dataset.intent = outcome;
    $$("[name='outcome']", form).forEach((button) => button.classList.toggle("is-intent", button.value === outcome));
    const hint = $("[data-intent-hint]", form);
    if (hint) hint.textContent = `${outcome === "approve" ? "Approve" : "Reject"}: Ctrl+Enter submits`;
    const comment = $("#decision-comment", form);
    if (comment) comment.focus();
    return true;
  }

  function submitIntent(form) {
    const outcome = form.dataset.intent;
    const button = outcome && $(`[name='outcome'][value='${outcome}']`, form);
    // A click, not requestSubmit(button): htmx sends the value of the button it saw clicked.
    if (button) button.click();
  }

  document.addEventListener("keydown", (event) => {
    if (!$("#approvals-inbox")) return;
    const form = event.target.closest && event.target.closest("#decision-form");
    if (form && event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      submitIntent(form);
      return;
    }
    if (event.metaKey || event.ctrlKey || event.altKey || typing(event.target)) return;
    const handled = {
      j: () => move(1),
      k: () => move(-1),
      o: () => openRow($("#approval-list .approval-row.is-current"), 0),
      Enter: () => openRow($("#approval-list .approval-row.is-current"), 0),
      a: () => choose("approve"),
      r: () => choose("reject"),
    }[event.key];
    if (!handled) return;
    event.preventDefault();
    handled();
  });

  document.addEventListener("click", (event) => {
    const link = event.target.closest("#approval-list [data-row-link]");
    if (link) markCurrent(link.closest("[data-testid='approval-row']"));
  });

  /* The polled list: show whether polling works. */
  function setLive(state, text) {
    const badge = $("#approvals-live");
    if (!badge) return;
    badge.dataset.state = state;
    if (text) badge.textContent = text;
  }
  const isPoll = (event) => event.detail.elt && event.detail.elt.id === "approval-poll";
  document.addEventListener("htmx:afterRequest", (event) => {
    if (!isPoll(event)) return;
    if (event.detail.successful) setLive("live", badgeText());
    else setLive("offline", "Offline: retrying");
  });
  document.addEventListener("htmx:sendError", (event) => {
    if (isPoll(event)) setLive("offline", "Offline: retrying");
  });
  function badgeText() {
    const badge = $("#approvals-live");
    return badge ? badge.getAttribute("title").replace(/^The list checks for changes every (\d+) seconds$/, "Updates every $1 s") : "";
  }
})();
