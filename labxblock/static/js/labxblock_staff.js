/* Course staff's panel under a lab: its learners, a page at a time, with suspend, reset, extend, grant
 * lab time and a read-only view of a learner's ready lab. Starts the learner's view (LabXBlock) first.
 *
 * Everything shown is set with textContent (never innerHTML). For tests: rows carry data-lab-id,
 * buttons data-action (staff-suspend, staff-reset, staff-extend, staff-grant, staff-open).
 */
/* global LabXBlock */
/* exported LabXBlockStaff */
function LabXBlockStaff(runtime, element, args) {
  "use strict";
  var view = LabXBlock(runtime, element, args);
  var root = element.jquery ? element[0] : element;
  var panel = root.querySelector(".labxblock-staff");
  if (!panel || !view) { return; }
  var post = view.post, format = view.format;
  var catalogue = args.staff_i18n || {};
  var ns = window.LabXBlockI18N;
  var current = 1;

  function gettext(msgid) {
    if (ns && typeof ns.gettext === "function") { return ns.gettext(msgid); }
    return catalogue[msgid] || msgid;
  }
  function find(selector) { return panel.querySelector(selector); }
  function say(text) { find("[data-role=staff-message]").textContent = text || ""; }
  function cell(row, text) {
    var td = document.createElement("td");
    td.textContent = text;
    row.appendChild(td);
    return td;
  }
  function button(action, label, onClick) {
    var b = document.createElement("button");
    b.type = "button";
    b.setAttribute("data-action", action);
    b.textContent = gettext(label);
    b.addEventListener("click", onClick);
    return b;
  }
  function when(iso) { return iso ? new Date(iso).toLocaleString() : gettext("never"); }

  function act(learner, action) {
    if (action === "reset" && !window.confirm(format(
        gettext("Reset {username}'s lab? Everything in it is deleted and a fresh one is built."),
        {username: learner.username}))) { return; }
    var data = {lab_id: learner.lab_id, action: action};
    if (action === "grant") {
      var hours = window.prompt(gettext("How many hours of lab time to grant?"), "1");
      if (hours === null) { return; }
      data.hours = parseFloat(hours);
    }
    post("staff_action", data).then(function (answer) {
      say(answer.error || answer.why || gettext("Done."));
      load(current);
    }).catch(function () { say(gettext("Something went wrong. Please try again.")); });
  }
  function open(learner) {
    post("staff_open", {lab_id: learner.lab_id}).then(function (answer) {
      if (answer.error) { say(answer.error); return; }
      window.open(answer.url, "_blank", "noopener");
    }).catch(function () { say(gettext("Something went wrong. Please try again.")); });
  }

  function render(answer) {
    var head = find("[data-role=staff-head]"), rows = find("[data-role=staff-rows]");
    head.textContent = "";
    ["Learner", "State", "Last seen", "Up this month", "Lab time left", "Last check", "Actions"].forEach(function (title) {
      var th = document.createElement("th");
      th.textContent = gettext(title);
      head.appendChild(th);
    });
    rows.textContent = "";
    if (!answer.learners.length) { say(gettext("No learner has opened this lab yet.")); }
    answer.learners.forEach(function (learner) {
      var tr = document.createElement("tr");
      tr.setAttribute("data-lab-id", String(learner.lab_id));
      cell(tr, learner.username);
      cell(tr, learner.phase);
      cell(tr, when(learner.last_seen_at));
      cell(tr, format(gettext("{hours} h"), {hours: learner.up_hours}));
      cell(tr, learner.budget_hours === null ? "" :
        format(gettext("{left} h of {budget} h"), {left: learner.left_hours, budget: learner.budget_hours}));
      cell(tr, learner.score === null ? "" : Math.round(learner.score * 100) + "%");
      var actions = cell(tr, "");
      var offered = learner.actions || [];  // only what would change the lab (labs/staff.py)
      [["suspend", "Suspend"], ["reset", "Reset"], ["extend", "Extend 7 days"], ["grant", "Grant time"]]
        .forEach(function (pair) {
          if (offered.indexOf(pair[0]) < 0) { return; }
          actions.appendChild(button("staff-" + pair[0], pair[1], function () { act(learner, pair[0]); }));
        });
      if (learner.can_open) {
        actions.appendChild(button("staff-open", "Open read-only", function () { open(learner); }));
      }
      rows.appendChild(tr);
    });
    current = answer.page;
    find("[data-role=staff-page]").textContent = format(gettext("Page {page} of {pages} ({total} learners)"),
      {page: answer.page, pages: answer.pages, total: answer.total});
    find("[data-action=staff-prev]").disabled = answer.page <= 1;
    find("[data-action=staff-next]").disabled = answer.page >= answer.pages;
  }
  function load(wanted) {
    post("staff_learners", {page: wanted}).then(function (answer) {
      if (answer.error) { say(answer.error); return; }
      render(answer);
    }).catch(function () { say(gettext("Something went wrong. Please try again.")); });
  }

  find("[data-action=staff-prev]").textContent = gettext("Previous");
  find("[data-action=staff-next]").textContent = gettext("Next");
  find("[data-action=staff-prev]").addEventListener("click", function () { load(current - 1); });
  find("[data-action=staff-next]").addEventListener("click", function () { load(current + 1); });
  load(1);
}
