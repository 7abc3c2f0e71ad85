// The job page, live: reads the job's event stream (GET /ui/jobs/{id}/events, Server-Sent Events behind the
// dashboard's session) with EventSource, which resumes by itself with Last-Event-ID after a dropped
// connection. Each event adds a row to #events and moves the status tag, the progress bar and the result;
// the terminal event (finished, dead_lettered, canceled) closes the stream and retires the Cancel form.
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live || !window.EventSource) return;
  var jobId = live.dataset.job;
  var STATUS = {
    enqueued: "queued", started: "running", retry_scheduled: "retrying", parked: "parked", woken: "queued",
    finished: "finished", dead_lettered: "dead", canceled: "canceled", replayed: "queued"
  };
  var TERMINAL = { finished: true, dead_lettered: true, canceled: true };
  var statusTag = document.getElementById("job-status");
  var state = document.getElementById("live-state");
  var rows = document.querySelector("#events tbody");
  var bar = document.getElementById("progress");
  var fill = document.getElementById("progress-fill");
  var barText = document.getElementById("progress-text");
  var result = document.getElementById("job-result");
  var resultBox = document.getElementById("result-box");
  var cancelForm = document.getElementById("cancel");
  var ended = live.dataset.ended === "true";
  var seen = {};

  if (cancelForm) {
    cancelForm.addEventListener("submit", function (e) {
      if (!window.confirm("Cancel job " + jobId + "?")) e.preventDefault();
    });
  }

  function short(value) {
    var text = typeof value === "string" ? value : JSON.stringify(value);
    return text.length > 160 ? text.slice(0, 157) + "…" : text;
  }

  function details(data) {
    // `at` of a progress event repeats the event's own time
    return Object.keys(data || {}).filter(function (k) { return k !== "at" && data[k] !== null && data[k] !== undefined; })
      .map(function (k) { return k + " " + short(data[k]); }).join(" · ");
  }

  function showProgress(data) {
    bar.hidden = false;
    var text = "";
    if (typeof data.fraction === "number") {
      var pct = Math.max(0, Math.min(100, data.fraction * 100));
      fill.style.width = pct.toFixed(1) + "%";
      text = Math.round(pct) + "%";
    }
    if (data.message) text += (text ? " · " : "") + data.message;
    barText.textContent = text;
  }

  function stop(note) {
    source.close();
    state.textContent = note;
  }

  function onEvent(message) {
    var event;
    try { event = JSON.parse(message.data); } catch (err) { return; }
    if (seen[event.id]) return;  // never twice, whatever a proxy replays
    seen[event.id] = true;
    var row = document.createElement("tr");
    row.dataset.id = event.id;
    row.dataset.event = event.event;
    [event.at.replace("T", " "), event.event, details(event.data)].forEach(function (text, i) {
      var cell = document.createElement("td");
      cell.textContent = text;
      if (i === 0) cell.className = "at";
      if (i === 2) cell.className = "msg";
      row.appendChild(cell);
    });
    rows.appendChild(row);
    if (STATUS[event.event]) statusTag.textContent = STATUS[event.event];
    if (event.event === "progress") showProgress(event.data || {});
    if (event.event === "finished" && event.data && "result" in event.data) {
      result.textContent = JSON.stringify(event.data.result, null, 2);
      resultBox.hidden = false;
    }
    if (event.event === "finished" && bar && !bar.hidden) showProgress({ fraction: 1 });
    if (TERMINAL[event.event]) {
      ended = true;
      if (cancelForm) cancelForm.hidden = true;
      stop("· ended");
    }
  }

  var source = new EventSource("/ui/jobs/" + encodeURIComponent(jobId) + "/events");
  Object.keys(STATUS).concat(["progress"]).forEach(function (name) { source.addEventListener(name, onEvent); });
  source.onopen = function () { if (!ended) state.textContent = "· live"; };
  source.onerror = function () {
    // The server ends the stream after the terminal event; a job that had ended before the page loaded and
    // whose stream holds no terminal event (expired) must not make EventSource reconnect for ever.
    if (ended) { stop(""); return; }
    state.textContent = source.readyState === EventSource.CLOSED ? "· not live (reload)" : "· reconnecting…";
  };
})();
