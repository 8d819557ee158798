/* Studio's author view of a lab: "Test this lab" — launch, phases, outputs, terminal, checks, Stop.
 *
 * Driven by the block's Studio-only handlers (test_*). Everything shown is set with textContent.
 * On the lab's own Studio page the runtime named Studio's script for the nested instructions:
 * it is started first (args.nested_init). For tests: the root carries data-test-phase.
 */
/* exported LabXBlockAuthor */
function LabXBlockAuthor(runtime, element, args) {
  "use strict";
  args = args || {};
  var root = element.jquery ? element[0] : element;
  if (args.nested_init && typeof window[args.nested_init] === "function") {
    window[args.nested_init](runtime, element, args.nested_args);
  }
  var box = root.classList && root.classList.contains("labxblock-author") ? root : root.querySelector(".labxblock-author");
  var panel = box && box.querySelector("[data-role=test]");
  if (!panel || !panel.querySelector("[data-action=test-launch]")) { return; }  // test labs are off here
  var catalogue = args.i18n || {};

  function gettext(msgid) { return catalogue[msgid] || msgid; }
  function format(text, params) {
    return text.replace(/\{(\w+)\}/g, function (all, name) {
      return Object.prototype.hasOwnProperty.call(params, name) ? String(params[name]) : all;
    });
  }
  function find(selector) { return panel.querySelector(selector); }
  function show(el, visible) { if (el) { el.hidden = !visible; } }
  function setText(el, text) { if (el) { el.textContent = text || ""; } }

  var el = {
    launch: find("[data-action=test-launch]"), stop: find("[data-action=test-stop]"),
    terminal: find("[data-action=test-terminal]"), check: find("[data-action=test-check]"),
    phase: find("[data-role=test-phase]"), deletes: find("[data-role=test-deletes]"),
    error: find("[data-role=test-error]"), phases: find("[data-role=test-phases]"),
    outputs: find("[data-role=test-outputs]"), checks: find("[data-role=test-checks]"),
    frameWrap: find("[data-role=test-terminal-wrap]"), frame: find("[data-role=test-terminal]")
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
  function offline() { setText(el.error, gettext("Cannot reach the server.")); }

  // --- the lab: status, phases with their timings, outputs present or missing ---
  var statusTimer = null;

  function item(list, text, className) {
    var li = document.createElement("li");
    li.textContent = text;
    if (className) { li.className = className; }
    list.appendChild(li);
  }
  function renderPhases(phases) {
    el.phases.textContent = "";
    (phases || []).forEach(function (p) {
      var when = p.seconds === null ? gettext("not yet") :
        format(gettext("{seconds} s"), {seconds: p.seconds.toFixed(1)});
      item(el.phases, p.label + ": " + when, p.seconds === null ? "labxblock-test-pending" : "labxblock-test-done");
      el.phases.lastChild.setAttribute("data-phase", p.name);
    });
  }
  function renderOutputs(outputs) {
    el.outputs.textContent = "";
    (outputs || []).forEach(function (o) {
      var need = o.required ? gettext("required") : gettext("optional");
      item(el.outputs, o.name + " (" + need + "): " + o.label,
           o.state === "missing" ? (o.required ? "labxblock-test-missing" : "labxblock-test-absent") : "labxblock-test-present");
      el.outputs.lastChild.setAttribute("data-output", o.name);
      el.outputs.lastChild.setAttribute("data-state", o.state);
    });
  }
  function render(answer) {
    if (answer.error && !answer.phase) { setText(el.error, answer.error); return; }
    box.setAttribute("data-test-phase", answer.phase);
    setText(el.phase, answer.label);
    setText(el.error, answer.error);
    setText(el.deletes, answer.deletes);
    renderPhases(answer.phases);
    renderOutputs(answer.outputs);
    var live = answer.phase !== "deleted" && answer.phase !== "deleting";
    show(el.stop, live);
    show(el.terminal, !!answer.ready);
    show(el.check, !!answer.ready);
    if (!answer.ready) { show(el.frameWrap, false); }
    clearTimeout(statusTimer);
    if (answer.poll_ms) { statusTimer = setTimeout(refresh, answer.poll_ms); }
  }
  function refresh() { post("test_status").then(render, offline); }
  function act(handler) {
    return function () { post(handler).then(render, offline); };
  }

  // --- terminal and checks ---
  function openTerminal() {
    post("test_terminal").then(function (answer) {
      if (answer.error) { setText(el.error, answer.error); return; }
      el.frame.src = answer.url;
      show(el.frameWrap, true);
    }, offline);
  }
  var checkTimer = null;
  function renderChecks(answer) {
    if (answer.error) { setText(el.error, answer.error); return; }
    el.checks.textContent = "";
    var message = document.createElement("p");
    message.textContent = answer.message || "";
    el.checks.appendChild(message);
    var list = document.createElement("ul");
    list.className = "labxblock-check-results";
    (answer.results || []).forEach(function (r) {
      item(list, r.name + ": " + r.label + (r.hint ? " — " + r.hint : ""),
           r.passed ? "labxblock-check-passed" : "labxblock-check-failed");
    });
    el.checks.appendChild(list);
    clearTimeout(checkTimer);
    if (answer.poll_ms) {
      checkTimer = setTimeout(function () { post("test_check_result").then(renderChecks, offline); }, answer.poll_ms);
    }
  }

  el.launch.addEventListener("click", act("test_launch"));
  if (el.stop) { el.stop.addEventListener("click", act("test_stop")); }
  if (el.terminal) { el.terminal.addEventListener("click", openTerminal); }
  if (el.check) {
    el.check.addEventListener("click", function () { post("test_check").then(renderChecks, offline); });
  }
  refresh();
  post("test_check_result").then(function (answer) { if (answer.state) { renderChecks(answer); } }, function () {});
}
