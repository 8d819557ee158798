/* The learner's view of a lab: launch status, terminal, keepalives, leaving, idle dialog, reset, ports, checks,
 * and the time left of the lab's time budget (counted down here while the lab is ready).
 *
 * Driven by the block's JSON handlers. Everything shown is set with textContent (never innerHTML).
 * The terminal pages (iframe and "Open in a new window") live on the gateway's origin: they post
 * {type: "labxblock:activity"} to this page's exact origin, and this page accepts it only from that
 * origin and from those windows; it tells a popup when the lab stops being ready.
 * For tests: the root carries data-phase and data-ready; controls carry data-action; areas data-role.
 */
/* exported LabXBlock */
function LabXBlock(runtime, element, args) {
  "use strict";
  var root = element.jquery ? element[0] : element;
  var box = root.classList && root.classList.contains("labxblock") ? root : root.querySelector(".labxblock");
  if (!box) { return; }
  var catalogue = args.i18n || {};
  var ns = window.LabXBlockI18N;

  function gettext(msgid) {
    if (ns && typeof ns.gettext === "function") { return ns.gettext(msgid); }
    return catalogue[msgid] || msgid;
  }
  function format(text, params) {
    return text.replace(/\{(\w+)\}/g, function (all, name) {
      return Object.prototype.hasOwnProperty.call(params, name) ? String(params[name]) : all;
    });
  }
  function duration(seconds) {
    seconds = Math.max(0, Math.round(seconds));
    if (seconds < 60) { return format(gettext("{seconds} s"), {seconds: seconds}); }
    return format(gettext("{minutes} min {seconds} s"), {minutes: Math.floor(seconds / 60), seconds: seconds % 60});
  }
  function find(selector) { return box.querySelector(selector); }
  function show(el, visible) { if (el) { el.hidden = !visible; } }
  function setText(el, text) { if (el) { el.textContent = text || ""; } }

  var el = {
    phase: find("[data-role=phase]"), elapsed: find("[data-role=elapsed]"), estimate: find("[data-role=estimate]"),
    error: find("[data-role=error]"), budget: find("[data-role=budget]"), terminal: find("[data-role=terminal]"), feedback: find("[data-role=feedback]"),
    confirm: find("[data-role=confirm-reset]"), idle: find("[data-role=idle]"), idleText: find("[data-role=idle-text]"),
    retry: find("[data-action=retry]"), reset: find("[data-action=reset]"), check: find("[data-action=check]"),
    port: find("[data-action=port]"), fullscreen: find("[data-action=fullscreen]")
  };

  function csrfToken() {
    var match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }
  function post(handler, data, options) {
    return fetch(runtime.handlerUrl(root, handler), {
      method: "POST", credentials: "same-origin", keepalive: !!(options && options.keepalive),
      headers: {"Content-Type": "application/json", "X-CSRFToken": csrfToken(), "X-Requested-With": "XMLHttpRequest"},
      body: JSON.stringify(data || {})
    }).then(function (response) {
      if (!response.ok) { throw new Error("HTTP " + response.status); }
      return response.json();
    });
  }

  // --- status: adaptive polling (about 1 s while something happens, none when settled) ---
  var state = {phase: "", ready: false, elapsedAt: null, elapsed: null, pollTimer: null, failures: 0,
               terminalLoaded: false, budget: null};

  function render(answer) {
    if (answer.error && !answer.phase) {  // an error with no status: say it, offer Retry
      setText(el.error, answer.error);
      show(el.retry, true);
      return;
    }
    var wasReady = state.ready;
    state.phase = answer.phase;
    state.ready = !!answer.ready;
    box.setAttribute("data-phase", answer.phase);
    box.setAttribute("data-ready", state.ready ? "true" : "false");
    setText(el.phase, answer.label);
    setText(el.error, answer.error);
    show(el.retry, !!answer.error);
    state.elapsed = answer.elapsed_seconds;
    state.elapsedAt = Date.now();
    state.budget = answer.budget ? {left: answer.budget.left_seconds, limit: answer.budget.limit_seconds,
      warning: answer.budget.warning, exhausted: answer.budget.exhausted, message: answer.budget.message,
      at: Date.now()} : null;
    tickBudget();
    var busy = !!answer.poll_ms;
    setText(el.estimate, busy && answer.estimate_seconds ?
      format(gettext("Usually takes about {estimate}"), {estimate: duration(answer.estimate_seconds)}) : "");
    tickElapsed();
    if (el.reset) { el.reset.disabled = !(state.ready || answer.phase === "failed"); }
    if (el.check) { el.check.disabled = !state.ready; }
    if (state.ready && !state.terminalLoaded) { loadTerminal(); }
    if (!state.ready) {
      unloadFrame();
      show(el.fullscreen, false);
      if (wasReady) {  // a popup would freeze on a paused lab without a word: tell it
        tellPopups("paused", format(gettext("{status}. Go back to the course page to continue."),
                                    {status: answer.label}));
        var paused = answer.phase === "suspending" || answer.phase === "suspended";
        if (paused && !args.hidden && el.idle && !idleShown && !usedUp()) { askStillHere(); }  // to wake it
      }
    }
    if (idleShown) { setText(el.idleText, state.ready ? idleText : gettext(
      "Your lab was paused to save resources. Press the button to wake it up.")); }
    schedule(answer.poll_ms);
  }

  function tickElapsed() {
    var busy = state.phase && !state.ready && state.phase !== "failed" && state.elapsed !== null;
    setText(el.elapsed, busy ? format(gettext("Elapsed: {elapsed}"),
      {elapsed: duration(state.elapsed + (Date.now() - state.elapsedAt) / 1000)}) : "");
  }

  // --- time budget: the time left, counted down while the lab is ready; the server says when it ends ---
  var BUDGET_ASK_MS = 5000;  // at most this often: the server's pass may take a moment to stop the lab
  var budgetAsked = 0;
  function usedUp() { return !!(state.budget && state.budget.exhausted); }
  function clock(seconds) {
    var minutes = Math.max(0, Math.floor(seconds / 60));
    if (minutes < 60) { return duration(seconds); }
    return format(gettext("{hours} h {minutes} min"), {hours: Math.floor(minutes / 60), minutes: minutes % 60});
  }
  function tickBudget() {
    var budget = state.budget;
    show(el.budget, !!budget);
    if (!budget) { return; }
    var left = Math.max(0, budget.left - (state.ready ? (Date.now() - budget.at) / 1000 : 0));
    var text = format(gettext("Lab time left: {time}"), {time: clock(left)});
    setText(el.budget, budget.message ? text + ". " + budget.message : text);
    box.setAttribute("data-budget", budget.exhausted ? "used-up" : budget.warning ? "warning" : "ok");
    // Crossing the warning share or the end here: ask the server, which warns (once) or answers "used up".
    var crossed = left <= 0 || (!budget.warning && left <= budget.limit * 0.2);
    if (state.ready && crossed && Date.now() - budgetAsked > BUDGET_ASK_MS) {
      budgetAsked = Date.now();
      request("status", {});
    }
  }

  function schedule(ms) {
    clearTimeout(state.pollTimer);
    if (ms) { state.pollTimer = setTimeout(function () { request("status", {}); }, ms); }
  }

  function request(handler, data) {
    return post(handler, data).then(function (answer) {
      state.failures = 0;
      render(answer);
    }, function () {
      state.failures += 1;  // back off up to 10 s; the page keeps trying on its own
      setText(el.error, gettext("Cannot reach the server. Retrying…"));
      show(el.retry, true);
      schedule(Math.min(10000, 1000 * Math.pow(2, state.failures)));
    });
  }

  function launch() { return request("status", {launch: true}); }

  // --- terminal: a fresh single-use ticket each time; its pages say where to post activity ---
  var gateway = {origin: "", popups: []};
  function terminalUrl() {
    return post("terminal", {}).then(function (answer) {
      if (!answer.url) { throw new Error(answer.error || ""); }
      gateway.origin = new URL(answer.url, location.href).origin;
      return answer.url + "&origin=" + encodeURIComponent(location.origin);
    });
  }
  function popupOpen() {
    gateway.popups = gateway.popups.filter(function (win) { return !win.closed; });
    return gateway.popups.length > 0;
  }
  function tellPopups(what, message) {
    if (!popupOpen() || !gateway.origin) { return; }
    gateway.popups.forEach(function (win) {
      win.postMessage({type: "labxblock:lab", state: what, message: message}, gateway.origin);
    });
  }
  // Detached and put back without a src: its document goes at once (its websocket and the SSH
  // session close), and a page restored from the back/forward cache loads a fresh terminal.
  function unloadFrame() {
    state.terminalLoaded = false;
    var frame = el.terminal;
    if (!frame || !frame.parentNode) { return; }
    show(frame, false);
    if (!frame.hasAttribute("src")) { return; }
    var holder = frame.parentNode, next = frame.nextSibling;
    holder.removeChild(frame);
    frame.removeAttribute("src");
    holder.insertBefore(frame, next);
  }
  function loadTerminal() {
    if (!el.terminal) { return; }
    state.terminalLoaded = true;
    terminalUrl().then(function (url) {
      el.terminal.src = url;
      show(el.terminal, true);
      show(el.fullscreen, true);
    }, function (err) {
      state.terminalLoaded = false;
      setText(el.error, err.message || gettext("Cannot reach the server. Retrying…"));
      show(el.retry, true);
    });
  }

  // --- activity, keepalives and the idle dialog ---
  var lastActivity = Date.now();
  var lastKeepalive = 0;
  var idleShown = false;
  var idleText = el.idleText ? el.idleText.textContent : "";
  function activity() { if (!idleShown) { lastActivity = Date.now(); } }
  ["keydown", "mousemove", "mousedown", "touchstart", "wheel"].forEach(function (name) {
    document.addEventListener(name, activity, {passive: true});
  });
  // Someone can see the lab: this page, or a terminal window it opened (while this tab is hidden).
  function watched() { return document.visibilityState === "visible" || popupOpen(); }
  function sendKeepalive() {
    lastKeepalive = Date.now();
    post("keepalive", {}).then(function (answer) {
      if (answer.ok === false && !usedUp()) { launch(); }  // suspended meanwhile: resume it
    }, function () { /* the status poll reports a lost connection */ });
  }
  window.addEventListener("message", function (event) {  // the terminal pages report input
    var data = event.data;
    if (!gateway.origin || event.origin !== gateway.origin || !data || data.type !== "labxblock:activity") { return; }
    var fromFrame = el.terminal && event.source === el.terminal.contentWindow;
    if (!fromFrame && gateway.popups.indexOf(event.source) < 0) { return; }
    if (idleShown && state.ready) { stillHere(); return; }  // typing in a window that hides this dialog
    activity();
    // A hidden tab's timers are slowed down: the popup's typing sends the keepalive itself.
    if (!fromFrame && Date.now() - lastKeepalive > args.keepalive_seconds * 1000) { sendKeepalive(); }
  });

  function askStillHere() {
    idleShown = true;  // no keepalives until answered
    setText(el.idleText, idleText);
    show(el.idle, true);
    var button = el.idle.querySelector("[data-action=still-here]");
    if (button) { button.focus(); }
  }
  function stillHere() {
    idleShown = false;
    show(el.idle, false);
    activity();
    // A launch, not a keepalive: the lab may have been paused while nobody answered, and the
    // page stopped polling once it was ready. Launching marks it used, wakes it, and shows the phase.
    launch();
  }
  function keepaliveTick() {
    if (el.terminal && document.activeElement === el.terminal) { activity(); }  // typing in the terminal
    var idleFor = (Date.now() - lastActivity) / 1000;
    if (!args.hidden && el.idle && idleFor > args.idle_seconds && state.ready && !idleShown) { askStillHere(); }
    if (!state.phase || state.phase === "failed" || !watched()) { return; }
    if (!idleShown && idleFor <= args.keepalive_seconds * 2) { sendKeepalive(); return; }
    // Nobody keeps the lab up now: show its real state, which may be paused by the time anyone looks.
    if (state.ready) { request("status", {}); }
  }
  setInterval(keepaliveTick, Math.max(5, args.keepalive_seconds) * 1000);
  setInterval(function () { tickElapsed(); tickBudget(); }, 1000);

  // --- leaving: hidden or closed, the lab is suspended after a short grace unless a keepalive comes ---
  var ANSWER_LEAVE_MS = 1500;  // after the leaving tab's request, so that the keepalive lands last
  var channel = typeof BroadcastChannel === "function" ? new BroadcastChannel("labxblock") : null;
  var hasLeft = false;
  // Hidden: only a ready lab (a learner who looks elsewhere while it is built wants it ready on return;
  // the keepalive timeout still applies). Closed: whatever its phase.
  function leave(closed) {
    if (hasLeft || popupOpen() || !state.phase || state.phase === "failed" || !(closed || state.ready)) {
      return;
    }
    hasLeft = true;
    // keepalive: the request outlives the page; the CSRF header is the runtime's usual one.
    post("leave", {}, {keepalive: true}).catch(function () { /* the keepalive timeout still applies */ });
    if (channel) { channel.postMessage({type: "labxblock:left", lab: args.lab}); }
  }
  if (channel) {  // another tab or window with the same lab was left: if the learner is here, say so
    channel.onmessage = function (event) {
      var data = event.data;
      if (data && data.type === "labxblock:left" && data.lab === args.lab && watched() && !idleShown &&
          state.phase && state.phase !== "failed") { setTimeout(sendKeepalive, ANSWER_LEAVE_MS); }
    };
  }
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState !== "visible") { leave(false); return; }
    hasLeft = false;
    if (!idleShown) { activity(); launch(); }  // back within the grace: the launch keeps the lab up
  });
  window.addEventListener("pagehide", function () {
    leave(true);
    unloadFrame();
    tellPopups("detached", gettext("The course page was closed, so typing here no longer keeps your lab running. Open the course page again to keep working."));
  });
  window.addEventListener("pageshow", function (event) {
    if (!event.persisted) { return; }  // back from the back/forward cache: a fresh terminal
    hasLeft = false;
    tellPopups("attached", "");
    activity();
    launch();
  });

  // --- controls ---
  function on(action, handler) {
    var node = find("[data-action=" + action + "]");
    if (node) { node.addEventListener(node.tagName === "SELECT" ? "change" : "click", handler); }
  }
  on("still-here", stillHere);
  on("retry", function () {
    setText(el.error, "");
    show(el.retry, false);
    if (state.phase === "failed") { request("retry", {}); } else { launch(); }
  });
  on("reset", function () {
    show(el.confirm, true);
    var yes = el.confirm && el.confirm.querySelector("[data-action=reset-yes]");
    if (yes) { yes.focus(); }
  });
  on("reset-no", function () { show(el.confirm, false); if (el.reset) { el.reset.focus(); } });
  on("reset-yes", function () {
    show(el.confirm, false);
    unloadFrame();
    clearChecks();  // the last result was about the lab that is going away
    request("reset", {});
  });
  on("port", function () {
    post("choose_port", {port: parseInt(el.port.value, 10)}).then(function (answer) {
      if (answer.error) { setText(el.error, answer.error); return; }
      if (state.ready) { loadTerminal(); }
    });
  });
  on("fullscreen", function (event) {
    event.preventDefault();
    // Opened now, inside the click, so no popup blocker objects. It keeps its opener: the gateway's
    // page posts the learner's activity here (to this exact origin) and hears when the lab is paused.
    var win = window.open("", "_blank");
    if (!win) { return; }
    terminalUrl().then(function (url) {
      gateway.popups.push(win);
      win.location.href = url;
    }, function () { win.close(); });
  });
  // --- progress checks: start a run, poll its result, show each check, the score and the last runs ---
  var checkTimer = null;
  var checkAsked = false;  // the learner pressed Check here: show them the result when it comes
  var checkBox = find("[data-role=checks]");
  var checkList = find("[data-role=check-results]");
  var history = find("[data-role=check-history]");
  var historyList = find("[data-role=check-history-list]");

  function renderChecks(answer) {
    clearTimeout(checkTimer);
    setText(el.feedback, answer.message || answer.error || "");
    if (el.check) { el.check.disabled = !!answer.running || !state.ready; }
    if (answer.running) {
      checkTimer = setTimeout(function () { collectChecks(); }, answer.poll_ms || 1000);
      return;
    }
    if (answer.state === "failed" && !state.ready) { launch(); }  // "resume first": wake the lab now
    if (checkList) {
      checkList.textContent = "";
      (answer.results || []).forEach(function (result) {
        var item = document.createElement("li");
        item.className = result.passed ? "labxblock-check-passed" : "labxblock-check-failed";
        var head = document.createElement("strong");
        head.textContent = result.label + ": " + result.name;
        item.appendChild(head);
        if (result.hint) {
          var hint = document.createElement("pre");
          hint.className = "labxblock-check-hint";
          hint.textContent = result.hint;
          item.appendChild(hint);
        }
        checkList.appendChild(item);
      });
      show(checkList, !!(answer.results && answer.results.length));
    }
    if (historyList) {
      historyList.textContent = "";
      (answer.history || []).forEach(function (run) {
        var item = document.createElement("li");
        var when = new Date(run.at).toLocaleString();
        item.textContent = run.score === null ? format(gettext("not scored on {when}"), {when: when}) :
          format(gettext("{score}% on {when}"), {score: Math.round(run.score * 100), when: when});
        historyList.appendChild(item);
      });
      show(history, !!(answer.history && answer.history.length));
    }
    // The learner pressed Check here: bring the result into view (the live region announces it).
    if (checkAsked && checkBox) { checkAsked = false; checkBox.scrollIntoView({block: "nearest"}); }
  }
  function clearChecks() {
    clearTimeout(checkTimer);
    checkAsked = false;
    setText(el.feedback, "");
    if (checkList) { checkList.textContent = ""; show(checkList, false); }
  }
  function collectChecks() {
    post("check_result", {}).then(renderChecks, function () {
      setText(el.feedback, gettext("Cannot reach the server. Retrying…"));
      checkTimer = setTimeout(collectChecks, 3000);
    });
  }
  on("check", function () {
    checkAsked = true;
    setText(el.feedback, gettext("Checking…"));
    el.check.disabled = true;
    post("check", {}).then(renderChecks, function () {
      setText(el.feedback, gettext("Cannot reach the server. Retrying…"));
      el.check.disabled = !state.ready;
    });
  });
  if (args.has_checks) { collectChecks(); }  // the last runs; publishes a result nobody collected yet

  launch();
  return {post: post, format: format};  // for the course staff's panel (labxblock_staff.js)
}
