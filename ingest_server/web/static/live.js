// Live progress of a running run. Follows the run's event stream (see
// ingest_server/web/live.py) and updates the #live-progress section in place.
// Once the run has settled it reloads the page one time, so the full report
// shows. Without this script the section keeps the counts it was rendered with.
(function () {
  "use strict";

  var section = document.getElementById("live-progress");
  if (!section || !window.EventSource) {
    return;
  }
  var url = section.getAttribute("data-events-url");
  var hint = section.querySelector('[data-field="hint"]');
  var source = new EventSource(url);

  function setText(selector, value) {
    var element = section.querySelector(selector);
    if (element) {
      element.textContent = String(value);
    }
  }

  function setHint(text) {
    if (hint) {
      hint.textContent = text;
    }
  }

  function show(progress) {
    Object.keys(progress.counts).forEach(function (outcome) {
      setText('[data-count="' + outcome + '"]', progress.counts[outcome]);
    });
    setText('[data-field="done"]', progress.done);
    setText(
      '[data-field="collected"]',
      progress.collected === null ? "an unknown number of" : progress.collected
    );
    setText('[data-field="status"]', progress.status);
    var bar = section.querySelector("progress");
    if (!bar) {
      return;
    }
    if (progress.collected) {
      bar.max = progress.collected;
      bar.value = Math.min(progress.done, progress.collected);
      bar.textContent = progress.done + " of " + progress.collected;
    } else {
      // A progress element without a value is shown as indeterminate.
      bar.removeAttribute("value");
      bar.textContent = progress.done + " done";
    }
  }

  // The page of a settled run has no live section, so one reload is enough.
  // The flag stops a reload loop if the server still renders the run as running.
  function reloadOnce() {
    var key = "testoqa-live-reloaded:" + url;
    try {
      if (window.sessionStorage.getItem(key)) {
        return;
      }
      window.sessionStorage.setItem(key, "1");
    } catch (error) {
      // Storage can be unavailable (private windows); reloading once is still safe.
    }
    window.location.reload();
  }

  source.addEventListener("open", function () {
    setHint("Updating live.");
  });

  source.addEventListener("progress", function (event) {
    show(JSON.parse(event.data));
  });

  source.addEventListener("finished", function (event) {
    source.close();
    show(JSON.parse(event.data));
    setHint("The run has ended: loading the full report.");
    reloadOnce();
  });

  source.addEventListener("error", function () {
    if (source.readyState === EventSource.CLOSED) {
      setHint("Live updates stopped: reload the page for newer counts.");
    } else {
      setHint("Connection lost: reconnecting.");
    }
  });
})();
