// prefkit studio: keyboard shortcuts, submit guard and timing for the labelling page, and the
// token-in-fragment convenience of the sign-in page. Plain JavaScript, no build step.
"use strict";

(function () {
  const started = Date.now();

  function setupLogin() {
    const input = document.getElementById("token");
    if (!input) return;
    const match = /(?:^#|&)token=([^&]+)/.exec(window.location.hash || "");
    if (match) {
      input.value = decodeURIComponent(match[1]);
      history.replaceState(null, "", window.location.pathname);  // keep the token out of history
    }
  }

  function setupLabel() {
    const form = document.getElementById("vote-form");
    if (!form) return;
    const submit = document.getElementById("submit");
    const critique = document.getElementById("critique");
    const required = form.dataset.critique === "required";
    const keys = { "1": "choice-left", "2": "choice-right", "3": "choice-tie", "4": "choice-both_bad" };
    let sent = false;

    function chosen() {
      return form.querySelector('input[name="choice"]:checked');
    }
    function update() {
      const needsText = required && critique && critique.value.trim() === "";
      submit.disabled = sent || !chosen() || needsText;
    }
    form.addEventListener("change", update);
    if (critique) critique.addEventListener("input", update);
    form.addEventListener("submit", function (event) {
      update();
      if (submit.disabled) {
        event.preventDefault();
        return;
      }
      form.elements["duration_ms"].value = String(Date.now() - started);
      sent = true;  // one submission per page: a double click sends nothing more
      submit.disabled = true;
    });
    document.addEventListener("keydown", function (event) {
      const typing = event.target && (event.target.tagName === "TEXTAREA" || event.target.tagName === "INPUT" ||
        event.target.tagName === "SELECT");
      if (event.ctrlKey || event.metaKey || event.altKey) return;
      if (typing && event.key !== "Enter") return;
      if (typing && event.target.tagName === "TEXTAREA") return;
      if (keys[event.key]) {
        const radio = document.getElementById(keys[event.key]);
        if (radio) {
          radio.checked = true;
          update();
          event.preventDefault();
        }
      } else if (event.key === "Enter") {
        event.preventDefault();
        update();
        if (!submit.disabled) form.requestSubmit(submit);
      } else if (event.key === "u" && !typing) {
        const undo = document.getElementById("undo");
        if (undo) undo.click();
      }
    });
    update();
  }

  function setupUndoOnly() {
    const undo = document.getElementById("undo");
    if (!undo || document.getElementById("vote-form")) return;
    document.addEventListener("keydown", function (event) {
      if (event.key === "u" && !(event.ctrlKey || event.metaKey || event.altKey)) undo.click();
    });
  }

  window.addEventListener("hashchange", setupLogin);
  document.addEventListener("DOMContentLoaded", function () {
    setupLogin();
    setupLabel();
    setupUndoOnly();
  });
})();
