// The VividFlow Serve page: two job forms, the jobs this tab submitted, live progress and results.
// It uses the public v1 API only, exactly as any other client would, and keeps its state (API key and
// job ids) in sessionStorage, so it is forgotten when the tab closes.
"use strict";

const KEY_STORAGE = "vividflow.apiKey";
const JOBS_STORAGE = "vividflow.jobs";
const FINAL = new Set(["succeeded", "failed", "cancelled"]);
// The fields each endpoint reads; the API refuses unknown fields, so each request sends only its own.
const FIELDS = {
  plan: ["image", "duration_s"],
  video: ["image", "prompt", "negative_prompt", "template_id", "duration_s", "steps", "guidance_scale",
    "guidance_scale_2", "seed", "expand_prompt"],
  mask: ["image", "composition", "focus", "feather_px"],
  background: ["image", "scene_id", "prompt", "negative_prompt", "composition", "focus", "feather_px", "steps",
    "guidance_scale", "seed", "enrich_prompt"],
};

// ---- talking to the API ----------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, detail) {
    super(detail.message || `the server answered ${status}`);
    this.status = status;
    this.type = detail.type || "http_error";
    this.field = detail.field || null;
  }
}

function apiKey() {
  return sessionStorage.getItem(KEY_STORAGE) || "";
}

// Every request goes through here so the API key, when set, travels with all of them (the event
// stream and result downloads included: that is why they are fetched, not given to EventSource or src).
async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  const key = apiKey();
  if (key) headers.set("Authorization", `Bearer ${key}`);
  let response;
  try {
    response = await fetch(path, { ...options, headers });
  } catch (error) {
    throw new ApiError(0, { type: "network", message: `cannot reach the server (${error.message})` });
  }
  if (!response.ok) throw await errorOf(response);
  return response;
}

async function errorOf(response) {
  let detail = {};
  try {
    detail = (await response.json()).error || {};
  } catch {
    // not the API's error body (a proxy's page, for example): fall back to the status line
  }
  if (!detail.message) detail.message = `the server answered ${response.status} ${response.statusText}`;
  return new ApiError(response.status, detail);
}

async function apiJson(path, options) {
  return (await api(path, options)).json();
}

// Server-Sent Events read from a fetch body (EventSource cannot send an Authorization header).
// This server writes LF line ends; each event is `event:` + `data:` lines ended by a blank line.
async function readEvents(body, onEvent) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) !== -1) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line === "" || line.startsWith(":")) continue; // comment lines are keep-alives
        const colon = line.indexOf(":");
        const name = colon === -1 ? line : line.slice(0, colon);
        const text = colon === -1 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (name === "event") event = text;
        else if (name === "data") data.push(text);
      }
      if (data.length) onEvent(event, data.join("\n"));
    }
  }
}

// ---- forms and their errors ------------------------------------------------------------------------

function formBody(form, names) {
  const body = new FormData();
  for (const name of names) {
    const element = form.elements.namedItem(name);
    if (!element) continue;
    if (element.type === "file") {
      if (element.files.length) body.append(name, element.files[0]);
    } else if (element.type === "checkbox") {
      body.append(name, element.checked ? "true" : "false");
    } else if (element.value.trim() !== "") {
      // an empty field is left out: the API's default applies (it refuses an empty number)
      body.append(name, element.value.trim());
    }
  }
  return body;
}

// A number box holding text reads as "" in the DOM; sending nothing would quietly use the default.
function badNumbers(form, names) {
  for (const name of names) {
    const element = form.elements.namedItem(name);
    if (element && element.type === "number" && element.validity.badInput) {
      return new ApiError(400, { type: "invalid_input", field: name, message: `\`${name}\` must be a number` });
    }
  }
  return null;
}

function clearErrors(form) {
  for (const slot of form.querySelectorAll("[data-error-for]")) slot.textContent = "";
  for (const element of form.querySelectorAll("[aria-invalid]")) element.removeAttribute("aria-invalid");
}

// The message goes next to the input the API's `field` names; anything else to the form's error line.
function showError(form, error) {
  const slot = error.field ? form.querySelector(`[data-error-for="${CSS.escape(error.field)}"]`) : null;
  if (!slot) {
    form.querySelector('[data-error-for=""]').textContent = error.message;
    return;
  }
  slot.textContent = error.message;
  const input = form.elements.namedItem(error.field);
  const details = slot.closest("details");
  if (details) details.open = true;
  if (input && input.setAttribute) {
    input.setAttribute("aria-invalid", "true");
    input.focus();
  }
}

async function withBusy(form, action) {
  const buttons = form.querySelectorAll("button");
  form.setAttribute("aria-busy", "true");
  for (const button of buttons) button.disabled = true;
  clearErrors(form);
  try {
    await action();
  } catch (error) {
    if (!(error instanceof ApiError)) throw error;
    showError(form, error);
  } finally {
    form.removeAttribute("aria-busy");
    for (const button of buttons) button.disabled = false;
  }
}

async function post(form, path, fields) {
  const invalid = badNumbers(form, fields);
  if (invalid) throw invalid;
  return api(path, { method: "POST", body: formBody(form, fields) });
}

function showThumbnail(input) {
  const thumb = input.parentElement.querySelector(".thumb");
  if (thumb.src) URL.revokeObjectURL(thumb.src);
  if (input.files.length) {
    thumb.src = URL.createObjectURL(input.files[0]);
    thumb.hidden = false;
  } else {
    thumb.removeAttribute("src");
    thumb.hidden = true;
  }
}

// ---- templates -------------------------------------------------------------------------------------

function addOption(parent, value, text) {
  const option = document.createElement("option");
  option.value = value;
  option.textContent = text;
  parent.append(option);
}

function describeSelection(select, prompts, hint, emptyText) {
  const update = () => {
    hint.textContent = select.value ? `Prompt: ${prompts.get(select.value)}` : emptyText;
  };
  select.addEventListener("change", update);
  update();
}

async function loadMotionTemplates() {
  const select = document.getElementById("video-template");
  const prompts = new Map();
  const { categories } = await apiJson("/v1/templates/motion");
  for (const category of categories) {
    const group = document.createElement("optgroup");
    group.label = category.name;
    for (const template of category.prompts) {
      const short = template.id.split(".").pop().replaceAll("_", " ");
      addOption(group, template.id, short);
      prompts.set(template.id, template.prompt);
    }
    select.append(group);
  }
  describeSelection(select, prompts, document.getElementById("video-template-prompt"),
    `${prompts.size} templates in ${categories.length} categories; the prompt below is used alone.`);
}

async function loadSceneTemplates() {
  const select = document.getElementById("background-scene");
  const prompts = new Map();
  const { categories, templates } = await apiJson("/v1/templates/scenes");
  for (const category of categories) {
    const group = document.createElement("optgroup");
    group.label = category;
    for (const template of templates.filter((t) => t.category === category)) {
      addOption(group, template.id, template.name);
      prompts.set(template.id, template.prompt);
    }
    select.append(group);
  }
  describeSelection(select, prompts, document.getElementById("background-scene-prompt"),
    `${prompts.size} scenes; without one, the prompt below describes the background.`);
}

// ---- the job list ----------------------------------------------------------------------------------

function storedJobs() {
  try {
    return JSON.parse(sessionStorage.getItem(JOBS_STORAGE) || "[]");
  } catch {
    return [];
  }
}

function storeJobs(jobs) {
  sessionStorage.setItem(JOBS_STORAGE, JSON.stringify(jobs));
}

function summaryOf(job) {
  const p = job.params || {};
  if (job.kind === "video") {
    const what = p.template_id || p.user_prompt || "default prompt";
    return `${p.width}×${p.height}, ${p.frames} frames at ${p.fps} fps, ${p.steps} steps, seed ${p.seed} · ${what}`;
  }
  const what = [p.scene_id, p.user_prompt].filter(Boolean).join(" + ") || "prompt";
  return `${p.input_width}×${p.input_height}, ${p.composition}, ${p.steps} steps, seed ${p.seed} · ${what}`;
}

const cards = new Map(); // job id -> its list item

function addJob(job) {
  const jobs = storedJobs().filter((entry) => entry.id !== job.id);
  jobs.unshift({ id: job.id, kind: job.kind, summary: summaryOf(job) });
  storeJobs(jobs);
  const card = createCard(jobs[0]);
  document.getElementById("job-list").prepend(card);
  updateCard(card, job);
  follow(card);
}

function createCard(entry) {
  const card = document.getElementById("job-template").content.firstElementChild.cloneNode(true);
  card.dataset.jobId = entry.id;
  card.querySelector(".job-kind").textContent = entry.kind === "video" ? "Video" : "Background";
  card.querySelector(".job-id").textContent = entry.id.slice(0, 8);
  card.querySelector(".job-id").title = entry.id;
  card.querySelector(".job-summary").textContent = entry.summary;
  card.querySelector(".job-progress").setAttribute("aria-label", `Progress of job ${entry.id.slice(0, 8)}`);
  card.querySelector(".job-cancel").addEventListener("click", () => cancelJob(card));
  card.querySelector(".job-forget").addEventListener("click", () => forgetJob(card));
  cards.set(entry.id, card);
  document.getElementById("jobs-empty").hidden = true;
  return card;
}

function updateCard(card, job) {
  const status = job.cancel_requested && !FINAL.has(job.status) ? "cancelling" : job.status;
  card.dataset.status = job.status;
  const label = card.querySelector(".job-status");
  label.textContent = status;
  label.className = `job-status status-${status}`;
  const bar = card.querySelector(".job-progress");
  bar.value = job.progress;
  card.querySelector(".job-step").textContent =
    job.total_steps ? `step ${job.step} of ${job.total_steps}` : `${Math.round(job.progress * 100)} %`;
  card.querySelector(".job-cancel").hidden = FINAL.has(job.status);
  if (job.error) showJobError(card, job.error.message);
  if (job.status === "succeeded" && job.result && !card.dataset.resultShown) {
    card.dataset.resultShown = "loading";
    showResult(card, job).catch((error) => showJobError(card, `cannot load the result: ${error.message}`));
  }
}

function showJobError(card, message) {
  const slot = card.querySelector(".job-error");
  slot.textContent = message;
  slot.hidden = false;
}

// The result is fetched (with the API key) and shown from a blob, so it plays without a second request.
async function showResult(card, job) {
  const blob = await (await api(job.result.url)).blob();
  const url = URL.createObjectURL(blob);
  const place = card.querySelector(".job-result");
  let media;
  if (job.result.content_type.startsWith("video/")) {
    media = document.createElement("video");
    Object.assign(media, { controls: true, loop: true, muted: true, playsInline: true });
    media.setAttribute("aria-label", `Video of job ${job.id.slice(0, 8)}`);
  } else {
    media = document.createElement("img");
    media.alt = `Result of job ${job.id.slice(0, 8)}`;
  }
  media.src = url;
  place.replaceChildren(media);
  const link = card.querySelector(".job-download");
  link.href = url;
  link.download = `${job.id}${job.result.content_type === "video/mp4" ? ".mp4" : ".png"}`;
  link.hidden = false;
  card.dataset.resultShown = "yes";
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Browsers open at most six HTTP/1.1 connections to a server and an event stream holds one for the
// job's whole run, so only a few jobs are streamed at once; the others are polled until a stream is free.
const MAX_STREAMS = 3;
let openStreams = 0;

// Follow a job until a final state; a dropped stream is re-read after a pause that grows, so a
// restarting server is not hammered.
async function follow(card) {
  const id = card.dataset.jobId;
  const current = () => cards.get(id) === card;
  for (let attempt = 0; current() && !FINAL.has(card.dataset.status); attempt++) {
    try {
      if (openStreams < MAX_STREAMS) {
        openStreams++;
        try {
          const response = await api(`/v1/jobs/${id}/events`, { headers: { Accept: "text/event-stream" } });
          await readEvents(response.body, (event, data) => {
            if (current()) updateCard(card, JSON.parse(data));
          });
        } finally {
          openStreams--;
        }
        attempt = 0;
      } else {
        updateCard(card, await apiJson(`/v1/jobs/${id}`));
        attempt = 0;
      }
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) {
        showJobError(card, "the server no longer knows this job");
        card.dataset.status = "unknown";
        card.querySelector(".job-status").textContent = "unknown";
        card.querySelector(".job-cancel").hidden = true;
        return;
      }
      if (!(error instanceof ApiError) && !(error instanceof TypeError)) throw error;
    }
    if (!FINAL.has(card.dataset.status)) await sleep(Math.min(10000, 1000 * 2 ** attempt));
  }
}

async function cancelJob(card) {
  const button = card.querySelector(".job-cancel");
  button.disabled = true;
  try {
    updateCard(card, await apiJson(`/v1/jobs/${card.dataset.jobId}/cancel`, { method: "POST" }));
  } catch (error) {
    if (!(error instanceof ApiError)) throw error;
    showJobError(card, error.message);
  } finally {
    button.disabled = false;
  }
}

function forgetJob(card) {
  const id = card.dataset.jobId;
  storeJobs(storedJobs().filter((entry) => entry.id !== id));
  cards.delete(id);
  for (const media of card.querySelectorAll(".job-result [src]")) URL.revokeObjectURL(media.src);
  card.remove();
  document.getElementById("jobs-empty").hidden = cards.size > 0;
}

function restoreJobs() {
  const list = document.getElementById("job-list");
  for (const entry of storedJobs()) {
    const card = createCard(entry);
    list.append(card);
    card.dataset.status = "queued";
    follow(card); // the first event carries the job's current state, final or not
  }
}

// ---- the two workflows -----------------------------------------------------------------------------

function setUpVideoForm() {
  const form = document.getElementById("video-form");
  const plan = document.getElementById("video-plan");
  form.elements.namedItem("image").addEventListener("change", (event) => showThumbnail(event.target));
  form.querySelector('[data-action="plan"]').addEventListener("click", () =>
    withBusy(form, async () => {
      plan.textContent = "";
      const p = await (await post(form, "/v1/videos/plan", FIELDS.plan)).json();
      plan.textContent = `Output ${p.output.width}×${p.output.height}, ${p.frames} frames at ${p.fps} fps ` +
        `(${p.duration_s} s) from a ${p.input.width}×${p.input.height} photo.`;
    }));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    withBusy(form, async () => addJob(await (await post(form, "/v1/videos", FIELDS.video)).json()));
  });
}

function setUpBackgroundForm() {
  const form = document.getElementById("background-form");
  const figure = form.querySelector(".mask-preview");
  const image = document.getElementById("mask-image");
  form.elements.namedItem("image").addEventListener("change", (event) => showThumbnail(event.target));
  form.querySelector('[data-action="mask"]').addEventListener("click", () =>
    withBusy(form, async () => {
      const response = await post(form, "/v1/backgrounds/mask", FIELDS.mask);
      const blob = await response.blob();
      if (image.src) URL.revokeObjectURL(image.src);
      image.src = URL.createObjectURL(blob);
      const coverage = Number(response.headers.get("X-Mask-Coverage"));
      document.getElementById("mask-caption").textContent =
        `Mask by the ${response.headers.get("X-Mask-Stage")} stage (${response.headers.get("X-Mask-Status")}): ` +
        `${(coverage * 100).toFixed(1)} % of the photo is kept.`;
      figure.hidden = false;
    }));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    withBusy(form, async () => addJob(await (await post(form, "/v1/backgrounds", FIELDS.background)).json()));
  });
}

function setUpTabs() {
  const tabs = [...document.querySelectorAll('[role="tab"]')];
  const select = (chosen) => {
    for (const tab of tabs) {
      const on = tab === chosen;
      tab.setAttribute("aria-selected", String(on));
      tab.tabIndex = on ? 0 : -1;
      document.getElementById(tab.getAttribute("aria-controls")).hidden = !on;
    }
  };
  for (const tab of tabs) {
    tab.addEventListener("click", () => select(tab));
    tab.addEventListener("keydown", (event) => {
      const step = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
      if (!step) return;
      const next = tabs[(tabs.indexOf(tab) + step + tabs.length) % tabs.length];
      select(next);
      next.focus();
    });
  }
}

function setUpApiKey() {
  const form = document.getElementById("api-key-form");
  const input = document.getElementById("api-key");
  const state = document.getElementById("api-key-state");
  const show = () => {
    state.textContent = apiKey() ? "sent with every request" : "no key is sent";
  };
  input.value = apiKey();
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (input.value.trim()) sessionStorage.setItem(KEY_STORAGE, input.value.trim());
    else sessionStorage.removeItem(KEY_STORAGE);
    show();
  });
  document.getElementById("api-key-clear").addEventListener("click", () => {
    sessionStorage.removeItem(KEY_STORAGE);
    input.value = "";
    show();
  });
  show();
}

function showPageError(message) {
  const slot = document.getElementById("page-error");
  slot.textContent = message;
  slot.hidden = false;
}

setUpApiKey();
setUpTabs();
setUpVideoForm();
setUpBackgroundForm();
restoreJobs();
loadMotionTemplates().catch((error) => showPageError(`Motion templates could not be loaded: ${error.message}`));
loadSceneTemplates().catch((error) => showPageError(`Scene templates could not be loaded: ${error.message}`));
