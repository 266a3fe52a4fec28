// duewise collector UI: keyboard moves through the worklist; a row click opens the customer.
(function () {
  "use strict";
  const rows = Array.from(document.querySelectorAll("table.worklist tbody tr[data-href]"));
  if (!rows.length) return;
  let current = -1;
  function select(i) {
    if (current >= 0) rows[current].classList.remove("current");
    current = Math.max(0, Math.min(rows.length - 1, i));
    rows[current].classList.add("current");
    rows[current].querySelector("a").focus();
  }
  rows.forEach(function (row, i) {
    row.addEventListener("click", function (ev) {
      if (ev.target.closest("a")) return;
      window.location.href = row.dataset.href;
    });
    row.addEventListener("focusin", function () {
      if (current >= 0) rows[current].classList.remove("current");
      current = i;
      row.classList.add("current");
    });
  });
  document.addEventListener("keydown", function (ev) {
    const tag = (ev.target.tagName || "").toLowerCase();
    if (tag === "input" || tag === "select" || tag === "textarea") return;
    if (ev.key === "j") { select(current + 1); ev.preventDefault(); }
    if (ev.key === "k") { select(current - 1); ev.preventDefault(); }
  });
})();
