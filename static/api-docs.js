// Starts Swagger UI on /api/v1/docs. A file rather than an inline script, so
// that the page's Content-Security-Policy can forbid inline scripts.
window.addEventListener("load", function () {
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.specUrl,
    domNode: root,
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    // Nothing leaves for a validator service on the internet.
    validatorUrl: null,
    // Try-it-out sends the token typed into "Authorize"; keep it for the tab only.
    persistAuthorization: false,
  });
});
