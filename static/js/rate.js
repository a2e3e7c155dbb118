// Rating form: a live character counter for the review text (the server enforces the
// limit; this only shows it). Delegated, so it keeps working after htmx swaps.
(function () {
  function update(area) {
    var out = document.getElementById(area.getAttribute("data-counter"));
    if (!out) {
      return;
    }
    var max = parseInt(area.getAttribute("data-max"), 10);
    // Count code points, as the server does (a string's length counts UTF-16 units).
    var length = Array.from(area.value.replace(/\r\n/g, "\n").trim()).length;
    out.querySelector("[data-count]").textContent = String(length);
    out.classList.toggle("over", length > max);
  }
  document.addEventListener("input", function (event) {
    if (event.target.matches && event.target.matches("textarea[data-counter]")) {
      update(event.target);
    }
  });
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("textarea[data-counter]").forEach(update);
  });
})();
