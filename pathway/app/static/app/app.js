// Enhancements only: the page works without this file.
(function () {
  "use strict";
  document.addEventListener("DOMContentLoaded", function () {
    // Print button (printing needs script; without it the browser's own print works).
    document.querySelectorAll("[data-print]").forEach(function (b) {
      b.hidden = false;
      b.addEventListener("click", function () { window.print(); });
    });
    // One submission per action: a double click does not send the form twice.
    document.querySelectorAll("form[data-once]").forEach(function (f) {
      f.addEventListener("submit", function () {
        var b = f.querySelector("button[type=submit]");
        if (b) {
          window.setTimeout(function () { b.disabled = true; b.textContent = "Working…"; }, 0);
        }
      });
    });
    // After an action, move focus to its notice so screen readers hear it.
    var notice = document.querySelector(".notice");
    if (notice) { notice.setAttribute("tabindex", "-1"); notice.focus(); }
  });
})();
