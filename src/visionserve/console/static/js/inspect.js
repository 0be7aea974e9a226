// inspect: projects and media, training with progress, scoring with a heat map, live pipelines (WebRTC).
import { api, chrome, el, poll, say, sleep } from "./common.js";

chrome("inspect.html", { onKey: () => loadProjects() });

const $ = (id) => document.getElementById(id);
const API = "/inspect/api";
const project = () => $("project").value;
let live = null; // {pc, timer, activeId}

// --- projects and media -----------------------------------------------------------------

async function loadProjects(selected = project()) {
  try {
    const projects = await api(`${API}/projects`);
    $("project").replaceChildren(
      ...projects.map((p) => el("option", { value: p.id, selected: p.id === selected }, p.name)),
    );
    if (!projects.length) say($("project-status"), "No project yet: create one");
    await loadProject();
  } catch (err) {
    say($("project-status"), err.message, "error");
  }
}

async function createProject() {
  const name = $("new-project").value.trim();
  if (!name) {
    say($("project-status"), "Give the project a name", "error");
    $("new-project").focus();
    return;
  }
  try {
    const p = await api(`${API}/projects`, { method: "POST", json: { name } });
    $("new-project").value = "";
    await loadProjects(p.id);
    say($("project-status"), `Created ${p.name}`, "ok");
  } catch (err) {
    say($("project-status"), err.message, "error");
  }
}

async function loadProject() {
  if (!project()) return;
  await Promise.all([loadMedia(), loadModels(), loadPipelines()]);
}

async function loadMedia() {
  const page = await api(`${API}/projects/${project()}/media?limit=200`);
  $("media").replaceChildren(
    ...page.items.map((m) =>
      el(
        "li",
        { "data-media": m.id },
        el(
          "div",
          { class: "thumb" },
          el("img", { src: `${API}${m.thumbnail_url}`, alt: `${m.filename} (${m.label})`, loading: "lazy" }),
          m.has_mask ? el("img", { class: "mask", src: `${API}/media/${m.id}/mask`, alt: "" }) : null,
        ),
        el("span", { class: `badge ${m.label === "normal" ? "ok" : "bad"}` }, m.label),
        m.has_mask ? el("span", { class: "badge info" }, "mask") : null,
        el("div", {}, m.filename),
      ),
    ),
  );
  say($("media-status"), `${page.total} image(s)${page.total > page.items.length ? `, the first ${page.items.length} shown` : ""}`);
}

async function upload() {
  const files = [...$("media-files").files];
  if (!project() || !files.length) {
    say($("media-status"), "Choose a project and some images", "error");
    return;
  }
  const form = new FormData();
  for (const f of files) form.append("files", f, f.name);
  form.append("label", $("media-label").value);
  try {
    const r = await api(`${API}/projects/${project()}/media`, { method: "POST", form });
    await loadMedia();
    const errors = r.errors.map((e) => `${e.filename}: ${e.detail}`).join("; ");
    say($("media-status"), `Uploaded ${r.uploaded}, failed ${r.failed}${errors ? ` (${errors})` : ""}`, r.failed ? "error" : "ok");
  } catch (err) {
    say($("media-status"), err.message, "error");
  }
}

// --- training and models ----------------------------------------------------------------

async function loadArchitectures() {
  const models = await api(`${API}/trainable-models`);
  $("architecture").replaceChildren(
    ...models.map((m) =>
      el("option", { value: m.name, disabled: !m.available, title: m.unavailable_reason || m.description }, `${m.display_name}${m.available ? "" : " (unavailable)"}`),
    ),
  );
}

async function loadModels() {
  const models = await api(`${API}/projects/${project()}/models`);
  $("models").tBodies[0].replaceChildren(
    ...models.map((m) =>
      el(
        "tr",
        { "data-model": m.id },
        el("th", { scope: "row" }, m.name),
        el("td", {}, m.architecture),
        el("td", {}, el("span", { class: `badge ${m.status === "ready" ? "ok" : m.status === "failed" ? "bad" : "info"}` }, m.status), m.error ? ` ${m.error}` : ""),
        el("td", {}, metricText(m.metrics)),
      ),
    ),
  );
  const ready = models.filter((m) => m.status === "ready");
  for (const id of ["predict-model", "pl-model"]) {
    $(id).replaceChildren(...ready.map((m) => el("option", { value: m.id }, `${m.name} (${m.architecture})`)));
  }
}

const metricText = (metrics) =>
  Object.entries(metrics || {})
    .map(([k, v]) => `${k} ${typeof v === "number" ? +v.toFixed(4) : v}`)
    .join(", ");

async function train() {
  let parameters;
  try {
    parameters = JSON.parse($("parameters").value || "{}");
  } catch (err) {
    say($("train-state"), `Parameters are not valid JSON: ${err.message}`, "error");
    return;
  }
  $("train").disabled = true;
  try {
    const accepted = await api(`${API}/projects/${project()}/train`, {
      method: "POST",
      json: { model_name: $("model-name").value.trim(), architecture: $("architecture").value, parameters },
    });
    await loadModels();
    const job = await poll(
      () => api(`${API}/jobs/${accepted.job_id}`),
      (j) => ["completed", "failed", "cancelled"].includes(j.status),
      (j) => {
        $("train-progress").value = j.progress;
        say($("train-state"), `${j.status} ${Math.round(j.progress * 100)} %${j.message ? `: ${j.message}` : ""}`, "busy");
        $("train-metrics").replaceChildren(...Object.entries(j.metrics || {}).flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, typeof v === "number" ? +v.toFixed(4) : String(v))]));
      },
      1000,
    );
    say($("train-state"), `Training ${job.status}${job.error ? `: ${job.error}` : ""}`, job.status === "completed" ? "ok" : "error");
    $("train-state").dataset.status = job.status;
    await loadModels();
  } catch (err) {
    say($("train-state"), err.message, "error");
  } finally {
    $("train").disabled = false;
  }
}

async function predict() {
  const file = $("predict-file").files[0];
  const model = $("predict-model").value;
  if (!file || !model) {
    say($("predict-status"), "Choose a ready model and an image", "error");
    return;
  }
  const form = new FormData();
  form.append("file", file, file.name);
  try {
    const p = await api(`${API}/models/${model}/predict`, { method: "POST", form });
    say($("predict-status"), `Score ${p.score.toFixed(3)}: ${p.label} (${p.inference_ms.toFixed(0)} ms)`, p.label === "normal" ? "ok" : "error");
    $("prediction").replaceChildren(
      el(
        "div",
        { class: "heat" },
        el("img", { src: URL.createObjectURL(file), alt: `Scored image ${file.name}` }),
        el("img", { class: "overlay", src: `data:image/png;base64,${p.anomaly_map}`, alt: "Anomaly heat map" }),
      ),
    );
  } catch (err) {
    say($("predict-status"), err.message, "error");
  }
}

// --- live pipelines ---------------------------------------------------------------------

async function loadPipelines() {
  const [pipelines, active] = await Promise.all([
    api(`${API}/projects/${project()}/pipelines`),
    api(`${API}/active-pipelines`),
  ]);
  const running = new Map(active.map((a) => [a.pipeline_id, a]));
  $("pipelines").tBodies[0].replaceChildren(
    ...pipelines.map((p) => {
      const run = running.get(p.id);
      return el(
        "tr",
        { "data-pipeline": p.id },
        el("th", { scope: "row" }, p.name),
        el("td", {}, run ? `${run.status} (${run.metrics.frames_processed} frames)` : "not running"),
        el(
          "td",
          {},
          run
            ? [
                el("button", { type: "button", class: "watch", onclick: () => watch(run.id, p.name) }, "Watch live"),
                " ",
                el("button", { type: "button", class: "secondary", onclick: () => stop(run.id) }, "Stop"),
              ]
            : el("button", { type: "button", class: "start secondary", onclick: () => start(p.id, p.name) }, "Start"),
        ),
      );
    }),
  );
}

async function createPipeline() {
  const type = $("pl-type").value;
  const where = $("pl-where").value.trim();
  const config = type === "video_file" ? { path: where, loop: true } : type === "ip_camera" ? { url: where } : { device_index: Number(where || 0) };
  const name = $("pl-name").value.trim();
  try {
    const source = await api(`${API}/projects/${project()}/sources`, { method: "POST", json: { type, name: `${name} source`, config } });
    await api(`${API}/projects/${project()}/pipelines`, {
      method: "POST",
      json: { name, model_id: $("pl-model").value, source_id: source.id },
    });
    await loadPipelines();
    say($("live-status"), `Created pipeline ${name}`, "ok");
  } catch (err) {
    say($("live-status"), err.message, "error");
  }
}

async function start(pipelineId, name) {
  try {
    const run = await api(`${API}/active-pipelines`, { method: "POST", json: { pipeline_id: pipelineId } });
    say($("live-status"), `${name}: ${run.status}`, "busy");
    await loadPipelines();
    await watch(run.id, name);
  } catch (err) {
    say($("live-status"), err.message, "error");
  }
}

async function stop(activeId) {
  try {
    if (live?.activeId === activeId) closeLive();
    await api(`${API}/active-pipelines/${activeId}`, { method: "DELETE" });
    await loadPipelines();
    say($("live-status"), "Stopped", "ok");
  } catch (err) {
    say($("live-status"), err.message, "error");
  }
}

function gathered(pc, timeoutMs = 3000) {
  // The API takes one offer with its candidates (no trickling needed on a LAN).
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => pc.iceGatheringState === "complete" && resolve();
    pc.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, timeoutMs);
  });
}

async function watch(activeId, name) {
  closeLive();
  $("live").hidden = false;
  $("live-title").textContent = `Live view: ${name}`;
  const pc = new RTCPeerConnection();
  live = { pc, activeId, timer: null };
  pc.addTransceiver("video", { direction: "recvonly" });
  pc.addEventListener("track", (e) => {
    const video = $("video");
    video.srcObject = e.streams[0] || new MediaStream([e.track]);
    // autoplay alone may leave a stream attached after load paused: start it.
    video.play().catch((err) => say($("live-status"), `The video did not start: ${err.message}`, "error"));
  });
  pc.addEventListener("connectionstatechange", () => say($("live-status"), `${name}: WebRTC ${pc.connectionState}`, pc.connectionState === "failed" ? "error" : "ok"));
  try {
    // Wait until the run is up: an offer to a starting pipeline is refused.
    await poll(
      () => api(`${API}/active-pipelines/${activeId}`),
      (a) => a.status !== "starting",
      () => {},
      500,
      60000,
    );
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc);
    const answer = await api(`${API}/webrtc/offer`, {
      method: "POST",
      json: { pipeline_id: activeId, sdp: pc.localDescription.sdp, type: "offer" },
    });
    await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
  } catch (err) {
    say($("live-status"), err.message, "error");
  }
  const tick = async () => {
    if (live?.activeId !== activeId) return;
    try {
      const a = await api(`${API}/active-pipelines/${activeId}`);
      const m = a.metrics;
      const rows = {
        status: a.status + (a.error ? `: ${a.error}` : ""),
        "frames processed": m.frames_processed,
        "anomalies detected": m.anomalies_detected,
        "average inference": `${m.avg_inference_time_ms.toFixed(1)} ms`,
        fps: m.fps.toFixed(1),
        "sink errors": m.sink_errors + (m.last_sink_error ? ` (${m.last_sink_error})` : ""),
      };
      $("live-metrics").replaceChildren(...Object.entries(rows).flatMap(([k, v]) => [el("dt", {}, k), el("dd", { "data-metric": k }, String(v))]));
      if (a.status === "stopped" || a.status === "error") return;
    } catch (err) {
      say($("live-status"), err.message, "error");
    }
    await sleep(1000);
    tick();
  };
  tick();
}

function closeLive() {
  if (!live) return;
  live.pc.close();
  live = null;
  $("video").srcObject = null;
  $("live").hidden = true;
}

$("project").addEventListener("change", () => loadProject().catch((err) => say($("project-status"), err.message, "error")));
$("create-project").addEventListener("click", createProject);
$("upload").addEventListener("click", upload);
$("train").addEventListener("click", train);
$("predict").addEventListener("click", predict);
$("pl-create").addEventListener("click", createPipeline);
$("live-stop").addEventListener("click", closeLive);
loadArchitectures().catch((err) => say($("train-state"), err.message, "error"));
loadProjects();
