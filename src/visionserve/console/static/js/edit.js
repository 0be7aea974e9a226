// edit: prompt + image → the async job (result in the output bucket) → the plan, before and after.
import { api, chrome, el, fileToBase64, poll, say } from "./common.js";

chrome("edit.html");

const $ = (id) => document.getElementById(id);
const CALLBACK = "visionserve.editCallback";
$("callback").value = sessionStorage.getItem(CALLBACK) || "";

async function run() {
  const status = $("status");
  const file = $("image").files[0];
  const callback = $("callback").value.trim();
  if (!file || !$("prompt").value.trim() || !callback) {
    say(status, "A prompt, an image and a callback URL are all required", "error");
    return;
  }
  sessionStorage.setItem(CALLBACK, callback);
  $("run").disabled = true;
  try {
    const accepted = await api("/edit/process-image-async", {
      method: "POST",
      headers: { callbackUrl: callback },
      json: { prompt: $("prompt").value, filename: file.name, image_base64: await fileToBase64(file) },
    });
    $("before").src = URL.createObjectURL(file);
    const job = await poll(
      () => api(`/edit/jobs/${accepted.job_id}`),
      (j) => ["completed", "failed", "cancelled"].includes(j.state),
      (j) => say(status, `Job ${j.job_id}: ${j.state} ${Math.round(j.progress * 100)} %${j.message ? `, ${j.message}` : ""}`, "busy"),
    );
    show(job);
  } catch (err) {
    say(status, err.message, "error");
  } finally {
    $("run").disabled = false;
  }
}

function show(job) {
  const r = job.result || {};
  $("result").hidden = false;
  $("plan").replaceChildren(...(r.applied || []).map((op) => el("li", {}, op)));
  $("facts").textContent = [r.route && `route ${r.route}`, r.width && `${r.width}×${r.height}`, r.note].filter(Boolean).join(" · ");
  $("deliveries").textContent = job.deliveries.map((d) => `${d.status} after ${d.attempts} attempt(s)${d.last_error ? `: ${d.last_error}` : ""} → ${d.url}`).join("\n") || "none yet";
  if (job.state === "completed") {
    $("after").src = r.result_url;
    say($("status"), `Done: ${(r.applied || []).length} operation(s)`, "ok");
  } else {
    $("after").removeAttribute("src");
    say($("status"), `Job ${job.state}: ${job.error || ""}`, "error");
  }
}

$("run").addEventListener("click", run);
