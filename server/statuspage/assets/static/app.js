// The status page's script: it refreshes the view from its JSON under
// /api/ every few seconds without reloading, filters as you type, and adds
// keyboard shortcuts. Without it every view still works as plain HTML.
"use strict";
(function () {
  const every = 2000;
  const main = document.querySelector("main");
  const view = main && main.dataset.view;
  const live = document.getElementById("live");
  const apiEl = document.querySelector("[data-api]");

  function get(obj, path) {
    return path.split(".").reduce((o, k) => (o == null ? undefined : o[k]), obj);
  }
  function fmt(v, how) {
    if (how === "s") return (v * 1000).toFixed(1) + " ms";
    if (how === "ns") return (v / 1e6).toFixed(3) + "ms";
    return String(v);
  }
  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v; else e.setAttribute(k, v);
    }
    for (const k of kids) if (k != null) e.append(k);
    return e;
  }
  function clock(t) {
    return t ? new Date(t).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC") : "";
  }
  function short(v) { return v && v.length > 12 ? v.slice(0, 12) : (v || ""); }

  // Scalars (data-k) and plain lists (tbody data-list with data-cols).
  function fill(data) {
    document.querySelectorAll("[data-k]").forEach((e) => {
      let v = get(data, e.dataset.k);
      if (v === undefined) v = e.dataset.default;
      if (v !== undefined) e.textContent = fmt(v, e.dataset.fmt);
    });
    document.querySelectorAll("tbody[data-list]").forEach((tb) => {
      const rows = get(data, tb.dataset.list) || [];
      const cols = tb.dataset.cols.split(" ");
      tb.replaceChildren(...rows.map((r) => el("tr", null, ...cols.map((c) => el("td", null, c === "firstSeen" ? clock(r[c]) : String(r[c]))))));
    });
  }

  function proxyRows(data) {
    const tb = document.querySelector("#proxies tbody");
    const out = [];
    for (const r of data.rows) {
      out.push(el("tr", { class: "row-" + r.state },
        el("th", { scope: "row" }, el("a", { href: "/proxy?id=" + encodeURIComponent(r.connection) }, r.id)),
        el("td", null, r.kind), el("td", null, r.namespace), el("td", null, r.identity),
        el("td", null, el("time", { datetime: r.connectedAt }, clock(r.connectedAt))), el("td", null, r.replica),
        ...r.types.map((t) => el("td", null, el("span", { class: "state " + t.state }, t.state), t.version ? " " : null, t.version ? el("code", null, short(t.version)) : null))));
      for (const t of r.types) {
        if (!t.error) continue;
        out.push(el("tr", { class: "nack" }, el("td", { colspan: "11" }, el("strong", null, t.type + " NACKED"), " version ",
          el("code", null, short(t.nacked)), ": ", el("span", { class: "error" }, t.error))));
      }
    }
    if (!out.length) out.push(el("tr", null, el("td", { colspan: "11" }, "No proxy matches.")));
    tb.replaceChildren(...out);
    const states = Object.keys(data.byState).sort().map((s) => " " + s + ": " + data.byState[s] + ".").join("");
    document.querySelector("[data-summary]").textContent = data.matched + " of " + data.total + " proxies match" +
      (data.pages > 1 ? "; page " + data.page + " of " + data.pages : "") + "." + states;
    const pager = document.querySelector("[data-pager]");
    const link = (p, rel, text) => { const u = new URL(location.href); u.searchParams.set("page", p); return el("a", { rel, href: u.pathname + u.search }, text); };
    pager.replaceChildren(...[data.page > 1 ? link(data.page - 1, "prev", "Previous") : null, " ", data.page < data.pages ? link(data.page + 1, "next", "Next") : null].filter((x) => x != null));
  }

  function list(items, f) {
    const ul = el("ul");
    if (!items || !items.length) ul.append(el("li", null, "none"));
    else for (const i of items) ul.append(f(i));
    return ul;
  }
  function serviceRows(data) {
    const tb = document.querySelector("#services tbody");
    const out = data.rows.map((s) => el("tr", null,
      el("th", { scope: "row" }, s.host),
      el("td", null, (s.ports || []).join(", ")),
      el("td", null, (s.addresses || []).join(", ")),
      el("td", null, s.resolution + ", " + s.location),
      el("td", null, list(s.endpoints, (e) => el("li", null, el("code", null, e.address), ":" + e.ports + " ",
        el("span", { class: "health " + e.health }, e.health), e.locality ? " " + e.locality : null, " ", el("span", { class: "muted" }, "from " + e.source)))),
      el("td", null, list(s.policies, (p) => el("li", null, p))),
      el("td", null, list(s.sources, (p) => el("li", null, p)))));
    if (!out.length) out.push(el("tr", null, el("td", { colspan: "7" }, "No service matches.")));
    tb.replaceChildren(...out);
  }

  const renderers = { proxies: proxyRows, services: serviceRows };
  // Each refresh fetches with the URL's current query; an answer that a
  // newer request overtook (the filter changed meanwhile) is dropped.
  let latest = 0;
  async function refresh() {
    if (!apiEl) return;
    const seq = ++latest;
    try {
      const resp = await fetch(apiEl.dataset.api + location.search, { headers: { Accept: "application/json" } });
      if (!resp.ok) throw new Error(resp.status + " " + resp.statusText);
      const data = await resp.json();
      if (seq !== latest) return;
      if (renderers[view]) renderers[view](data);
      fill(data);
      document.body.dataset.refreshed = String(Number(document.body.dataset.refreshed || 0) + 1);
      live.textContent = "Live: updated " + new Date().toLocaleTimeString();
    } catch (e) {
      if (seq === latest) live.textContent = "Live refresh failed: " + e.message;
    }
  }

  // Filter as you type: keep the query in the URL, refresh at once.
  const form = document.querySelector("form.filter");
  if (form && apiEl) {
    let timer;
    const apply = () => {
      const u = new URL(location.href);
      for (const [k, v] of new FormData(form)) { if (v) u.searchParams.set(k, v); else u.searchParams.delete(k); }
      u.searchParams.delete("page");
      history.replaceState(null, "", u.pathname + u.search);
      refresh();
    };
    form.addEventListener("submit", (e) => { e.preventDefault(); apply(); });
    form.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(apply, 150); });
    form.addEventListener("change", apply);
  }

  // Keys: o p s x switch views, / focuses the filter, j and k move between rows.
  document.addEventListener("keydown", (e) => {
    const t = e.target;
    if (e.ctrlKey || e.metaKey || e.altKey || (t && (t.tagName === "INPUT" || t.tagName === "SELECT" || t.tagName === "TEXTAREA"))) return;
    if (e.key === "/") {
      const q = document.getElementById("q");
      if (q) { e.preventDefault(); q.focus(); }
      return;
    }
    if (e.key === "j" || e.key === "k") {
      const rows = [...document.querySelectorAll("main tbody tr > th:first-child")].map((th) => th.querySelector("a") || th);
      if (!rows.length) return;
      rows.forEach((r) => { if (r.tagName === "TH") r.tabIndex = -1; });
      let i = rows.indexOf(document.activeElement);
      i = e.key === "j" ? Math.min(i + 1, rows.length - 1) : Math.max(i - 1, 0);
      rows[i].focus();
      e.preventDefault();
      return;
    }
    const a = document.querySelector('nav a[data-key="' + e.key + '"]');
    if (a) location.href = a.href;
  });

  if (apiEl) setInterval(refresh, every);
})();
