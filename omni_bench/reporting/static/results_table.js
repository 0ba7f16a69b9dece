// Sorts and filters the results table of an omni-bench report or leaderboard. The state (sort column,
// direction, filters) lives in the URL after '#', so a copied link opens the same view. No network.
(function () {
  "use strict";
  const table = document.getElementById("results");
  if (!table) return;
  const body = table.tBodies[0];
  const rows = Array.from(body.rows);
  const headers = Array.from(table.tHead.rows[0].cells);
  const filters = Array.from(document.querySelectorAll("select[data-filter]"));
  const counter = document.getElementById("results-count");
  const state = { sort: "", dir: "asc" };

  function readHash() {
    const params = new URLSearchParams(window.location.hash.slice(1));
    for (const select of filters) {
      const wanted = params.get(select.dataset.filter) || "";
      select.value = Array.from(select.options).some((o) => o.value === wanted) ? wanted : "";
    }
    const column = params.get("sort") || "";
    state.sort = headers.some((h) => h.dataset.key === column) ? column : "";
    state.dir = params.get("dir") === "desc" ? "desc" : "asc";
  }

  // Keys this table does not own (the leaderboard's weights) are kept as they are.
  function writeHash() {
    const params = new URLSearchParams(window.location.hash.slice(1));
    for (const key of [...filters.map((s) => s.dataset.filter), "sort", "dir"]) params.delete(key);
    for (const select of filters) if (select.value) params.set(select.dataset.filter, select.value);
    if (state.sort) { params.set("sort", state.sort); params.set("dir", state.dir); }
    const hash = params.toString();
    history.replaceState(null, "", hash ? "#" + hash : window.location.pathname + window.location.search);
  }

  // Numeric columns sort on the number a cell starts with ("0.118 [0.087, 0.146]", "2="); a cell without
  // one ("n/a") counts as missing. The warnings column sorts on how many warnings a row has.
  function sortKey(row, index) {
    const cell = row.cells[index];
    const type = headers[index].dataset.type;
    if (type === "count") return cell.children.length;
    const text = cell.textContent.trim();
    if (type !== "number") return text;
    const number = parseFloat(text);
    return Number.isFinite(number) ? number : "";
  }

  function compare(a, b) {
    const emptyA = a === "", emptyB = b === "";
    if (emptyA || emptyB) return emptyA - emptyB;  // missing values last, whatever the direction
    if (typeof a === "number" && typeof b === "number") return a - b;
    return String(a).localeCompare(String(b), undefined, { numeric: true });
  }

  function apply() {
    let shown = 0;
    for (const row of rows) {
      const keep = filters.every((select) => !select.value ||
        ("|" + (row.dataset[select.dataset.filter] || "") + "|").includes("|" + select.value + "|"));
      row.hidden = !keep;
      shown += keep;
    }
    const index = headers.findIndex((h) => h.dataset.key === state.sort);
    const ordered = rows.slice();
    if (index >= 0) {
      const sign = state.dir === "desc" ? -1 : 1;
      ordered.sort((r, s) => {
        const a = sortKey(r, index), b = sortKey(s, index);
        return (a === "" || b === "") ? compare(a, b) : sign * compare(a, b);
      });
    }
    for (const row of ordered) body.appendChild(row);
    headers.forEach((h, i) => h.setAttribute("aria-sort",
      i === index ? (state.dir === "desc" ? "descending" : "ascending") : "none"));
    if (counter) counter.textContent = shown + " of " + rows.length + " rows";
  }

  headers.forEach((header) => header.addEventListener("click", () => {
    state.dir = state.sort === header.dataset.key && state.dir === "asc" ? "desc" : "asc";
    state.sort = header.dataset.key;
    writeHash();
    apply();
  }));
  filters.forEach((select) => select.addEventListener("change", () => { writeHash(); apply(); }));
  window.addEventListener("hashchange", () => { readHash(); apply(); });
  readHash();
  apply();
})();
