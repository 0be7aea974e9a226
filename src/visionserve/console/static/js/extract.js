// extract: edit a pattern (instructions, schema), ingest a file, show each field's box and confidence.
import { api, chrome, el, poll, say } from "./common.js";
import { box, openDocument } from "./pages.js";

chrome("extract.html", { onKey: () => loadPatterns($("pattern").value) });

const $ = (id) => document.getElementById(id);
const API = "/extract/api";
const LOW = 0.6; // under this a field is marked low confidence
// The engine reads PDF pages rendered at 150 DPI: field boxes are in those pixels.
const PDF_DPI = 150;
let fileShown = null;

async function loadPatterns(selected = "") {
  try {
    const { data } = await api(`${API}/patterns?limit=100`);
    $("pattern").replaceChildren(
      el("option", { value: "" }, "New pattern"),
      ...data.patterns.map((p) => el("option", { value: p.pattern_id, selected: p.pattern_id === selected }, `${p.name} (${p.status})`)),
    );
  } catch (err) {
    say($("pattern-status"), err.message, "error");
  }
}

async function choosePattern() {
  const id = $("pattern").value;
  if (!id) return;
  try {
    const { data } = await api(`${API}/patterns/${id}`);
    $("name").value = data.name;
    $("format").value = data.output_format;
    $("instructions").value = data.instructions;
    $("schema").value = JSON.stringify(data.schema, null, 2);
    const s = data.statistics;
    say($("pattern-status"), `${data.pattern_id}: ${data.status}, engine ${data.engine}; ${s.total_requests} request(s), ${s.success_rate} % succeeded`);
  } catch (err) {
    say($("pattern-status"), err.message, "error");
  }
}

async function save() {
  const status = $("pattern-status");
  let schema;
  try {
    schema = JSON.parse($("schema").value);
  } catch (err) {
    say(status, `The schema is not valid JSON: ${err.message}`, "error");
    $("schema").focus();
    return;
  }
  const body = {
    name: $("name").value.trim(),
    output_format: $("format").value,
    instructions: $("instructions").value,
    schema,
  };
  const id = $("pattern").value;
  try {
    const { data } = id
      ? await api(`${API}/patterns/${id}`, { method: "PATCH", json: body })
      : await api(`${API}/patterns`, { method: "POST", json: body });
    await loadPatterns(data.pattern_id);
    say(status, `Saved ${data.pattern_id}`, "ok");
  } catch (err) {
    say(status, err.message, "error");
  }
}

async function run() {
  const status = $("run-status");
  const file = $("file").files[0];
  let id = $("pattern").value;
  if (!file) {
    say(status, "Choose an image or a PDF", "error");
    return;
  }
  $("run").disabled = true;
  delete $("result").dataset.job;
  try {
    if (!id) {
      await save();
      id = $("pattern").value;
      if (!id) return;
    }
    fileShown = { bytes: new Uint8Array(await file.arrayBuffer()), mime: file.type };
    const form = new FormData();
    form.append("file", file, file.name);
    say(status, "Extracting…", "busy");
    let { data: job } = await api(`${API}/patterns/${id}/ingest`, { method: "POST", form });
    if (!["completed", "failed"].includes(job.status)) {
      job = await poll(
        async () => (await api(`${API}/jobs/${job.job_id}`)).data,
        (j) => ["completed", "failed"].includes(j.status),
        (j) => say(status, `Job ${j.job_id}: ${j.status}${j.progress != null ? ` (${j.progress} %)` : ""}`, "busy"),
      );
    }
    if (job.status === "failed") {
      say(status, `Job ${job.job_id} failed: ${job.error?.message || job.message || ""}`, "error");
      return;
    }
    say(status, `Job ${job.job_id}: confidence ${Math.round(job.confidence * 100)} %, ${job.processing_time_ms} ms, engine ${job.engine}`, "ok");
    await show(job);
    $("result").dataset.job = job.job_id; // drawn
  } catch (err) {
    say(status, err.message, "error");
  } finally {
    $("run").disabled = false;
  }
}

/** The leaves of field_metadata (with the result's value at the same path). */
function leaves(meta, value, path = []) {
  if (meta && typeof meta === "object" && !Array.isArray(meta) && "confidence" in meta && "bbox" in meta) {
    return [{ path: path.join("."), value, ...meta }];
  }
  if (Array.isArray(meta)) return meta.flatMap((m, i) => leaves(m, value?.[i], [...path, `[${i}]`]));
  if (meta && typeof meta === "object") {
    return Object.entries(meta).flatMap(([k, m]) => leaves(m, value?.[k], [...path, k]));
  }
  return [];
}

async function show(job) {
  const result = typeof job.result === "string" ? null : job.result;
  const fields = leaves(job.field_metadata || {}, result).map((f) => ({ ...f, path: f.path.replaceAll(".[", "[") }));
  $("raw").textContent = typeof job.result === "string" ? job.result : JSON.stringify(job.result, null, 2);
  $("fields").tBodies[0].replaceChildren(...fields.map(fieldRow));
  $("result").hidden = false;
  const doc = await openDocument(fileShown.bytes, fileShown.mime);
  const width = Math.min(900, Math.max(320, $("pages").clientWidth || 640) - 4);
  const pages = [];
  for (let n = 1; n <= doc.pageCount; n++) {
    const page = await doc.render(n, width);
    // The page's size in the pixels of the field boxes.
    const [w, h] = doc.kind === "pdf" ? [page.pointsWidth, page.pointsHeight].map((v) => (v * PDF_DPI) / 72) : [page.naturalWidth, page.naturalHeight];
    for (const f of fields.filter((x) => x.bbox && (x.page || 1) === n)) {
      const [x0, y0, x1, y1] = f.bbox;
      const low = f.confidence < LOW;
      page.wrap.append(
        box(
          { left: x0 / w, top: y0 / h, width: (x1 - x0) / w, height: (y1 - y0) / h },
          {
            cls: `field${low ? " low" : ""}`,
            tag: `${f.path} ${Math.round(f.confidence * 100)} %`,
            title: `${f.path}: ${f.source_text ?? ""}`,
            data: { field: f.path },
          },
        ),
      );
    }
    pages.push(el("h3", {}, `Page ${n}`), page.wrap);
  }
  $("pages").replaceChildren(...pages);
}

function fieldRow(f) {
  const missing = f.value === null || f.value === undefined;
  const low = !missing && f.confidence < LOW;
  const pct = Math.round((f.confidence || 0) * 100);
  const highlight = (on) => {
    for (const b of document.querySelectorAll(`.box[data-field="${CSS.escape(f.path)}"]`)) b.classList.toggle("hl", on);
  };
  return el(
    "tr",
    {
      class: missing ? "missing" : low ? "low" : "",
      "data-field": f.path,
      tabindex: "0",
      onmouseenter: () => highlight(true),
      onmouseleave: () => highlight(false),
      onfocus: () => highlight(true),
      onblur: () => highlight(false),
    },
    el("th", { scope: "row" }, f.path),
    el("td", {}, missing ? el("span", { class: "badge bad" }, "missing") : String(f.value)),
    el(
      "td",
      { class: "conf" },
      `${pct} % `,
      low ? el("span", { class: "badge warn" }, "low") : null,
      el("div", { class: "confbar", role: "presentation" }, el("span", { style: { width: `${pct}%` } })),
    ),
    el("td", { class: "num" }, f.page ?? "–"),
  );
}

$("pattern").addEventListener("change", choosePattern);
$("save").addEventListener("click", save);
$("run").addEventListener("click", run);
loadPatterns();
