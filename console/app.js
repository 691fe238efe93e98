/**
 * The console: jobs with live status, a job's images, attempts and notification tries (with replay),
 * and the webhook settings. Everything the API says is written with textContent or as attribute
 * values checked here, never parsed as HTML. The API key lives in this tab's sessionStorage only.
 */
import { ApiError, createApi, loadApiBase } from "./api.js";
import { createPoller } from "./poll.js";

const KEY_STORAGE = "controlnet-console.api-key";
const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);

const $ = (id) => {
  const node = document.getElementById(id);
  if (!node) throw new Error(`#${id} missing from index.html`);
  return node;
};

/** An element with text children only: strings become text nodes, never markup. */
function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "text") node.textContent = String(value);
    else if (name === "className") node.className = String(value);
    else node.setAttribute(name, String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

/** http(s) URLs only: a link or image never gets a javascript: or data: address from the API. */
function safeHttpUrl(value) {
  try {
    const url = new URL(String(value));
    return url.protocol === "https:" || url.protocol === "http:" ? url.href : null;
  } catch {
    return null;
  }
}

const formatTime = (iso) => {
  if (!iso) return "—";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? String(iso) : date.toISOString().replace("T", " ").slice(0, 19);
};

const formatDuration = (fromIso, toIso) => {
  const ms = new Date(toIso).getTime() - new Date(fromIso).getTime();
  if (!Number.isFinite(ms) || ms < 0) return "";
  return ms < 10000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms / 1000)} s`;
};

const statusBadge = (status) =>
  el("span", { className: `status status-${status}`, "data-status": status, text: status });

function pollText(state, delay) {
  if (state === "paused") return "paused while the tab is hidden";
  if (state === "running") return "refreshing…";
  if (state === "waiting") return `live · next check in ${Math.max(1, Math.round(delay / 1000))} s`;
  if (state === "stopped") return "stopped";
  return "";
}

// ---- state ----
let api = null;
let jobsPoller = null;
let jobPoller = null;
let openJobId = null;
const jobs = new Map();
/** Whether a page of jobs has arrived since the list (re)started: "No jobs yet" means nothing before that. */
let jobsLoaded = false;
let olderCursor = null;
let statusFilter = "";

function showError(error) {
  const box = $("error");
  if (!error) {
    box.hidden = true;
    box.textContent = "";
    return;
  }
  box.hidden = false;
  if (error instanceof ApiError) {
    const refused = error.status === 401 || error.status === 403;
    const hint = refused ? " Check the key, or forget it and paste another." : "";
    box.textContent = `${error.code}: ${error.message}${hint}`;
  } else {
    box.textContent = String(error?.message ?? error);
  }
  box.dataset.code = error instanceof ApiError ? error.code : "";
}

/** Runs an API call; its failure shows in the banner (and is rethrown for the poller's backoff). */
async function guarded(action) {
  try {
    const result = await action();
    showError(null);
    return result;
  } catch (error) {
    showError(error);
    // A refused key stays refused: stop asking until another key is pasted.
    if (error instanceof ApiError && (error.status === 401 || error.status === 403)) {
      jobsPoller?.stop();
      jobPoller?.stop();
    }
    throw error;
  }
}

// ---- jobs list ----
function renderJobs() {
  const body = $("jobs").querySelector("tbody");
  const rows = [...jobs.values()]
    .filter((job) => !statusFilter || job.status === statusFilter)
    .sort((a, b) => (a.id < b.id ? 1 : -1));
  body.replaceChildren(
    ...rows.map((job) => {
      const link = el("a", { href: `#/jobs/${encodeURIComponent(job.id)}`, text: job.id });
      const row = el(
        "tr",
        { "data-job-id": job.id, className: job.id === openJobId ? "selected" : "" },
        el("td", {}, link),
        el("td", {}, statusBadge(job.status)),
        el("td", { text: formatTime(job.created_at) }),
        el("td", { className: "prompt", text: job.request?.prompt ?? "" }),
      );
      return row;
    }),
  );
  $("jobs-empty").hidden = !jobsLoaded || rows.length > 0;
  $("jobs-more").hidden = !olderCursor;
}

const signature = (job) => `${job.status}|${job.updated_at}`;

async function refreshJobs() {
  const page = await guarded(() => api.listJobs({ status: statusFilter || undefined }));
  let changed = false;
  for (const job of page.jobs) {
    const known = jobs.get(job.id);
    if (!known || signature(known) !== signature(job)) changed = true;
    jobs.set(job.id, job);
  }
  if (!jobsLoaded) {
    jobsLoaded = true;
    changed = true;
  }
  // Only the first load decides where "older" starts; later polls refresh the newest page.
  if (olderCursor === undefined) olderCursor = page.next_cursor;
  if (changed) renderJobs();
  // Unfinished jobs keep the loop lively; when everything is terminal it backs off.
  const active = page.jobs.some((job) => !TERMINAL.has(job.status));
  return changed || (active && jobsPoller.delay > 5000);
}

async function loadOlder() {
  if (!olderCursor) return;
  const page = await guarded(() => api.listJobs({ status: statusFilter || undefined, cursor: olderCursor }));
  for (const job of page.jobs) jobs.set(job.id, job);
  olderCursor = page.next_cursor;
  renderJobs();
}

function startJobsPolling() {
  jobsPoller?.stop();
  jobs.clear();
  jobsLoaded = false;
  olderCursor = undefined;
  renderJobs();
  jobsPoller = createPoller({
    run: refreshJobs,
    minMs: 1000,
    maxMs: 30000,
    onState: (state, delay) => {
      $("jobs-poll").textContent = pollText(state, delay);
    },
  });
  jobsPoller.poke();
}

// ---- one job ----
let shownOutputs = "";
let shownNotifications = "";
let shownJob = "";
let replayable = false;

function renderJob(job) {
  $("job-id").textContent = job.id;
  $("job-status").replaceChildren(statusBadge(job.status));
  const fields = [
    ["Created", formatTime(job.created_at)],
    ["Updated", formatTime(job.updated_at)],
    ["Provider", job.provider],
    ["Model", `${job.request?.model_id ?? ""} · ${job.request?.controlnet_model ?? ""}`],
    ["Prompt", job.request?.prompt ?? ""],
    ["Seed", job.seed ?? "—"],
    ["Track id", job.track_id ?? "—"],
    ["Webhook", job.webhook ?? "tenant default"],
  ];
  $("job-fields").replaceChildren(
    ...fields.flatMap(([name, value]) => [el("dt", { text: name }), el("dd", { text: String(value) })]),
  );
  const error = $("job-error");
  error.hidden = !job.error;
  error.textContent = job.error ? `${job.error.code}: ${job.error.message}` : "";

  // Presigned links change at every read: images are redrawn only when the outputs themselves change,
  // but the links to open them follow the fresh signatures (each expires, OUTPUT_URL_EXPIRY_SECONDS).
  const outputs = job.outputs ?? [];
  const outputsKey = outputs.map((o) => `${o.sha256}|${o.bytes}`).join(",");
  if (outputsKey === shownOutputs) {
    const figures = $("images").children;
    outputs.forEach((output, index) => {
      const url = safeHttpUrl(output.url);
      const link = figures[index]?.querySelector("a");
      if (url && link) link.href = url;
    });
  } else {
    shownOutputs = outputsKey;
    $("images").replaceChildren(
      ...outputs.map((output, index) => {
        const url = safeHttpUrl(output.url);
        const caption = [
          output.width && output.height ? `${output.width}×${output.height}` : null,
          output.content_type,
          output.bytes ? `${Math.round(output.bytes / 1024)} kB` : null,
        ]
          .filter(Boolean)
          .join(" · ");
        const img = el("img", {
          alt: `Output ${index + 1} of job ${job.id}`,
          width: output.width ?? undefined,
          height: output.height ?? undefined,
          loading: "lazy",
          referrerpolicy: "no-referrer",
        });
        if (url) img.src = url;
        const link = url ? el("a", { href: url, target: "_blank", rel: "noopener noreferrer" }, img) : img;
        return el("figure", {}, link, el("figcaption", { text: caption }));
      }),
    );
  }
  $("images-none").hidden = outputs.length > 0;

  const attempts = job.attempts ?? [];
  $("attempts").replaceChildren(
    ...attempts.map((attempt, index) =>
      el(
        "li",
        { className: `attempt outcome-${attempt.outcome}`, "data-outcome": attempt.outcome },
        el("strong", { text: `#${index + 1} ${attempt.route}` }),
        " ",
        el("span", { className: "outcome", text: attempt.outcome }),
        el("span", {
          className: "muted",
          text: ` · started ${formatTime(attempt.started_at)}${
            attempt.ended_at
              ? ` · ended ${formatTime(attempt.ended_at)} (${formatDuration(attempt.started_at, attempt.ended_at)})`
              : ""
          }`,
        }),
        attempt.reason ? el("div", { className: "reason", text: attempt.reason }) : null,
      ),
    ),
  );
  $("attempts-none").hidden = attempts.length > 0;
}

function renderNotifications(list) {
  $("notifications").replaceChildren(
    ...list.map((notification) =>
      el(
        "article",
        {
          className: "notification",
          "data-notification-id": notification.id,
          "data-state": notification.state,
        },
        el(
          "header",
          {},
          el("strong", { text: notification.type }),
          " ",
          el("span", { className: `state state-${notification.state}`, text: notification.state }),
          el("span", { className: "muted", text: ` → ${notification.url ?? "no endpoint"}` }),
        ),
        el("p", {
          className: "muted small",
          text: `webhook-id ${notification.id} · ${formatTime(notification.created_at)}`,
        }),
        notification.attempts.length === 0
          ? el("p", {
              className: "muted",
              text:
                notification.state === "no_endpoint"
                  ? "Not sent: the job named no webhook and there was no default endpoint (Webhook settings) when it finished."
                  : "No delivery try yet.",
            })
          : el(
              "table",
              { className: "tries" },
              el(
                "thead",
                {},
                el("tr", {}, ...["Try", "At", "Answer", "Error", "Took"].map((h) => el("th", { text: h }))),
              ),
              el(
                "tbody",
                {},
                ...notification.attempts.map((attempt) =>
                  el(
                    "tr",
                    { className: "try" },
                    el("td", { text: String(attempt.attempt) }),
                    el("td", { text: formatTime(attempt.at) }),
                    el("td", { text: attempt.status === null ? "no answer" : String(attempt.status) }),
                    el("td", { text: attempt.error ?? "" }),
                    el("td", { text: `${attempt.duration_ms} ms` }),
                  ),
                ),
              ),
            ),
      ),
    ),
  );
  $("notifications-none").hidden = list.length > 0;
  // Only notifications that had an endpoint can be sent again (the API answers NOTHING_TO_REPLAY).
  replayable = list.some((notification) => notification.url !== null);
  $("replay").disabled = !replayable;
}

async function refreshJob() {
  const id = openJobId;
  const [job, notes] = await guarded(() => Promise.all([api.getJob(id), api.notifications(id)]));
  if (id !== openJobId) return false;
  const before = `${shownNotifications}|${shownJob}`;
  shownJob = signature(job);
  jobs.set(job.id, { ...jobs.get(job.id), ...job });
  renderJob(job);
  const notificationsKey = JSON.stringify(notes.notifications);
  if (notificationsKey !== shownNotifications) {
    shownNotifications = notificationsKey;
    renderNotifications(notes.notifications);
  }
  renderJobs();
  const after = `${shownNotifications}|${shownJob}`;
  const unfinished = !TERMINAL.has(job.status) || notes.notifications.some((n) => n.state === "pending");
  return before !== after || (unfinished && jobPoller.delay > 5000);
}

function openJob(id) {
  if (openJobId === id && jobPoller) return;
  jobPoller?.stop();
  openJobId = id;
  shownOutputs = "";
  shownNotifications = "";
  shownJob = "";
  replayable = false;
  $("replay").disabled = true;
  $("job").hidden = false;
  $("job-id").textContent = id;
  $("images").replaceChildren();
  $("attempts").replaceChildren();
  $("notifications").replaceChildren();
  $("replay-result").textContent = "";
  jobPoller = createPoller({
    run: refreshJob,
    minMs: 1000,
    maxMs: 30000,
    onState: (state, delay) => {
      $("job-poll").textContent = pollText(state, delay);
    },
  });
  jobPoller.poke();
  renderJobs();
}

function closeJob() {
  jobPoller?.stop();
  jobPoller = null;
  openJobId = null;
  $("job").hidden = true;
}

async function replay() {
  if (!openJobId) return;
  const button = $("replay");
  button.disabled = true;
  try {
    const result = await guarded(() => api.replay(openJobId));
    const count = result.notifications.length;
    $("replay-result").textContent =
      `Replayed ${count} notification${count === 1 ? "" : "s"}: a new try follows.`;
    jobPoller?.poke();
  } catch (error) {
    $("replay-result").textContent = error instanceof ApiError ? error.message : String(error);
  } finally {
    button.disabled = !replayable;
  }
}

// ---- webhook settings ----
// Each load numbered: an answer overtaken by a later load (e.g. the one a save starts) is dropped, so an
// older read never overwrites what the page just saved.
let webhookLoads = 0;

async function loadWebhook() {
  const load = ++webhookLoads;
  const settings = await guarded(() => api.webhook());
  if (load !== webhookLoads) return;
  $("webhook-current").textContent =
    settings.url ?? "none (notifications go only to jobs that name a webhook)";
  const input = $("webhook-url");
  if (document.activeElement !== input) input.value = settings.url ?? "";
  $("secrets")
    .querySelector("tbody")
    .replaceChildren(
      ...settings.secrets.map((secret) =>
        el(
          "tr",
          { className: "secret-row" },
          el("td", { text: formatTime(secret.created_at) }),
          el("td", { text: secret.retires_at ? formatTime(secret.retires_at) : "in force" }),
        ),
      ),
    );
}

async function saveWebhook(event) {
  event.preventDefault();
  const value = $("webhook-url").value.trim();
  $("webhook-saved").textContent = "";
  try {
    const saved = await guarded(() => api.setWebhookUrl(value === "" ? null : value));
    // The settings shown first, then the confirmation: when it reads "Saved", the page shows it.
    await loadWebhook();
    $("webhook-saved").textContent = saved.url ? `Saved: ${saved.url}` : "Removed: no default endpoint.";
  } catch {
    // The banner says why.
  }
}

async function rotate() {
  const button = $("rotate");
  button.disabled = true;
  try {
    const result = await guarded(() => api.rotateSecret());
    $("new-secret-value").textContent = result.secret;
    $("new-secret-retire").textContent = formatTime(result.previous_secrets_retire_at);
    $("new-secret").hidden = false;
    await loadWebhook();
  } catch {
    // The banner says why.
  } finally {
    button.disabled = false;
  }
}

function hideSecret() {
  $("new-secret-value").textContent = "";
  $("new-secret").hidden = true;
}

// ---- key and navigation ----
const currentKey = () => sessionStorage.getItem(KEY_STORAGE) ?? "";

function showKeyState() {
  const key = currentKey();
  $("key-form").hidden = key !== "";
  $("key-in-use").hidden = key === "";
  $("key-prefix").textContent = key.slice(0, 8);
  $("need-key").hidden = key !== "";
}

function stopAll() {
  jobsPoller?.stop();
  jobsPoller = null;
  closeJob();
  hideSecret();
}

function route() {
  stopAll();
  showKeyState();
  const hash = window.location.hash || "#/jobs";
  const webhook = hash === "#/webhook";
  $("jobs-view").hidden = webhook || !currentKey();
  $("webhook-view").hidden = !webhook || !currentKey();
  $("nav-jobs").classList.toggle("active", !webhook);
  $("nav-webhook").classList.toggle("active", webhook);
  if (!currentKey()) return;
  if (webhook) {
    loadWebhook().catch(() => undefined);
    return;
  }
  startJobsPolling();
  const match = /^#\/jobs\/([^/]+)$/.exec(hash);
  if (match) openJob(decodeURIComponent(match[1]));
}

async function main() {
  let base;
  try {
    base = await loadApiBase();
  } catch (error) {
    showError(error);
    return;
  }
  $("api-target").textContent = `API: ${base}`;
  api = createApi(base, currentKey);

  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = $("api-key");
    const key = input.value.trim();
    input.value = "";
    if (!key) return;
    sessionStorage.setItem(KEY_STORAGE, key);
    showError(null);
    route();
  });
  $("forget-key").addEventListener("click", () => {
    sessionStorage.removeItem(KEY_STORAGE);
    showError(null);
    route();
  });
  $("status-filter").addEventListener("change", (event) => {
    statusFilter = event.target.value;
    startJobsPolling();
  });
  $("jobs-more").addEventListener("click", () => loadOlder().catch(() => undefined));
  $("replay").addEventListener("click", () => void replay());
  $("webhook-form").addEventListener("submit", (event) => void saveWebhook(event));
  $("rotate").addEventListener("click", () => void rotate());
  $("new-secret-hide").addEventListener("click", hideSecret);
  $("new-secret-copy").addEventListener("click", () => {
    navigator.clipboard?.writeText($("new-secret-value").textContent ?? "").catch(() => undefined);
  });
  window.addEventListener("hashchange", () => {
    const match = /^#\/jobs\/([^/]+)$/.exec(window.location.hash);
    // Moving between jobs keeps the list's loop; other moves start afresh.
    if (match && jobsPoller) openJob(decodeURIComponent(match[1]));
    else route();
  });
  route();
}

void main();
