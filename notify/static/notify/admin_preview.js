// Live preview of an announcement in the admin form: mirrors title, body and level
// into the preview box as the staff user types. No dependencies.
(function () {
  "use strict";
  var colors = { info: "#3b82f6", success: "#16a34a", warning: "#d97706", error: "#dc2626" };
  function update() {
    var box = document.getElementById("notify-preview");
    if (!box) return;
    var title = document.getElementById("id_title");
    var body = document.getElementById("id_body");
    var level = document.getElementById("id_level");
    if (title) box.querySelector(".notify-preview-title").textContent = title.value || "(title)";
    if (body) box.querySelector(".notify-preview-body").textContent = body.value;
    if (level) {
      box.dataset.level = level.value;
      box.style.borderLeftColor = colors[level.value] || colors.info;
    }
  }
  document.addEventListener("DOMContentLoaded", function () {
    ["id_title", "id_body", "id_level"].forEach(function (id) {
      var el = document.getElementById(id);
      if (el) { el.addEventListener("input", update); el.addEventListener("change", update); }
    });
    update();
  });
})();
