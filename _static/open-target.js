// A link to something inside a collapsed box (an exercise's solution, a "Tested by" dropdown)
// opens the box, so that the reader lands on the equation rather than on an empty, closed frame.
(function () {
  function openTarget() {
    if (!location.hash) return;
    var target = document.getElementById(decodeURIComponent(location.hash.slice(1)));
    if (!target) return;
    var opened = false;
    for (var box = target.parentElement; box; box = box.parentElement) {
      if (box.classList && box.classList.contains("toggle-hidden")) {
        var button = document.querySelector('.toggle-button[data-target="' + CSS.escape(box.id) + '"]');
        if (button && typeof toggleHidden === "function") {
          toggleHidden(button);  // sphinx-togglebutton's own switch
          opened = true;
        }
      }
      if (box.tagName === "DETAILS" && !box.open) {
        box.open = true;
        opened = true;
      }
    }
    if (opened) target.scrollIntoView();
  }
  // "load" comes after sphinx-togglebutton has closed the boxes on DOMContentLoaded.
  window.addEventListener("load", openTarget);
  window.addEventListener("hashchange", openTarget);
})();
