/* Approvals inbox and e-mail link pages. Plain JS on top of htmx:
   - an opened request is shown and focused: beside the list on wide screens, instead of it on
     narrow ones (data-view="detail" on #approvals-page; "All requests" goes back to the list);
   - after a POST, the first field in error (or the refusal) is focused and scrolled into view,
     clear of the sticky Approve/Reject bar;
   - keyboard triage (j/k move and open, a/r choose approve/reject and focus the comment,
     Ctrl+Enter submits) and the polling indicator.
   Rows carry no data-nav-item, so the console's own j/k handler leaves this list alone. */
(function () {
  "use strict";

  const $ = (selector, root) => (root || document).querySelector(selector);
  const $$ = (selector, root) => Array.from((root || document).querySelectorAll(selector));
  const typing = (el) => el && (el.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(el.tagName));
  let openTimer = null;
  // Whether the open request was reached from the list on this page: then "All requests" is
  // the browser's Back (htmx restores the list as it was); otherwise a plain link to the list.
  let openedFromList = false;
  // The request last shown, and (back on the list, none open) the row that stays highlighted.
  let lastShown = "";
  let listCurrent = "";

  function rows() {
    return $$("#approval-list [data-testid='approval-row']");
  }

  function setOpen(pk) {
    // An attribute, not .value: htmx's history snapshots keep attributes only.
    const field = $("#approval-open");
    if (field) field.setAttribute("value", pk || "");
  }

  function highlight(row) {
    rows().forEach((el) => el.classList.toggle("is-current", el === row));
  }

  function rowFor(pk) {
    return rows().find((row) => row.dataset.request === pk) || null;
  }

  function markCurrent(row) {
    highlight(row);
    if (row) {
      row.scrollIntoView({ block: "nearest" });
      setOpen(row.dataset.request);
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

  function outcomeButtons(form) {
    // form.elements includes the buttons of the sticky bar, which sit outside the form.
    return Array.from(form.elements).filter((el) => el.name === "outcome");
  }

  function choose(outcome) {
    const form = $("#decision-form");
    if (!form) return false;
    form.dataset.intent = outcome;
    outcomeButtons(form).forEach((button) => button.classList.toggle("is-intent", button.value === outcome));
    const hint = $("[data-intent-hint]");
    if (hint) hint.textContent = `${outcome === "approve" ? "Approve" : "Reject"}: Ctrl+Enter submits`;
    const comment = $("#decision-comment", form);
    if (comment) {
      comment.setAttribute("aria-required", outcome === "reject" ? "true" : "false");
      comment.focus();
    }
    return true;
  }

  function submitIntent(form) {
    const outcome = form.dataset.intent;
    const button = outcome && outcomeButtons(form).find((el) => el.value === outcome);
    // A click, not requestSubmit(button): htmx sends the value of the button it saw clicked.
    if (button) button.click();
  }

  /* Focus: what a person must look at next, scrolled into view. */

  function focusProblem(root) {
    const field = $("[aria-invalid='true']", root);
    if (field) {
      // The field's block (label, error, box) in the middle of the screen: clear of the sticky bar.
      (field.closest(".field") || field).scrollIntoView({ block: "center" });
      field.focus({ preventScroll: true });
      return true;
    }
    const refused = $("[data-testid='decision-error']", root);
    if (refused) {
      refused.scrollIntoView({ block: "center" });
      refused.focus({ preventScroll: true });
      return true;
    }
    return false;
  }

  function stickyTop() {
    const bar = $(".topbar");
    return bar && getComputedStyle(bar).position === "sticky" ? bar.getBoundingClientRect().bottom : 0;
  }

  function showRequest(article) {
    const page = $("#approvals-page");
    if (page) page.dataset.view = "detail";
    lastShown = article.dataset.request;
    listCurrent = "";
    setOpen(lastShown);
    markCurrent(rowFor(lastShown));
    const announce = $("#approvals-announce");
    const recorded = $("[data-announce]", article);
    if (announce) announce.textContent = recorded ? `${recorded.textContent.trim()} ${$("#approval-title", article).textContent.trim()}.` : "";
    if (focusProblem(article)) return;
    // Its top in view, below the sticky top bar (it may be below the list on a phone, or above
    // after scrolling down a long one).
    const top = article.getBoundingClientRect().top;
    const covered = stickyTop();
    if (top < covered || top > window.innerHeight / 2) window.scrollTo({ top: window.scrollY + top - covered - 8 });
    const heading = $("#approval-title", article);
    if (heading) heading.focus({ preventScroll: true });
  }

  function focusCurrentRow() {
    const current = $("#approval-list .approval-row.is-current [data-row-link]") || $("#approval-list [data-row-link]");
    if (current) {
      current.scrollIntoView({ block: "nearest" });
      current.focus({ preventScroll: true });
    }
  }

  // Back on the list (htmx restored it as it was when a row was tapped): the request just read
  // is the highlighted row, though none is open (so the polls ask for no request's status).
  function showList() {
    listCurrent = lastShown;
    setOpen("");
    highlight(rowFor(listCurrent));
    focusCurrentRow();
  }

  let listHadFocus = false;
  document.addEventListener("htmx:beforeSwap", (event) => {
    if (event.target.id === "approval-list") listHadFocus = event.target.contains(document.activeElement);
  });

  document.addEventListener("htmx:afterSettle", (event) => {
    if (event.target.id === "approval-list") {
      // A refreshed list: keep the highlight and, if it was in the list, the keyboard focus.
      if (listCurrent && !$("#approval-open").getAttribute("value")) highlight(rowFor(listCurrent));
      if (listHadFocus && !$("#approval-list").contains(document.activeElement)) focusCurrentRow();
      listHadFocus = false;
      return;
    }
    if (event.target.id !== "approval-detail") return;
    const article = $("[data-testid='approval-detail']", event.target);
    if (article) showRequest(article);
  });

  document.addEventListener("htmx:historyRestore", () => {
    if (!$("#approvals-page")) return;
    openedFromList = false;
    if ($("#approvals-page").dataset.view === "list") showList();
    // The restored list may be stale: ask for a fresh one now rather than at the next poll.
    if (window.htmx) window.htmx.trigger(document.body, "approvals-changed");
  });

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
    if (link) {
      openedFromList = true;
      markCurrent(link.closest("[data-testid='approval-row']"));
      return;
    }
    const back = event.target.closest("[data-detail-back]");
    if (back && openedFromList && !event.ctrlKey && !event.metaKey && !event.shiftKey) {
      event.preventDefault();
      history.back();
    }
  });

  /* htmx's history snapshots keep attributes, not what was typed or picked: write the search and
     the order into their attributes, so that Back shows (and the next poll asks for) the same list. */
  function keepFilters(event) {
    const field = event.target;
    if (!field.closest || !field.closest("#approval-filters")) return;
    if (field.tagName === "SELECT") Array.from(field.options).forEach((option) => { option.defaultSelected = option.selected; });
    else if (field.tagName === "INPUT") field.defaultValue = field.value;
  }
  document.addEventListener("input", keepFilters);
  document.addEventListener("change", keepFilters);

  /* A page rendered after a refused POST (no htmx: the e-mail link page, or the inbox without JS). */
  function focusOnLoad() {
    const root = $("#link-page") || $("#approval-detail");
    if (root) focusProblem(root);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", focusOnLoad);
  else focusOnLoad();

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
