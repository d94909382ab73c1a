// After `load` every image has either decoded or failed: count them on the body (data-figures,
// data-figures-loaded, for a reader and the headless-browser test); replace a failed one with a visible note.
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images), loaded = 0;
  images.forEach(function (img) {
    if (img.complete && img.naturalWidth > 0) { loaded += 1; return; }
    var note = document.createElement("p");
    note.className = "missing";
    note.textContent = "figure missing: " + (img.alt || "unnamed figure");
    img.replaceWith(note);
  });
  document.body.dataset.figures = images.length;
  document.body.dataset.figuresLoaded = loaded;
});
