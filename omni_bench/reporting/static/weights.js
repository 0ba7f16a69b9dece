// Ranks the leaderboard's models again with the reader's domain and task weights, offline, by the rules of
// the Overall table (omni_bench/reporting/weights.py says which). The weights live in the URL after '#'
// (w.<domain>=2, t.<task>=0); other keys there (the results table's) are kept.
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("weights-data").textContent);
  const bytes = Uint8Array.from(atob(data.replicates), (c) => c.charCodeAt(0));
  const replicates = new Float32Array(bytes.buffer);
  const n = data.n;
  const inputs = Array.from(document.querySelectorAll("#weights input[data-weight]"));
  const body = document.querySelector("#weighted tbody");
  const keyOf = (input) => (input.dataset.weight === "domain" ? "w." : "t.") + input.dataset.name;
  const weightOf = (input) => {
    const value = parseFloat(input.value);
    return Number.isFinite(value) && value >= 0 ? value : 1;
  };

  function readHash() {
    const params = new URLSearchParams(window.location.hash.slice(1));
    for (const input of inputs) {
      const value = parseFloat(params.get(keyOf(input)));
      input.value = Number.isFinite(value) && value >= 0 ? String(value) : "1";
    }
  }

  function writeHash() {
    const params = new URLSearchParams(window.location.hash.slice(1));
    for (const input of inputs) {
      params.delete(keyOf(input));
      if (weightOf(input) !== 1) params.set(keyOf(input), String(weightOf(input)));
    }
    const hash = params.toString();
    history.replaceState(null, "", hash ? "#" + hash : window.location.pathname + window.location.search);
  }

  // np.nanpercentile with linear interpolation
  function percentile(values, q) {
    const finite = values.filter(Number.isFinite).sort((a, b) => a - b);
    if (!finite.length) return NaN;
    const position = (q / 100) * (finite.length - 1), low = Math.floor(position);
    const high = Math.min(low + 1, finite.length - 1);
    return finite[low] + (position - low) * (finite[high] - finite[low]);
  }

  // the normal distribution's two-sided tail (W. J. Cody's erfc, via Numerical Recipes' erfcc: |error| < 1.2e-7)
  function twoSided(z) {
    const x = Math.abs(z) / Math.SQRT2, t = 1 / (1 + 0.5 * x);
    return t * Math.exp(-x * x - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 +
      t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 +
      t * 0.17087277)))))))));
  }

  // the paired test of two overall scores from their per-resample values (leaderboard.test_from)
  function pValue(difference, first, second) {
    let count = 0, sum = 0, squares = 0;
    for (let k = 0; k < n; k++) {
      const d = first[k] - second[k];
      if (Number.isNaN(d)) continue;
      count++; sum += d; squares += d * d;
    }
    const spread = count ? Math.sqrt(Math.max(0, squares / count - (sum / count) ** 2)) : 0;
    return spread > 0 ? twoSided(difference / spread) : (difference === 0 ? 1 : 0);
  }

  // the weighted mean of values whose weights are given, NaN values left out (np.nanmean with weights)
  function weightedMean(parts) {
    const point = { sum: 0, weight: 0 }, sums = new Float64Array(n), weights = new Float64Array(n);
    for (const { value, reps, weight } of parts) {
      point.sum += weight * value; point.weight += weight;
      for (let k = 0; k < n; k++) if (!Number.isNaN(reps[k])) { sums[k] += weight * reps[k]; weights[k] += weight; }
    }
    const reps = new Float64Array(n);
    for (let k = 0; k < n; k++) reps[k] = weights[k] > 0 ? sums[k] / weights[k] : NaN;
    return { value: point.sum / point.weight, reps };
  }

  function scores() {
    const domainWeight = {}, taskWeight = {};
    for (const input of inputs) (input.dataset.weight === "domain" ? domainWeight : taskWeight)[input.dataset.name] =
      weightOf(input);
    const perLabel = data.labels.map(() => ({}));
    data.cells.forEach(([label, task, value], index) => {
      const [name, domain] = data.tasks[task];
      const weight = taskWeight[name];
      if (!(weight > 0) || !(domainWeight[domain] > 0)) return;
      (perLabel[label][domain] = perLabel[label][domain] || []).push(
        { value, weight, reps: replicates.subarray(index * n, (index + 1) * n) });
    });
    return data.labels.map((label, i) => {
      const domains = Object.keys(perLabel[i]).sort();
      if (!domains.length) return { label, domains, value: NaN };
      const overall = weightedMean(domains.map((d) => ({ ...weightedMean(perLabel[i][d]), weight: domainWeight[d] })));
      return { label, domains, coverage: domains.join(", "), value: overall.value, reps: overall.reps };
    });
  }

  function fmt(x) {  // Python's format(x, ".2g")
    if (!Number.isFinite(x)) return "n/a";
    if (x === 0) return "0";
    const exponent = Math.floor(Math.log10(Math.abs(Number(x.toPrecision(2)))));
    if (exponent < -4 || exponent >= 2) {
      const [mantissa, power] = x.toExponential(1).split("e");
      const p = parseInt(power, 10);
      return mantissa.replace(/\.?0+$/, "") + "e" + (p < 0 ? "-" : "+") + String(Math.abs(p)).padStart(2, "0");
    }
    return x.toFixed(Math.max(0, 1 - exponent)).replace(/(\.\d*?)0+$/, "$1").replace(/\.$/, "");
  }

  function render() {
    const rows = scores();
    const groups = {};
    for (const r of rows) if (Number.isFinite(r.value)) (groups[r.coverage] = groups[r.coverage] || []).push(r);
    for (const group of Object.values(groups)) {
      for (const r of group) { r.losses = 0; r.wins = 0; r.size = group.length; }
      for (let a = 0; a < group.length; a++) for (let b = a + 1; b < group.length; b++) {
        const difference = group[a].value - group[b].value;
        if (pValue(difference, group[a].reps, group[b].reps) >= data.level) continue;
        const [winner, loser] = difference < 0 ? [group[a], group[b]] : [group[b], group[a]];
        winner.wins++; loser.losses++;
      }
      for (const r of group) { r.rank = 1 + r.losses; r.worst = group.length - r.wins; }
      for (const r of group) r.tied = group.filter((s) => s.rank === r.rank).length > 1;
    }
    rows.sort((r, s) => (s.domains.length - r.domains.length) || ((s.size || 0) - (r.size || 0)) ||
      String(r.coverage).localeCompare(String(s.coverage)) ||
      ((Number.isFinite(r.value) ? r.value : Infinity) - (Number.isFinite(s.value) ? s.value : Infinity)) ||
      r.label.localeCompare(s.label));
    const tail = (1 - data.interval) / 2 * 100;
    body.replaceChildren(...rows.map((r) => {
      const tr = document.createElement("tr");
      tr.dataset.label = r.label;
      tr.dataset.rank = r.rank || "";
      tr.dataset.rankWorst = r.worst || "";
      tr.dataset.score = Number.isFinite(r.value) ? String(r.value) : "";
      let rank = "-";
      if (r.rank) {
        rank = r.rank + (r.tied ? "=" : "") + (r.worst !== r.rank ? ` (${r.rank}-${r.worst})` : "") + ` of ${r.size}`;
      }
      const ci = Number.isFinite(r.value) ?
        `${fmt(r.value)} [${fmt(percentile(Array.from(r.reps), tail))}, ${fmt(percentile(Array.from(r.reps), 100 - tail))}]` :
        "n/a";
      for (const text of [rank, r.label, ci, r.domains.join(", ") || "-"]) {
        const td = document.createElement("td");
        td.textContent = text;
        tr.appendChild(td);
      }
      return tr;
    }));
  }

  inputs.forEach((input) => input.addEventListener("input", () => { writeHash(); render(); }));
  document.getElementById("weights-reset").addEventListener("click", () => {
    for (const input of inputs) input.value = "1";
    writeHash();
    render();
  });
  window.addEventListener("hashchange", () => { readHash(); render(); });
  readHash();
  render();
})();
