// The shopsearch storefront: plain JavaScript over the proxy's own routes, no library, no build.
// Data is put into the page with textContent only (never as HTML).
"use strict";

const FACETS = [["category", "Category"], ["colour", "Colour"], ["brand", "Brand"], ["gender", "Gender"],
                ["price", "Price"]];
const state = {
  catalogue: null, pageSize: 24, maxDepth: 1000, user: null, visitor: null, shoppers: [],
  q: "", page: 0, filters: {}, last: null, photo: null, item: null, from: null,
};

function $(id) { return document.getElementById(id); }

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== null && v !== undefined) node.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

async function getJSON(url, options) {
  const r = await fetch(url, options);
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.message || `${r.status} ${r.statusText}`);
  return body;
}

function api(path) { return `/storefront/api/${encodeURIComponent(state.catalogue)}${path}`; }
function price(p) { return p === null || p === undefined ? "" : `₹ ${Number(p).toLocaleString("en-IN")}`; }
function imageOf(catalogue, hit) {
  if (hit.image_url !== undefined) return hit.image_url;
  return hit.image ? `/storefront/images/${encodeURIComponent(catalogue)}/${encodeURIComponent(hit.id)}` : null;
}

// --- shopper -------------------------------------------------------------------------------------

function visitorId() {
  let id = localStorage.getItem("shopsearch.visitor");
  if (!id) {
    const bytes = new Uint8Array(8);
    crypto.getRandomValues(bytes);
    id = "visitor-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
    localStorage.setItem("shopsearch.visitor", id);
  }
  return id;
}

function renderShoppers() {
  const select = $("shopper");
  select.replaceChildren(el("option", {value: state.visitor, text: "You (new visitor)"}),
    ...state.shoppers.map((s) => el("option", {value: s.id, text: s.name})));
  select.value = state.user;
  const chosen = state.shoppers.find((s) => s.id === state.user);
  $("shopper-about").textContent = chosen ? `Shopping as ${chosen.name}: ${chosen.about}` : "";
}

// --- search --------------------------------------------------------------------------------------

function searchParams(page) {
  const p = new URLSearchParams({q: state.q, size: state.pageSize, page: page});
  if (state.user) p.set("user", state.user);
  for (const [k, v] of Object.entries(state.filters)) p.set(k, v);
  return p;
}

async function search(page = 0) {
  state.photo = null;
  state.page = page;
  if (!state.q) return;
  $("status").textContent = "Searching …";
  try {
    const res = await getJSON(api(`/search?${searchParams(page)}`));
    state.last = res;
    renderResults(res);
  } catch (e) {
    showError(e);
  }
  writeLocation();
}

async function searchByPhoto(file) {
  const form = new FormData();
  form.append("image", file);
  form.append("q", $("q").value.trim());
  if (state.user) form.append("user", state.user);
  for (const [k, v] of Object.entries(state.filters)) form.append(k, v);
  state.photo = file;
  $("status").textContent = "Looking for products like your photo …";
  showView("results");
  try {
    const res = await getJSON(api("/photo"), {method: "POST", body: form});
    state.last = res;
    renderResults(res);
  } catch (e) {
    showError(e);
  }
}

function showError(e) {
  $("grid").replaceChildren();
  $("pager").replaceChildren();
  $("status").textContent = `Sorry, the search failed: ${e.message}`;
}

function renderResults(res) {
  showView("results");
  const words = res.q ? `“${res.q}”` : "";
  const photo = res.strategy === "photo";
  $("photo-query").hidden = !photo;
  if (photo && state.photo) {
    $("photo-thumb").src = URL.createObjectURL(state.photo);
    $("photo-query").querySelector("span").textContent = words ? `Your photo and ${words}` : "Products like your photo";
  }
  $("status").textContent = res.total
    ? `${res.total} results${words ? " for " + words : ""}` + (photo ? " (search by photo)" : "")
    : `No results${words ? " for " + words : ""}.`;
  const notice = $("notice");
  notice.hidden = !res.did_you_mean;
  if (res.did_you_mean) {
    notice.replaceChildren("Did you mean ", el("b", {text: res.did_you_mean}), "? Showing its results (you typed ",
      el("i", {text: res.q}), ").");
  }
  const degraded = $("degraded");
  degraded.hidden = !res.degraded;
  degraded.textContent = res.degraded
    ? `Degraded: ${res.reason || "vector search unavailable"}. These are keyword (BM25) results only.` : "";
  const first = res.page * res.size;
  $("grid").replaceChildren(...res.hits.map((hit, i) => card(hit, first + i + 1, res)));
  renderFacets(res);
  renderPager(res);
}

function card(hit, position, res) {
  const src = imageOf(state.catalogue, hit);
  const node = el("div", {class: "card", tabindex: "0", role: "link", "data-id": hit.id, "data-position": position},
    src ? el("img", {src: src, alt: hit.title || "", loading: "lazy"}) : el("div", {class: "noimg", text: "no picture"}),
    el("div", {class: "title", text: hit.title || hit.id}),
    hit.price !== undefined && hit.price !== null ? el("div", {class: "price", text: price(hit.price)}) : null,
    el("div", {class: "meta", text: [hit.category, hit.colour].filter(Boolean).join(" · ")}));
  const open = () => openResult(hit, position, res);
  node.addEventListener("click", open);
  node.addEventListener("keydown", (e) => { if (e.key === "Enter") open(); });
  return node;
}

function renderFacets(res) {
  const box = $("facets");
  box.replaceChildren();
  const facets = res.facets || {};
  for (const [name, label] of FACETS) {
    const buckets = facets[name] || [];
    if (!buckets.length || (name !== "price" && state.filters[name])) continue;
    if (name === "price" && (state.filters.price_min || state.filters.price_max)) continue;
    box.append(el("h3", {text: label}), el("ul", {"data-facet": name}, ...buckets.map((b) => el("li", {},
      el("button", {type: "button", "data-value": b.value, onclick: () => chooseFacet(name, b)},
        el("span", {text: b.value}), el("span", {class: "count", text: String(b.count)}))))));
  }
  if (res.facets_over && res.total > res.facets_over) {
    box.append(el("p", {class: "meta", text: `Counts over the best ${res.facets_over} results.`}));
  }
  const chosen = $("chosen");
  chosen.replaceChildren(...Object.entries(state.filters).map(([k, v]) => el("button", {
    type: "button", "data-filter": k, title: "remove this filter", text: `${k.replace("_", " ")}: ${v} ✕`,
    onclick: () => { delete state.filters[k]; rerun(); }})));
}

function chooseFacet(name, bucket) {
  if (name === "price") {
    if (bucket.from !== undefined) state.filters.price_min = bucket.from;
    if (bucket.to !== undefined) state.filters.price_max = bucket.to;
  } else {
    state.filters[name] = bucket.value;
  }
  rerun();
}

function rerun() {
  if (state.photo) searchByPhoto(state.photo); else search(0);
}

function renderPager(res) {
  const pager = $("pager");
  pager.replaceChildren();
  if (res.strategy === "photo") return;
  const pages = Math.min(Math.ceil(res.total / res.size), Math.floor(state.maxDepth / res.size));
  if (pages <= 1) return;
  const go = (n) => () => { search(n); window.scrollTo(0, 0); };
  if (res.page > 0) pager.append(el("button", {type: "button", "data-page": res.page - 1, text: "‹ previous", onclick: go(res.page - 1)}));
  const from = Math.max(0, res.page - 4), to = Math.min(pages, from + 9);
  for (let n = from; n < to; n++) {
    pager.append(el("button", {type: "button", "data-page": n, text: String(n + 1), onclick: go(n),
                               "aria-current": n === res.page ? "page" : null}));
  }
  if (res.page + 1 < pages) pager.append(el("button", {type: "button", "data-page": res.page + 1, text: "next ›", onclick: go(res.page + 1)}));
}

// --- events (UBI) --------------------------------------------------------------------------------

async function logEvent(action, objectId, res, position) {
  if (!res || !res.event_token) return null;
  const event = {query_id: res.query_id, user_id: state.user, action_name: action, object_id: String(objectId),
                 timestamp: new Date().toISOString(), catalogue: state.catalogue};
  if (position) event.position = position;
  const r = await fetch("/events", {method: "POST", keepalive: true,
    headers: {"Content-Type": "application/json", "X-Event-Token": res.event_token},
    body: JSON.stringify({events: [event]})});
  return r.ok;
}

function openResult(hit, position, res) {
  logEvent("click", hit.id, res, position);
  state.from = {res: res, position: position};
  location.hash = `item/${encodeURIComponent(hit.id)}`;
}

// --- product page --------------------------------------------------------------------------------

async function showProduct(id) {
  showView("product");
  $("cart-status").textContent = "";
  try {
    const item = await getJSON(api(`/items/${encodeURIComponent(id)}`));
    state.item = item;
    const src = imageOf(state.catalogue, item);
    $("product-image").src = src || "";
    $("product-image").alt = item.title || "";
    $("product-image").hidden = !src;
    $("product-title").textContent = item.title || item.id;
    $("product-price").textContent = price(item.price);
    const facts = [["Brand", item.brand], ["Category", Array.isArray(item.category_path) && item.category_path.length
                     ? item.category_path[item.category_path.length - 1] : item.category],
                   ["Colour", item.colour], ["Gender", item.gender], ["Material", item.material],
                   ["Rating", item.rating]].filter(([, v]) => v !== undefined && v !== null && v !== "");
    $("product-facts").replaceChildren(...facts.flatMap(([k, v]) => [el("dt", {text: k}), el("dd", {text: String(v)})]));
  } catch (e) {
    $("product-title").textContent = `This product could not be shown: ${e.message}`;
  }
  const shop = `/shop/${encodeURIComponent(state.catalogue)}/recommend`;
  for (const [box, path] of [["similar", `${shop}/similar/${encodeURIComponent(id)}?size=8`],
                             ["also-bought", `${shop}/also-bought/${encodeURIComponent(id)}?size=8`]]) {
    getJSON(path).then((rec) => {
      $(box).replaceChildren(...(rec.hits.length ? rec.hits.map(recCard)
        : [el("p", {class: "meta", text: box === "similar" ? "Nothing similar found." : "Nobody has bought this with anything else yet."})]));
    }).catch((e) => $(box).replaceChildren(el("p", {class: "meta", text: e.message})));
  }
}

function recCard(hit) {
  const src = imageOf(state.catalogue, hit);
  const node = el("div", {class: "card", tabindex: "0", role: "link", "data-id": hit.id},
    src ? el("img", {src: src, alt: hit.title || "", loading: "lazy"}) : el("div", {class: "noimg", text: "no picture"}),
    el("div", {class: "title", text: hit.title || hit.id}),
    hit.price !== undefined && hit.price !== null ? el("div", {class: "price", text: price(hit.price)}) : null,
    el("div", {class: "meta", text: [hit.category, hit.colour].filter(Boolean).join(" · ")}));
  const open = () => { state.from = null; location.hash = `item/${encodeURIComponent(hit.id)}`; };
  node.addEventListener("click", open);
  node.addEventListener("keydown", (e) => { if (e.key === "Enter") open(); });
  return node;
}

async function addToCart() {
  if (!state.item) return;
  const from = state.from;
  const res = from ? from.res : state.last;
  const ok = await logEvent("add_to_cart", state.item.id, res, from ? from.position : null);
  $("cart-status").textContent = ok ? "Added to your cart." : "Added to your cart (not logged: search first).";
}

// --- suggestions ---------------------------------------------------------------------------------

let suggestTimer = null, suggestSeq = 0;

function suggestionItems() { return Array.from($("suggestions").querySelectorAll("li")); }

function closeSuggestions() {
  $("suggestions").hidden = true;
  $("q").setAttribute("aria-expanded", "false");
  $("q").removeAttribute("aria-activedescendant");
}

async function suggest(text) {
  const seq = ++suggestSeq;
  if (text.trim().length < 1) { closeSuggestions(); return; }
  try {
    const res = await getJSON(api(`/suggest?${new URLSearchParams({q: text, size: 8})}`));
    if (seq !== suggestSeq) return;  // a later keystroke already asked
    const list = $("suggestions");
    list.replaceChildren(...res.suggestions.map((s, i) => el("li", {role: "option", id: `suggestion-${i}`,
      "data-kind": s.kind, "data-text": s.text, onmousedown: (e) => { e.preventDefault(); pick(s.text); }},
      el("span", {text: s.text}), el("small", {text: s.kind === "query" ? "searched" : "product"}))));
    list.hidden = res.suggestions.length === 0;
    $("q").setAttribute("aria-expanded", String(!list.hidden));
  } catch (e) {
    closeSuggestions();
  }
}

function moveActive(step) {
  const items = suggestionItems();
  if ($("suggestions").hidden || !items.length) return false;
  const now = items.findIndex((li) => li.classList.contains("active"));
  const next = now < 0 ? (step > 0 ? 0 : items.length - 1) : (now + step + items.length) % items.length;
  items.forEach((li, i) => {
    li.classList.toggle("active", i === next);
    li.setAttribute("aria-selected", String(i === next));
  });
  $("q").setAttribute("aria-activedescendant", items[next].id);
  return true;
}

function pick(text) {
  $("q").value = text;
  closeSuggestions();
  submit();
}

function submit() {
  clearTimeout(suggestTimer);
  suggestSeq++;  // a suggestion list still on its way must not open over the results
  closeSuggestions();
  state.q = $("q").value.trim();
  state.filters = {};
  if (location.hash) history.replaceState(null, "", location.pathname + location.search);
  search(0);
}

// --- views and the address -----------------------------------------------------------------------

function showView(which) {
  $("results-view").hidden = which !== "results";
  $("product-view").hidden = which !== "product";
}

function writeLocation() {
  const p = new URLSearchParams(location.search);
  p.set("catalogue", state.catalogue);
  if (state.q) p.set("q", state.q); else p.delete("q");
  if (state.page) p.set("page", state.page); else p.delete("page");
  history.replaceState(null, "", `${location.pathname}?${p}${location.hash}`);
}

function route() {
  const m = location.hash.match(/^#item\/(.+)$/);
  if (m) showProduct(decodeURIComponent(m[1]));
  else showView("results");
}

async function start() {
  const config = await getJSON("/storefront/api/config");
  const params = new URLSearchParams(location.search);
  state.catalogue = params.get("catalogue") || config.catalogue;
  state.pageSize = config.page_size;
  state.maxDepth = config.max_result_depth;
  state.visitor = visitorId();
  state.user = sessionStorage.getItem("shopsearch.shopper") || state.visitor;
  $("catalogue-name").textContent = state.catalogue;
  const showcase = await getJSON(api("/showcase")).catch(() => ({queries: [], shoppers: []}));
  state.shoppers = showcase.shoppers;
  if (state.user !== state.visitor && !state.shoppers.some((s) => s.id === state.user)) state.user = state.visitor;
  renderShoppers();
  if (showcase.queries.length) {
    $("suggested").replaceChildren(el("span", {text: "Try:"}), ...showcase.queries.map((q) => el("button", {
      type: "button", text: q, onclick: () => { $("q").value = q; submit(); }})));
  }
  const q = $("q");
  q.addEventListener("input", () => { clearTimeout(suggestTimer); suggestTimer = setTimeout(() => suggest(q.value), 120); });
  q.addEventListener("keydown", (e) => {
    if (e.key === "ArrowDown" || e.key === "ArrowUp") {
      if (moveActive(e.key === "ArrowDown" ? 1 : -1)) e.preventDefault();
    } else if (e.key === "Escape") {
      if (!$("suggestions").hidden) e.preventDefault();  // close the list, keep the words
      closeSuggestions();
    } else if (e.key === "Enter") {
      const active = suggestionItems().find((li) => li.classList.contains("active"));
      if (active && !$("suggestions").hidden) { e.preventDefault(); pick(active.dataset.text); }
    }
  });
  q.addEventListener("blur", () => setTimeout(closeSuggestions, 100));
  $("search-form").addEventListener("submit", (e) => { e.preventDefault(); closeSuggestions(); submit(); });
  $("photo").addEventListener("change", (e) => { if (e.target.files[0]) { state.filters = {}; searchByPhoto(e.target.files[0]); } });
  $("shopper").addEventListener("change", (e) => {
    state.user = e.target.value;
    sessionStorage.setItem("shopsearch.shopper", state.user);
    renderShoppers();
    if (state.q || state.photo) rerun();
  });
  $("add-to-cart").addEventListener("click", addToCart);
  $("back").addEventListener("click", (e) => { e.preventDefault(); history.back(); });
  window.addEventListener("hashchange", route);
  if (params.get("q")) {
    q.value = params.get("q");
    state.q = q.value.trim();
    await search(Number(params.get("page") || 0));
  }
  route();
  document.body.dataset.ready = "true";
}

start().catch((e) => { $("status").textContent = `The storefront could not start: ${e.message}`; });
