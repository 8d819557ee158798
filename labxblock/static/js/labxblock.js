/* The learner's view of a lab: launch status, terminal, keepalives, idle dialog, reset, ports, checks.
 *
 * Driven by the block's JSON handlers. Everything shown is set with textContent (never innerHTML).
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
    error: find("[data-role=error]"), terminal: find("[data-role=terminal]"), feedback: find("[data-role=feedback]"),
    confirm: find("[data-role=confirm-reset]"), idle: find("[data-role=idle]"),
    retry: find("[data-action=retry]"), reset: find("[data-action=reset]"), check: find("[data-action=check]"),
    port: find("[data-action=port]"), fullscreen: find("[data-action=fullscreen]")
  };

  function csrfToken() {
    var match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }
  function post(handler, data) {
    return fetch(runtime.handlerUrl(root, handler), {
      method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-CSRFToken": csrfToken(), "X-Requested-With": "XMLHttpRequest"},
      body: JSON.stringify(data || {})
    }).then(function (response) {
      if (!response.ok) { throw new Error("HTTP " + response.status); }
      return response.json();
    });
  }

  // --- status: adaptive polling (about 1 s while something happens, none when settled) ---
  var state = {phase: "", ready: false, elapsedAt: null, elapsed: null, pollTimer: null, failures: 0,
               terminalLoaded: false};

  function render(answer) {
    if (answer.error && !answer.phase) {  // an error with no status: say it, offer Retry
      setText(el.error, answer.error);
      show(el.retry, true);
      return;
    }
    state.phase = answer.phase;
    state.ready = !!answer.ready;
    box.setAttribute("data-phase", answer.phase);
    box.setAttribute("data-ready", state.ready ? "true" : "false");
    setText(el.phase, answer.label);
    setText(el.error, answer.error);
    show(el.retry, !!answer.error);
    state.elapsed = answer.elapsed_seconds;
    state.elapsedAt = Date.now();
    var busy = !!answer.poll_ms;
    setText(el.estimate, busy && answer.estimate_seconds ?
      format(gettext("Usually takes about {estimate}"), {estimate: duration(answer.estimate_seconds)}) : "");
    tickElapsed();
    if (el.reset) { el.reset.disabled = !(state.ready || answer.phase === "failed"); }
    if (el.check) { el.check.disabled = !state.ready; }
    if (state.ready && !state.terminalLoaded) { loadTerminal(); }
    if (!state.ready) { state.terminalLoaded = false; show(el.terminal, false); show(el.fullscreen, false); }
    schedule(answer.poll_ms);
  }

  function tickElapsed() {
    var busy = state.phase && !state.ready && state.phase !== "failed" && state.elapsed !== null;
    setText(el.elapsed, busy ? format(gettext("Elapsed: {elapsed}"),
      {elapsed: duration(state.elapsed + (Date.now() - state.elapsedAt) / 1000)}) : "");
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

  // --- terminal: a fresh single-use ticket each time ---
  function terminalUrl() {
    return post("terminal", {}).then(function (answer) {
      if (!answer.url) { throw new Error(answer.error || ""); }
      return answer.url;
    });
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
  var idleShown = false;
  function activity() { if (!idleShown) { lastActivity = Date.now(); } }
  ["keydown", "mousemove", "mousedown", "touchstart", "wheel"].forEach(function (name) {
    document.addEventListener(name, activity, {passive: true});
  });
  window.addEventListener("message", function (event) {  // the terminal page reports input
    if (el.terminal && event.source === el.terminal.contentWindow && event.data &&
        event.data.type === "labxblock:activity") { activity(); }
  });

  function keepaliveTick() {
    if (el.terminal && document.activeElement === el.terminal) { activity(); }  // typing in the terminal
    var idleFor = (Date.now() - lastActivity) / 1000;
    if (!args.hidden && el.idle && idleFor > args.idle_seconds && state.ready && !idleShown) {
      idleShown = true;  // no keepalives until answered
      show(el.idle, true);
      var button = el.idle.querySelector("[data-action=still-here]");
      if (button) { button.focus(); }
      return;
    }
    if (idleShown || document.visibilityState !== "visible" || idleFor > args.keepalive_seconds * 2) { return; }
    if (!state.phase || state.phase === "failed") { return; }
    post("keepalive", {}).then(function (answer) {
      if (answer.ok === false) { launch(); }  // suspended meanwhile: resume it
    }, function () { /* the status poll reports a lost connection */ });
  }
  setInterval(keepaliveTick, Math.max(5, args.keepalive_seconds) * 1000);
  setInterval(tickElapsed, 1000);
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible" && !idleShown) { activity(); launch(); }
  });

  // --- controls ---
  function on(action, handler) {
    var node = find("[data-action=" + action + "]");
    if (node) { node.addEventListener(node.tagName === "SELECT" ? "change" : "click", handler); }
  }
  on("still-here", function () {
    idleShown = false;
    show(el.idle, false);
    activity();
    // A launch, not a keepalive: the lab may have been paused while nobody answered, and the
    // page stopped polling once it was ready. Launching marks it used, wakes it, and shows the phase.
    launch();
  });
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
    state.terminalLoaded = false;
    show(el.terminal, false);
    if (el.terminal) { el.terminal.removeAttribute("src"); }
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
    var win = window.open("", "_blank");  // opened now, inside the click, so no popup blocker objects
    if (!win) { return; }
    win.opener = null;
    terminalUrl().then(function (url) { win.location.href = url; }, function () { win.close(); });
  });
  // --- progress checks: start a run, poll its result, show each check, the score and the last runs ---
  var checkTimer = null;
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
  }
  function collectChecks() {
    post("check_result", {}).then(renderChecks, function () {
      setText(el.feedback, gettext("Cannot reach the server. Retrying…"));
      checkTimer = setTimeout(collectChecks, 3000);
    });
  }
  on("check", function () {
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
