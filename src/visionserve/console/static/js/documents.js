// documents: parse a file (chunkr task API), follow the task, draw segments by type over each page.
import { api, chrome, el, fileToBase64, poll, say } from "./common.js";
import { box, fetchBytes, openDocument } from "./pages.js";

chrome("documents.html");

const $ = (id) => document.getElementById(id);
const status = $("status");
const API = "/documents/api/v1";
// One colour per segment type, each dark enough for white tag text (4.5:1 or more).
const COLOURS = {
  Title: "#8b1a1a",
  SectionHeader: "#a3400b",
  Text: "#0b5cad",
  ListItem: "#5b3a9e",
  Table: "#1d6b2f",
  Picture: "#8a2c78",
  Caption: "#4a5360",
  Formula: "#00666e",
  Footnote: "#6b5200",
  PageHeader: "#374151",
  PageFooter: "#374151",
  Page: "#1b1f24",
};
const FINAL = ["Succeeded", "Failed", "Cancelled"];
let document_ = null; // {bytes, mime} of the file shown

async function parse() {
  const file = $("file").files[0];
  if (!file) {
    say(status, "Choose a PDF or an image first", "error");
    $("file").focus();
    return;
  }
  $("parse").disabled = true;
  try {
    const bytes = new Uint8Array(await file.arrayBuffer());
    document_ = { bytes, mime: file.type };
    const task = await api(`${API}/task/parse`, {
      method: "POST",
      json: {
        file: await fileToBase64(file),
        file_name: file.name,
        ocr_strategy: $("ocr").value,
        segmentation_strategy: $("segmentation").value,
      },
    });
    $("task-id").value = task.task_id;
    await follow(task.task_id);
  } catch (err) {
    say(status, err.message, "error");
  } finally {
    $("parse").disabled = false;
  }
}

async function openTask() {
  const id = $("task-id").value.trim();
  if (!id) return;
  document_ = null;
  try {
    await follow(id);
  } catch (err) {
    say(status, err.message, "error");
  }
}

async function follow(taskId) {
  delete $("result").dataset.task;
  const show = (t) => say(status, `Task ${t.task_id}: ${t.status}. ${t.message || ""}`, t.status === "Failed" ? "error" : "busy");
  const task = await poll(
    () => api(`${API}/task/${taskId}?include_chunks=false`),
    (t) => FINAL.includes(t.status),
    show,
  );
  if (task.status !== "Succeeded") {
    say(status, `Task ${task.task_id}: ${task.status}. ${task.message || ""}`, "error");
    return;
  }
  // The whole output once finished; base64_urls inlines the file when this page did not upload it.
  const full = await api(`${API}/task/${taskId}?base64_urls=${document_ ? "false" : "true"}`);
  if (!document_) {
    const url = full.output.pdf_url || full.configuration.input_file_url;
    document_ = await fetchBytes(url);
  }
  await show_(full);
  $("result").dataset.task = full.task_id; // drawn
  say(status, `Task ${full.task_id}: ${full.status}, ${full.output.page_count} page(s), ${full.output.chunks.length} chunk(s). ${full.message || ""}`, "ok");
}

async function show_(task) {
  const chunks = task.output.chunks;
  const segments = chunks.flatMap((c, ci) => c.segments.map((s) => ({ ...s, chunk: ci })));
  const types = [...new Set(segments.map((s) => s.segment_type))];
  $("legend").replaceChildren(
    ...types.map((t) => el("li", {}, el("span", { class: "sw", style: { borderColor: COLOURS[t] || "#1b1f24" } }), t)),
  );
  const doc = await openDocument(document_.bytes, document_.mime);
  $("result").hidden = false;
  const width = Math.min(900, Math.max(320, $("pages").clientWidth || 640) - 4);
  const pages = [];
  for (let n = 1; n <= doc.pageCount; n++) {
    const page = await doc.render(n, width);
    for (const seg of segments.filter((s) => s.page_number === n)) {
      // Segment boxes are in the rendered page's pixels; page_width/height say its size.
      const sx = 1 / seg.page_width;
      const sy = 1 / seg.page_height;
      page.wrap.append(
        box(
          { left: seg.bbox.left * sx, top: seg.bbox.top * sy, width: seg.bbox.width * sx, height: seg.bbox.height * sy },
          {
            cls: "seg-box",
            colour: COLOURS[seg.segment_type] || "#1b1f24",
            tag: seg.segment_type,
            title: `${seg.segment_type}: ${seg.text.slice(0, 200)}`,
            data: { segment: seg.segment_id, type: seg.segment_type, chunk: seg.chunk },
          },
        ),
      );
    }
    page.wrap.classList.toggle("labels", $("labels").checked);
    pages.push(el("h3", {}, `Page ${n}`), page.wrap);
  }
  $("pages").replaceChildren(...pages);
  $("view-chunks").replaceChildren(...chunks.map(chunkCard));
  const html = chunks.flatMap((c) => c.segments.map((s) => s.html)).join("\n");
  $("html-preview").srcdoc = `<!doctype html><html><head><meta charset="utf-8"><style>body{font-family:sans-serif;margin:1rem}table{border-collapse:collapse}td,th{border:1px solid #999;padding:.2rem .4rem}</style></head><body>${html}</body></html>`;
  $("markdown-preview").textContent = chunks.flatMap((c) => c.segments.map((s) => s.markdown)).join("\n\n");
}

function chunkCard(chunk, index) {
  const highlight = (on) => {
    for (const b of document.querySelectorAll(`.seg-box[data-chunk="${index}"]`)) b.classList.toggle("hl", on);
  };
  return el(
    "article",
    {
      class: "chunk",
      tabindex: "0",
      "aria-label": `Chunk ${index + 1}, ${chunk.chunk_length} tokens`,
      onmouseenter: () => highlight(true),
      onmouseleave: () => highlight(false),
      onfocus: () => highlight(true),
      onblur: () => highlight(false),
    },
    el("h3", {}, `Chunk ${index + 1} `, el("span", { class: "hint" }, `${chunk.chunk_length} tokens, ${chunk.segments.length} segment(s)`)),
    chunk.segments.map((s) =>
      el(
        "div",
        {},
        el("span", { class: "badge", style: { background: COLOURS[s.segment_type] || "#1b1f24", color: "#ffffff" } }, s.segment_type),
        ` page ${s.page_number}`,
        el("pre", {}, s.markdown || s.content || s.text),
      ),
    ),
  );
}

function selectTab(name) {
  for (const t of ["chunks", "html", "markdown"]) {
    const on = t === name;
    $(`tab-${t}`).setAttribute("aria-selected", String(on));
    $(`tab-${t}`).classList.toggle("secondary", !on);
    $(`view-${t}`).hidden = !on;
  }
}

for (const t of ["chunks", "html", "markdown"]) $(`tab-${t}`).addEventListener("click", () => selectTab(t));
$("parse").addEventListener("click", parse);
$("labels").addEventListener("change", () => {
  for (const w of document.querySelectorAll(".page-wrap")) w.classList.toggle("labels", $("labels").checked);
});
$("open").addEventListener("click", openTask);
