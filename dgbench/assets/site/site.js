/* dgbench leaderboard pages: sortable headers and the model filter. No dependencies; the data
   is the table itself. Sorting reads each cell's data-sort (the number as the CSV prints it). */
(function () {
  "use strict";

  function keyOf(row, col, type) {
    var cell = row.cells[col];
    var text = cell ? cell.getAttribute("data-sort") : null;
    if (text === null || text === "") return null;
    return type === "num" ? parseFloat(text) : text;
  }

  function compare(x, y, type) {
    if (type === "num") return x < y ? -1 : x > y ? 1 : 0;
    return x.localeCompare(y, "en", { numeric: true });
  }

  function sortBy(table, th, type) {
    var dir = th.getAttribute("aria-sort") === "ascending" ? "descending" : "ascending";
    var col = th.cellIndex;
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.forEach(function (r, i) {
      if (!r.hasAttribute("data-index")) r.setAttribute("data-index", String(i));
    });
    function index(r) { return parseInt(r.getAttribute("data-index"), 10); }
    rows.sort(function (a, b) {
      var x = keyOf(a, col, type), y = keyOf(b, col, type);
      if (x === null || y === null) {  /* cells without a number go last either way */
        return x === y ? index(a) - index(b) : (x === null ? 1 : -1);
      }
      var c = compare(x, y, type);
      return (dir === "descending" ? -c : c) || index(a) - index(b);
    });
    rows.forEach(function (r) { body.appendChild(r); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (h) {
      h.removeAttribute("aria-sort");
    });
    th.setAttribute("aria-sort", dir);
  }

  Array.prototype.forEach.call(document.querySelectorAll("table.board"), function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) {
      var button = th.querySelector("button");
      if (!button) return;
      button.addEventListener("click", function () {
        sortBy(table, th, button.getAttribute("data-type"));
      });
    });
  });

  var input = document.getElementById("filter");
  var status = document.getElementById("filter-status");
  var tables = document.querySelectorAll("table.board");
  if (!input || !status || !tables.length) return;

  function applyFilter() {
    var q = input.value.trim().toLowerCase();
    var shown = 0, total = 0;
    Array.prototype.forEach.call(tables, function (table, t) {
      Array.prototype.forEach.call(table.tBodies[0].rows, function (row) {
        var hit = !q || row.getAttribute("data-model").toLowerCase().indexOf(q) !== -1;
        row.hidden = !hit;
        if (t === 0) { total += 1; shown += hit ? 1 : 0; }
      });
    });
    status.textContent = q ? "Showing " + shown + " of " + total + " rows matching \u201c" +
      input.value.trim() + "\u201d." : "Showing all " + total + " rows.";
  }

  input.addEventListener("input", applyFilter);
  applyFilter();
})();
