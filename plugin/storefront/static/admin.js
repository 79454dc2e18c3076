// The admin page: asks for the admin token (kept in this tab only) and shows /storefront/api/admin/overview.
"use strict";

function $(id) { return document.getElementById(id); }
function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (k === "class") node.className = v; else if (k === "text") node.textContent = v; else node.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}
function row(...cells) { return el("tr", {}, ...cells.map((c) => el("td", {text: c === undefined || c === null ? "" : String(c)}))); }
function figures(obj) {
  return Object.entries(obj || {}).map(([k, v]) => `${k}=${typeof v === "number" ? v.toFixed(4) : JSON.stringify(v)}`).join(", ");
}

function bars(box, values, label, kind) {
  const top = Math.max(1e-9, ...values.map((v) => v.value));
  box.replaceChildren(...values.map((v) => el("div", {class: `bar ${kind ? kind(v) : ""}`, title: label(v),
    style: `height:${Math.max(2, 130 * v.value / top)}px`}, el("span", {text: String(v.short)}))));
}

async function load(token) {
  const r = await fetch("/storefront/api/admin/overview", {headers: {Authorization: `Bearer ${token}`}});
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.message || `${r.status}`);
  return body;
}

function show(data) {
  $("overview").hidden = false;
  const cats = Object.entries(data.status.catalogues || {});
  $("catalogues").querySelector("tbody").replaceChildren(...cats.map(([name, c]) => row(name, c.live, c.model_version || c.model,
    c.docs, (c.versions || []).map((v) => `${v.index}${v.live ? " (live)" : ""}: ${v.rollout && v.rollout.step ? v.rollout.step : "built"}`).join("; "))));
  const evals = data.evaluations || [];
  $("evaluations").querySelector("tbody").replaceChildren(...(evals.length ? evals.map((m) => row(m.version, m.status,
    m.decision || "", figures(m.numbers))) : [row("no fine-tuned model yet", "", "", "")]));
  const plotted = evals.flatMap((m) => Object.entries(m.numbers || {})
    .filter(([k, v]) => typeof v === "number" && /ndcg|recall|mrr|hit/i.test(k)).map(([k, v]) => ({version: m.version, name: k, value: v})));
  const top = Math.max(1e-9, ...plotted.map((p) => p.value));
  $("evaluation-plot").replaceChildren(...(plotted.length ? plotted.map((p) => el("div", {class: "hbar"},
    el("span", {class: "label", text: `${p.version} ${p.name}`}),
    el("span", {class: "fill", style: `width:${Math.round(360 * p.value / top)}px`}),
    el("span", {class: "value", text: p.value.toFixed(4)}))) : [el("p", {class: "legend", text: "No evaluation figures yet."})]));
  $("hours").textContent = data.hours;
  const events = data.events_per_hour || [];
  bars($("events-plot"), events.map((e) => ({value: e.count, short: e.count, hour: e.hour, action: e.action})),
       (v) => `${v.hour} ${v.action}: ${v.value}`, (v) => v.action);
  $("events").querySelector("tbody").replaceChildren(...events.map((e) => row(e.hour, e.action, e.count)));
}

async function start() {
  const saved = sessionStorage.getItem("shopsearch.admin");
  $("login").addEventListener("submit", async (e) => {
    e.preventDefault();
    const token = $("token").value.trim();
    try {
      show(await load(token));
      sessionStorage.setItem("shopsearch.admin", token);
      $("login-status").textContent = "";
    } catch (err) {
      $("overview").hidden = true;
      $("login-status").textContent = `Refused: ${err.message}`;
    }
  });
  if (saved) {
    try { show(await load(saved)); } catch (err) { sessionStorage.removeItem("shopsearch.admin"); }
  }
  document.body.dataset.ready = "true";
}
start();
