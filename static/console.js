/* Durable Console: keyboard shortcuts, countdowns, copy, timeline folding, bulk selection,
   live indicator. Plain JS on top of htmx; no build step. */
(function () {
  "use strict";

  const $ = (selector, root) => (root || document).querySelector(selector);
  const $$ = (selector, root) => Array.from((root || document).querySelectorAll(selector));
  // At most one run per `ms`, and always one after the last call. Live refreshes use it:
  // a debounce never fired while pushes kept coming (a busy list or home page stayed stale);
  // this refreshes every `ms` instead, and once more after the last push.
  const throttle = (fn, ms) => {
    let timer = null;
    return () => {
      if (timer === null) timer = setTimeout(() => { timer = null; fn(); }, ms);
    };
  };
  const typing = (el) => el && (el.isContentEditable || /^(TEXTAREA|SELECT)$/.test(el.tagName) ||
    (el.tagName === "INPUT" && !/^(checkbox|radio|button|submit|reset)$/.test(el.type)));

  /* --- keyboard --------------------------------------------------------------------- */
  let current = -1;
  let pendingG = false;

  function navItems() {
    return $$("[data-nav-item]").filter((el) => el.offsetParent !== null);
  }

  function moveCurrent(step) {
    const items = navItems();
    if (!items.length) return;
    const before = items.findIndex((el) => el.classList.contains("is-current"));
    current = Math.max(0, Math.min(items.length - 1, (before < 0 ? (step > 0 ? -1 : items.length) : before) + step));
    items.forEach((el) => el.classList.remove("is-current"));
    const item = items[current];
    item.classList.add("is-current");
    item.scrollIntoView({ block: "nearest" });
  }

  function currentItem() {
    return $("[data-nav-item].is-current");
  }

  function openShortcuts() {
    const dialog = $("#shortcuts");
    if (dialog && !dialog.open) dialog.showModal();
  }

  document.addEventListener("keydown", (event) => {
    if (event.metaKey || event.ctrlKey || event.altKey) return;
    if (event.key === "Escape" && typing(document.activeElement)) { document.activeElement.blur(); return; }
    if (typing(event.target)) return;
    if (pendingG) {
      pendingG = false;
      const target = { h: "/", e: "/executions/", f: "/functions/" }[event.key];
      if (target) { window.location.href = target; event.preventDefault(); }
      return;
    }
    switch (event.key) {
      case "j":
      case "k":
        // Pages with their own list keys (the approvals inbox) have no data-nav-item rows.
        if (!navItems().length) return;
        moveCurrent(event.key === "j" ? 1 : -1);
        break;
      case "Enter":
      case "o": {
        const item = currentItem();
        const link = item && (item.querySelector("[data-nav-link]") || item.querySelector("a[href]"));
        if (!link) return;
        link.click();
        break;
      }
      case "x": {
        const box = currentItem() && currentItem().querySelector("input[data-select]");
        if (!box) return;
        box.checked = !box.checked;
        box.dispatchEvent(new Event("change", { bubbles: true }));
        break;
      }
      case "/": {
        const search = $("[data-search]");
        if (!search) return;
        search.focus();
        search.select();
        break;
      }
      case "?": openShortcuts(); break;
      case "g": pendingG = true; setTimeout(() => { pendingG = false; }, 1200); break;
      default: return;
    }
    event.preventDefault();
  });

  document.addEventListener("click", (event) => {
    if (event.target.closest("[data-shortcuts-open]")) openShortcuts();
  });

  /* --- countdowns: <time data-countdown datetime="ISO"> --------------------------------- */
  // The console's one duration format at whole seconds, as executions/console/formatting.py
  // writes it (duration, countdown_text): "42 s", "3 min 5 s", "2 h 10 min", "3 d 4 h".
  function durationText(whole) {
    if (whole < 60) return `${whole} s`;
    const minutes = Math.floor(whole / 60), secs = whole % 60;
    if (minutes < 60) return secs ? `${minutes} min ${secs} s` : `${minutes} min`;
    const hours = Math.floor(minutes / 60), mins = minutes % 60;
    if (hours < 48) return mins ? `${hours} h ${mins} min` : `${hours} h`;
    const days = Math.floor(hours / 24), hrs = hours % 24;
    if (mins) return `${days} d ${hrs} h ${mins} min`;
    return hrs ? `${days} d ${hrs} h` : `${days} d`;
  }
  function relative(ms) {
    const text = durationText(Math.round(Math.abs(ms) / 1000));
    return ms >= 0 ? `in ${text}` : `${text} ago`;
  }

  function tickCountdowns() {
    const now = Date.now();
    $$("time[data-countdown]").forEach((el) => {
      const at = Date.parse(el.getAttribute("datetime"));
      if (!Number.isNaN(at)) el.textContent = relative(at - now);
    });
  }
  setInterval(tickCountdowns, 1000);

  /* --- times in the browser's zone: <time data-local="datetime|time|precise|datetime-ms" datetime="ISO"> ---- */
  // The server writes UTC with a "UTC" label (formatting.time_tag): that stays in the title.
  const pad = (n, width) => String(n).padStart(width || 2, "0");
  const zoneName = (() => {
    try { return Intl.DateTimeFormat().resolvedOptions().timeZone || "your time zone"; } catch (err) { return "your time zone"; }
  })();
  function localText(at, style) {
    const time = `${pad(at.getHours())}:${pad(at.getMinutes())}:${pad(at.getSeconds())}`;
    if (style === "time") return time;
    if (style === "precise") return `${time}.${pad(at.getMilliseconds(), 3)}`;
    const date = `${at.getFullYear()}-${pad(at.getMonth() + 1)}-${pad(at.getDate())}`;
    if (style === "datetime-ms") return `${date} ${time}.${pad(at.getMilliseconds(), 3)}`;
    return `${date} ${time}`;
  }
  function localizeTimes(root) {
    const scope = root && root.querySelectorAll ? root : document;
    $$("time[data-local]:not([data-localized]), time[data-countdown]:not([data-localized])", scope).forEach((el) => {
      const at = new Date(el.getAttribute("datetime"));
      if (Number.isNaN(at.getTime())) return;
      const utc = el.title || el.textContent;
      if (el.hasAttribute("data-local")) el.textContent = localText(at, el.dataset.local);
      el.title = `${localText(at, "datetime")} ${zoneName} · ${utc}`;
      el.setAttribute("data-localized", "");
    });
  }

  /* --- copy buttons: <button data-copy="#selector"> -------------------------------------- */
  document.addEventListener("click", async (event) => {
    const button = event.target.closest("[data-copy]");
    if (!button) return;
    event.preventDefault();
    const source = $(button.getAttribute("data-copy"));
    if (!source) return;
    const text = "value" in source && source.tagName !== "PRE" ? source.value : source.textContent;
    try {
      await navigator.clipboard.writeText(text);
    } catch (err) {
      const area = document.createElement("textarea");
      area.value = text;
      document.body.appendChild(area);
      area.select();
      document.execCommand("copy");
      area.remove();
    }
    const label = button.textContent;
    button.textContent = "Copied";
    setTimeout(() => { button.textContent = label; }, 1200);
  });

  /* --- JSON editors: Format button, Tab inserts spaces --------------------------------- */
  document.addEventListener("click", (event) => {
    const button = event.target.closest("[data-format-json]");
    if (!button) return;
    event.preventDefault();
    const area = $(button.getAttribute("data-format-json"));
    const status = button.parentElement.querySelector("[data-json-status]");
    try {
      area.value = JSON.stringify(JSON.parse(area.value || "null"), null, 2);
      if (status) status.textContent = "Valid JSON";
    } catch (err) {
      if (status) status.textContent = err.message;
    }
  });
  document.addEventListener("keydown", (event) => {
    if (event.key !== "Tab" || !event.target.matches("textarea.json-editor") || event.shiftKey) return;
    event.preventDefault();
    event.target.setRangeText("  ", event.target.selectionStart, event.target.selectionEnd, "end");
  });

  /* --- timeline folding: rows carry data-op and data-depth -------------------------------- */
  const collapsed = new Map(); // timeline id -> Set of collapsed op ids (kept across live refreshes)

  function applyFolding(table) {
    let state = collapsed.get(table.id);
    if (!state) {
      state = new Set($$("tr[data-depth][data-collapsed]", table).map((row) => row.id));
      collapsed.set(table.id, state);
    }
    let hideDeeperThan = null;
    $$("tr[data-depth]", table).forEach((row) => {
      const depth = Number(row.dataset.depth);
      if (hideDeeperThan !== null && depth > hideDeeperThan) {
        row.classList.add("collapsed-child");
        return;
      }
      hideDeeperThan = null;
      row.classList.remove("collapsed-child");
      const toggle = row.querySelector("[data-toggle]");
      const isCollapsed = state.has(row.id);
      if (toggle) toggle.setAttribute("aria-expanded", String(!isCollapsed));
      if (toggle && isCollapsed) hideDeeperThan = depth;
    });
  }

  function applyAllFolding(root) {
    $$("table[data-timeline]", root && root.querySelectorAll ? root : document).forEach(applyFolding);
    if (root && root.matches && root.matches("table[data-timeline]")) applyFolding(root);
  }

  document.addEventListener("click", (event) => {
    const toggle = event.target.closest("[data-toggle]");
    const bulk = event.target.closest("[data-timeline-fold]");
    if (toggle) {
      const row = toggle.closest("tr[data-depth]");
      const table = toggle.closest("table[data-timeline]");
      const state = collapsed.get(table.id);
      if (state.has(row.id)) state.delete(row.id); else state.add(row.id);
      applyFolding(table);
    } else if (bulk) {
      const table = $(bulk.getAttribute("data-timeline-fold"));
      const state = collapsed.get(table.id);
      state.clear();
      if (bulk.dataset.fold === "collapse") $$("tr[data-depth] [data-toggle]", table).forEach((t) => state.add(t.closest("tr").id));
      applyFolding(table);
    }
  });

  /* --- bulk selection on the execution list ------------------------------------------------- */
  function updateSelection() {
    const boxes = $$("input[data-select]");
    const chosen = boxes.filter((box) => box.checked);
    boxes.forEach((box) => box.closest("tr") && box.closest("tr").classList.toggle("is-selected", box.checked));
    $$("[data-selected-count]").forEach((el) => { el.textContent = String(chosen.length); });
    // Stop…/Redrive… need rows, unless the action is for everything the filter matches.
    const byFilter = $("#scope-filter");
    const nothing = chosen.length === 0 && !(byFilter && byFilter.checked);
    $$("[data-needs-selection]").forEach((el) => { el.disabled = nothing; });
    const all = $("#select-all");
    if (all) {
      all.checked = boxes.length > 0 && chosen.length === boxes.length;
      all.indeterminate = chosen.length > 0 && chosen.length < boxes.length;
    }
  }

  document.addEventListener("change", (event) => {
    if (event.target.id === "select-all") {
      $$("input[data-select]").forEach((box) => { box.checked = event.target.checked; });
    }
    if (event.target.matches("#select-all, input[data-select], input[name='scope']")) updateSelection();
  });
  // Boxes the browser restored (Back from a bulk page, htmx history) or htmx swapped in.
  document.addEventListener("DOMContentLoaded", updateSelection);
  window.addEventListener("pageshow", updateSelection);
  document.addEventListener("htmx:historyRestore", updateSelection);
  document.addEventListener("htmx:afterSettle", updateSelection);

  /* --- live updates ----------------------------------------------------------------------------- */
  function setLive(state, title) {
    $$("[data-live-indicator]").forEach((el) => {
      el.dataset.state = state;
      el.textContent = state === "live" ? "Live" : state === "offline" ? "Offline, reconnecting…" : "Connecting…";
      el.title = title || "";
    });
  }
  // A change between the page's render and the socket's opening was pushed to nobody: on
  // (re)connecting, fetch the live regions once. A finished execution's first connection
  // skips it (it rarely changes, and its page can be heavy).
  const opened = new WeakSet();
  document.addEventListener("htmx:wsOpen", (event) => {
    setLive("live", "Updates arrive over a websocket");
    const socket = event.target;
    const reconnect = opened.has(socket);
    opened.add(socket);
    if (socket.dataset.liveTarget && (reconnect || socket.dataset.running === "true")) {
      htmx.trigger($(socket.dataset.liveTarget), "live-refresh");
    }
    const results = $("#execution-results");
    if (socket.id === "list-socket" && results && results.dataset.firstPage === "true" && reconnect) {
      htmx.trigger(results, "live-refresh");
    }
    if (socket.dataset.liveRefresh && reconnect) {
      $$(socket.dataset.liveRefresh).forEach((el) => htmx.trigger(el, "live-refresh"));
    }
  });
  document.addEventListener("htmx:wsClose", () => setLive("offline", "Websocket closed; retrying"));
  document.addEventListener("htmx:wsError", () => setLive("offline", "Websocket error; retrying"));

  // Pages that re-fetch regions rather than swapping pushed fragments (home) mark their
  // socket element with data-live-refresh="<selector>": any message triggers a refetch.
  const refreshers = new WeakMap();
  document.addEventListener("htmx:wsBeforeMessage", (event) => {
    const socket = event.target.closest("[data-live-refresh]");
    if (!socket) return;
    event.preventDefault();
    if (!refreshers.has(socket)) {
      refreshers.set(socket, throttle(() => {
        $$(socket.dataset.liveRefresh).forEach((el) => htmx.trigger(el, "live-refresh"));
      }, 1500));
    }
    refreshers.get(socket)();
  });

  // The detail page: the push carries the header, rendered, and a marker saying the other
  // regions changed; those carry per-user content (actions, CSRF), so this page fetches them.
  const detailRefreshers = new WeakMap();
  document.addEventListener("htmx:wsAfterMessage", (event) => {
    const socket = event.target.closest("[data-live-target]");
    if (!socket || !String(event.detail.message).includes("data-live-sync")) return;
    if (!detailRefreshers.has(socket)) {
      detailRefreshers.set(socket, throttle(() => htmx.trigger($(socket.dataset.liveTarget), "live-refresh"), 250));
    }
    detailRefreshers.get(socket)();
  });
  // While the socket is down, fall back to polling (slowly) so the page never goes stale silently.
  setInterval(() => {
    const offline = $('[data-live-indicator][data-state="offline"]');
    const socket = $("[data-live-target]");
    if (offline && socket) htmx.trigger($(socket.dataset.liveTarget), "live-refresh");
  }, 10000);

  // The execution list: a pushed row with no match on the page is a new execution (or one
  // on another page). On the first page, refetch the table with the current filter.
  const refreshList = throttle(() => {
    const results = $("#execution-results");
    if (!results) return;
    if (results.dataset.firstPage === "true") {
      htmx.trigger(results, "live-refresh");
    } else {
      const notice = $("#new-rows-notice");
      if (notice) notice.classList.remove("hidden");
    }
  }, 400);
  document.addEventListener("htmx:oobErrorNoTarget", (event) => {
    const content = event.detail && event.detail.content;
    if (content && content.hasAttribute && content.hasAttribute("data-live-row")) { refreshList(); refreshChips(); }
  });
  // Classes wait until htmx has settled the swap: settling copies the pushed row's own
  // attributes onto it (class included), after the swap event.
  const swappedRows = new Set();
  document.addEventListener("htmx:oobAfterSwap", (event) => {
    const row = event.detail && event.detail.target;
    if (row && row.matches && row.matches("tr[data-live-row]")) {
      swappedRows.add(row.id);
      refreshChips();
    }
  });
  function settleRows() {
    swappedRows.forEach((id) => {
      const fresh = document.getElementById(id);
      if (fresh) { fresh.classList.add("flash"); markUnmatched(fresh); }
    });
    if (swappedRows.size) updateSelection();
    swappedRows.clear();
  }
  document.addEventListener("htmx:wsAfterMessage", settleRows);
  document.addEventListener("htmx:afterSettle", settleRows);

  // A pushed row whose new status the status filter excludes stays (the page does not jump)
  // but is dimmed with a note; the next refresh of the list drops it.
  function markUnmatched(row) {
    const wanted = $$("input[name=status][form=execution-filters]").map((input) => input.value);
    if (!wanted.length || wanted.includes(row.dataset.status)) return;
    row.classList.add("unmatched");
    const link = row.querySelector("[data-nav-link]");
    if (!link || row.querySelector(".unmatched-note")) return;
    const note = document.createElement("span");
    note.className = "unmatched-note small";
    note.dataset.testid = "unmatched-note";
    note.textContent = `now ${row.dataset.status}: no longer matches the filter`;
    link.after(" ", note);
  }

  // Chip counts follow the pushes: the chips alone are fetched again (select), at most every
  // 2 s. Counts the cache served from before that request come with the page's refetch delay
  // and counts_since (executions/queries/cache.py): ask again then, for counts from after it.
  function fetchChips(since) {
    const source = $("#status-chips-refresh");
    if (!source) return;
    const url = source.getAttribute("hx-get") + (since ? `&counts_since=${since}` : "");
    htmx.ajax("GET", url, { source, target: "#status-chips", select: "#status-chips", swap: "outerHTML" });
  }
  const refreshChips = throttle(() => fetchChips(""), 2000);
  document.addEventListener("htmx:beforeSwap", (event) => {
    if (!event.detail.elt || event.detail.elt.id !== "status-chips-refresh") return;
    const response = event.detail.serverResponse || "";
    const again = /id="execution-results-refresh" data-refresh-ms="(\d+)"/.exec(response);
    const since = /counts_since=([\d.]+)/.exec(response);
    if (again && since) setTimeout(() => fetchChips(since[1]), Number(again[1]));
  });

  /* --- screen readers: status changes in a polite live region ---------------------------- */
  function ensureAnnouncer() {
    // Looked up each time: an htmx history restore brings back a copy of the body.
    let announcer = document.getElementById("live-announcer");
    if (!announcer) {
      announcer = document.createElement("div");
      announcer.id = "live-announcer";
      announcer.className = "visually-hidden";
      announcer.setAttribute("role", "status");
      announcer.setAttribute("aria-live", "polite");
      document.body.appendChild(announcer);
    }
    return announcer;
  }
  const knownStatus = new Map(); // list row id or "execution" -> the status last seen
  function statusChanges(speak) {
    const changes = [];
    const track = (key, status, label) => {
      const before = knownStatus.get(key);
      knownStatus.set(key, status);
      if (before && before !== status) changes.push(`${label} is now ${status}`);
    };
    $$("tr[data-live-row][data-status]").forEach((row) => {
      const link = row.querySelector("[data-nav-link]");
      track(row.id, row.dataset.status, link ? link.textContent.trim() : "An execution");
    });
    const badge = $("#execution-status");
    const name = $("#execution-name");
    if (badge) track("execution", badge.textContent.trim(), name ? name.textContent.trim() : "The execution");
    if (!speak || !changes.length) return;
    ensureAnnouncer().textContent = changes.length <= 3 ? `${changes.join(". ")}.` : `${changes.length} executions changed status.`;
  }

  /* --- progress: a bar along the top while any htmx request is in flight ------------------ */
  const inFlight = new Set(); // the requests' XMLHttpRequests (afterRequest can fire twice for one)
  function progressBar() {
    let bar = document.getElementById("htmx-progress");
    if (!bar) {
      bar = document.createElement("div");
      bar.id = "htmx-progress";
      bar.className = "htmx-progress";
      bar.hidden = true;
      bar.setAttribute("aria-hidden", "true");
      document.body.prepend(bar);
    }
    return bar;
  }
  function showProgress() {
    progressBar().hidden = inFlight.size === 0;
  }
  document.addEventListener("htmx:beforeSend", (event) => { inFlight.add(event.detail.xhr); showProgress(); });
  document.addEventListener("htmx:afterRequest", (event) => { inFlight.delete(event.detail.xhr); showProgress(); });

  /* --- after every htmx swap ------------------------------------------------------------------- */
  document.addEventListener("htmx:load", (event) => {
    applyAllFolding(event.target);
    tickCountdowns();
    localizeTimes(event.target);
  });
  // Regions swapped in out of band (live refreshes) keep their folding and countdowns too.
  document.addEventListener("htmx:oobAfterSwap", () => {
    applyAllFolding(document);
    tickCountdowns();
    localizeTimes(document);
    statusChanges(true);
  });
  document.addEventListener("htmx:afterSettle", () => statusChanges(true));
  document.addEventListener("htmx:historyRestore", () => { localizeTimes(document); showProgress(); });
  document.addEventListener("DOMContentLoaded", () => {
    applyAllFolding(document);
    tickCountdowns();
    localizeTimes(document);
    updateSelection();
    ensureAnnouncer();
    progressBar();
    statusChanges(false);
  });
})();
