// cutout: the shotgun side by side, pick the best (/log-selection), preferences, upscale a result.
import { api, chrome, dropZone, el, fileToBase64, fmtMs, fmtUsd, say } from "./common.js";

chrome("cutout.html");

const $ = (id) => document.getElementById(id);
const status = $("run-status");
let imageB64 = null;
let lastJob = null;

dropZone($("drop"), $("image"), async (file) => {
  if (!file.type.startsWith("image/")) {
    say(status, `${file.name} is not an image`, "error");
    return;
  }
  imageB64 = await fileToBase64(file);
  const preview = $("preview");
  preview.src = `data:${file.type};base64,${imageB64}`;
  preview.alt = `Chosen image: ${file.name}`;
  preview.hidden = false;
  $("run").disabled = false;
  say(status, `${file.name} ready`);
});

async function loadModels() {
  const box = $("models");
  try {
    const { models } = await api("/cutout/models");
    box.replaceChildren(
      el("legend", {}, "Models"),
      ...models.map((m) =>
        el(
          "label",
          {},
          el("input", { type: "checkbox", name: "model", value: m.model_id, checked: true }),
          ` ${m.model_name || m.model_id} `,
          el("code", {}, m.model_id),
        ),
      ),
    );
  } catch (err) {
    box.replaceChildren(el("legend", {}, "Models"), el("span", { class: "status error" }, err.message));
  }
}

function chosenModels() {
  return [...document.querySelectorAll('input[name="model"]:checked')].map((i) => i.value);
}

async function run() {
  const models = chosenModels();
  if (!imageB64 || !models.length) {
    say(status, "Choose an image and at least one model", "error");
    return;
  }
  $("run").disabled = true;
  say(status, `Running ${models.length} model(s)…`, "busy");
  $("results").replaceChildren();
  $("upscaled").replaceChildren();
  try {
    const category = $("category").value.trim() || null;
    const job = await api("/cutout/remove-background", {
      method: "POST",
      json: { image: imageB64, include_models: models, image_category: category },
    });
    lastJob = { ...job, category };
    say(
      status,
      `Done in ${fmtMs(job.processing_time_ms)} (${job.status}), total cost ${fmtUsd(job.total_cost_usd)}. Pick the best result.`,
      "ok",
    );
    $("results").replaceChildren(...job.results.map(resultCard));
  } catch (err) {
    say(status, err.message, "error");
  } finally {
    $("run").disabled = false;
  }
}

function resultCard(r) {
  const name = r.model_name || r.model_id;
  const src = r.image_base64 ? `data:image/png;base64,${r.image_base64}` : r.image_url;
  const ok = r.status === "success";
  const card = el("figure", { class: "result", "data-model": r.model_id });
  const method = el(
    "select",
    { "aria-label": `Upscale method for ${name}` },
    ["lanczos", "waifu2x-cunet", "waifu2x-upconv7"].map((m) => el("option", { value: m }, m)),
  );
  card.append(
    el("div", { class: "img checker" }, ok ? el("img", { src, alt: `Cut-out by ${name}` }) : null),
    el(
      "figcaption",
      {},
      el("strong", {}, name),
      el(
        "span",
        { class: "meta" },
        `${r.model_id} · ${fmtMs(r.processing_time_ms)} · ${fmtUsd(r.cost_usd)}`,
      ),
      ok ? null : el("span", { class: "error" }, r.error || "failed"),
      ok
        ? el(
            "div",
            { class: "actions" },
            el("button", { type: "button", class: "pick", onclick: () => pick(r, card) }, "Best one"),
            method,
            el("button", { type: "button", class: "secondary", onclick: () => upscale(r, 2, method.value) }, "×2"),
            el("button", { type: "button", class: "secondary", onclick: () => upscale(r, 4, method.value) }, "×4"),
          )
        : null,
    ),
  );
  return card;
}

async function pick(r, card) {
  try {
    await api("/cutout/log-selection", {
      method: "POST",
      json: { job_id: lastJob.job_id, selected_model_id: r.model_id, image_category: lastJob.category },
    });
    for (const other of document.querySelectorAll(".result")) {
      other.classList.toggle("selected", other === card);
      const button = other.querySelector("button.pick");
      if (button) button.setAttribute("aria-pressed", String(other === card));
    }
    say(status, `Recorded: ${r.model_name || r.model_id} is the best for "${lastJob.category || "uncategorised"}"`, "ok");
    await loadPreferences();
  } catch (err) {
    say(status, err.message, "error");
  }
}

async function upscale(r, factor, method) {
  const out = $("upscaled");
  const name = r.model_name || r.model_id;
  out.replaceChildren(el("p", { class: "status busy", role: "status" }, `Upscaling ${name} ×${factor} (${method})…`));
  try {
    const image = r.image_base64 || (await blobToBase64(await fetch(r.image_url).then((x) => x.blob())));
    const up = await api("/cutout/upscale", {
      method: "POST",
      json: { image, scale_factor: factor, method, preserve_alpha: true },
    });
    const src = up.image_base64 ? `data:image/png;base64,${up.image_base64}` : up.image_url;
    out.replaceChildren(
      el("h3", {}, `${name} upscaled ×${up.scale_factor}`),
      el(
        "p",
        { class: "meta", role: "status" },
        `${up.input_dimensions.width}×${up.input_dimensions.height} → ${up.output_dimensions.width}×${up.output_dimensions.height}, ` +
          `${up.method}, ${fmtMs(up.processing_time_ms)}, alpha ${up.alpha_preserved ? "kept" : "none"} `,
        el("a", { href: src, download: `${r.model_id}_x${factor}.png` }, "Download"),
      ),
      el("div", { class: "checker", style: { display: "inline-block" } }, el("img", { src, alt: `${name} upscaled`, style: { maxWidth: "100%" } })),
    );
  } catch (err) {
    out.replaceChildren(el("p", { class: "status error", role: "alert" }, err.message));
  }
}

function blobToBase64(blob) {
  return fileToBase64(blob);
}

function prefTable(caption, rows) {
  return el(
    "table",
    {},
    el("caption", {}, caption),
    el("thead", {}, el("tr", {}, ["Model", "Picked", "Offered", "Win rate"].map((h) => el("th", { scope: "col" }, h)))),
    el(
      "tbody",
      {},
      rows.map((m) =>
        el(
          "tr",
          { "data-model": m.model_id },
          el("th", { scope: "row" }, m.model_id),
          el("td", { class: "num" }, m.selections),
          el("td", { class: "num" }, m.offered),
          el("td", { class: "num" }, `${(m.win_rate * 100).toFixed(0)} %`),
        ),
      ),
    ),
  );
}

async function loadPreferences() {
  const box = $("prefs");
  try {
    const prefs = await api("/cutout/preferences");
    const parts = [el("p", {}, `${prefs.total_selections} selection(s) recorded.`)];
    if (prefs.models.length) parts.push(prefTable("All categories", prefs.models));
    for (const [category, rows] of Object.entries(prefs.by_category)) {
      parts.push(prefTable(`Category: ${category}`, rows));
    }
    box.replaceChildren(...parts);
    box.dataset.total = String(prefs.total_selections);
  } catch (err) {
    box.replaceChildren(el("p", { class: "status error" }, err.message));
  }
}

$("run").addEventListener("click", run);
loadModels();
loadPreferences();
