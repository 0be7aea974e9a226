// Shared by every console page: the header (navigation, API key), API calls, small DOM helpers.
// The console talks to the surfaces' public APIs only, on the origin that served it.

const KEY_STORE = "visionserve.apiKey";
const PAGES = [
  ["cutout.html", "Cutout"],
  ["documents.html", "Documents"],
  ["extract.html", "Extract"],
  ["inspect.html", "Inspect"],
  ["edit.html", "Edit"],
];

/** The API key of this browser tab's session (never localStorage: it ends with the tab). */
export function apiKey() {
  return sessionStorage.getItem(KEY_STORE) || "";
}

/** Build an element: el("button", {class: "x", onclick: f}, "text", child). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") node.addEventListener(name.slice(2), value);
    else if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else if (name === "style" && typeof value === "object") Object.assign(node.style, value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** Show a message in a status region (role=status or alert, set in the page). */
export function say(node, text, kind = "") {
  node.textContent = text;
  node.className = `status ${kind}`;
}

export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

/** The message in any surface's error body: each keeps its own contract's shape. */
function errorMessage(body, status) {
  if (typeof body === "string") return body; // documents (chunkr): a bare string
  if (body && typeof body === "object") {
    if (body.error && typeof body.error === "object" && body.error.message) return body.error.message; // cutout, extract
    if (typeof body.detail === "string") return body.detail; // inspect, edit, platform
    if (Array.isArray(body.detail)) {
      return body.detail.map((d) => `${(d.loc || []).slice(1).join(".")}: ${d.msg}`).join("; ");
    }
  }
  return `HTTP ${status}`;
}

/**
 * Call an API route on this origin and return its parsed JSON (or a Blob with {blob: true}).
 * Sends the session's API key as a bearer token when one is set. A 401 opens the key form.
 */
export async function api(path, { method = "GET", json, form, headers = {}, blob = false } = {}) {
  const init = { method, headers: { ...headers } };
  const key = apiKey();
  if (key) init.headers.Authorization = `Bearer ${key}`;
  if (json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  } else if (form !== undefined) {
    init.body = form;
  }
  const response = await fetch(path, init);
  if (!response.ok) {
    const text = await response.text();
    let body = text;
    try {
      body = JSON.parse(text);
    } catch {
      /* not JSON: keep the text */
    }
    const message = errorMessage(body, response.status);
    if (response.status === 401) askForKey(message);
    throw new ApiError(response.status, `${message} (HTTP ${response.status})`, body);
  }
  if (blob) return response.blob();
  if (response.status === 204) return null;
  const type = response.headers.get("content-type") || "";
  return type.includes("json") ? response.json() : response.text();
}

/** Read a File as base64 (without the data: prefix). */
export function fileToBase64(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result).split(",", 2)[1]);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Poll ``fetch`` until ``done(value)``; ``each(value)`` sees every answer. */
export async function poll(fetchOnce, done, each = () => {}, intervalMs = 700, timeoutMs = 30 * 60 * 1000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await fetchOnce();
    each(value);
    if (done(value)) return value;
    if (Date.now() > deadline) throw new Error("gave up waiting");
    await sleep(intervalMs);
  }
}

export function fmtMs(ms) {
  if (ms === null || ms === undefined) return "–";
  return ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${Math.round(ms)} ms`;
}

export function fmtUsd(usd) {
  return `$${Number(usd || 0).toFixed(usd && usd < 0.01 ? 4 : 2)}`;
}

/** Wire a drop zone (drop, click through its file input, paste anywhere) to ``onFile``. */
export function dropZone(zone, input, onFile) {
  const take = (file) => file && onFile(file);
  input.addEventListener("change", () => take(input.files[0]));
  zone.addEventListener("dragover", (e) => {
    e.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    take(e.dataTransfer.files[0]);
  });
  document.addEventListener("paste", (e) => {
    const item = [...(e.clipboardData?.items || [])].find((i) => i.kind === "file");
    if (item) take(item.getAsFile());
  });
}

let keyInput = null;
let keyNote = null;

function askForKey(message) {
  if (!keyInput) return;
  keyNote.textContent = `${message}: enter an API key`;
  keyInput.focus();
}

/** The page header: navigation with the current page marked, and the API key form.
 * ``onKey`` runs when the key changes (a page reloads what a 401 kept from it). */
export function chrome(current, { onKey = () => {} } = {}) {
  const header = document.querySelector("header.top");
  const nav = el(
    "nav",
    { "aria-label": "Console pages" },
    el(
      "ul",
      {},
      PAGES.map(([file, title]) =>
        el("li", {}, el("a", { href: file, "aria-current": file === current ? "page" : null }, title)),
      ),
    ),
  );
  keyInput = el("input", {
    id: "api-key",
    type: "password",
    autocomplete: "off",
    placeholder: "vs_…",
    value: apiKey(),
  });
  keyNote = el("span", { class: "key-state", role: "status" }, apiKey() ? "key set for this session" : "");
  const form = el(
    "form",
    {
      class: "key",
      onsubmit: (e) => {
        e.preventDefault();
        const value = keyInput.value.trim();
        if (value) sessionStorage.setItem(KEY_STORE, value);
        else sessionStorage.removeItem(KEY_STORE);
        keyNote.textContent = value ? "key set for this session" : "no key";
        onKey();
      },
    },
    el("label", { for: "api-key" }, "API key"),
    keyInput,
    el("button", { type: "submit", class: "secondary" }, "Use key"),
    keyNote,
  );
  header.append(el("a", { class: "brand", href: "./" }, "VisionServe console"), nav, form);
}
