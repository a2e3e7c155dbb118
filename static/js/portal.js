// Send the CSRF token with every htmx request (the CSP forbids inline scripts, so it
// is read from the page's meta tag here).
document.addEventListener("htmx:configRequest", function (event) {
  var meta = document.querySelector('meta[name="csrf-token"]');
  if (meta) {
    event.detail.headers["X-CSRF-Token"] = meta.getAttribute("content");
  }
});
