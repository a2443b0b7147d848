// The console's behaviour: sign in, pick a definition, fill its form, test (watching the
// steps), cancel, and list, open, edit and save stored sources. Every call is the public API
// with the key as a Bearer header (fetch, never a URL or a cookie: EventSource could not
// send the header, so the event stream is read from fetch's body).
"use strict";

(() => {
  const KEY = "sourcecheck.apiKey";
  const RESULTS = "sourcecheck.lastResults";
  const state = {
    key: null, org: null, definitions: [], form: null, source: null,
    job: null, abort: null, cancelled: null,
    lastResults: JSON.parse(sessionStorage.getItem(RESULTS) || "{}"),
  };
  const $ = (id) => document.getElementById(id);

  // --- the API ---------------------------------------------------------------------------
  class ApiFailure extends Error {
    constructor(status, body) {
      const error = (body && body.error) || {};
      super(error.message || `The API answered HTTP ${status}`);
      this.status = status;
      this.fields = (error.errors || []).map((e) => e.field.replace(/^configuration\./, ""));
      this.details = (error.errors || []).map((e) => `${e.field}: ${e.message}`);
    }
  }

  function request(method, path, { body, signal, accept = "application/json" } = {}) {
    const headers = { Authorization: "Bearer " + state.key, Accept: accept };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    return fetch(path, {
      method, headers, signal, body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store", credentials: "omit", referrerPolicy: "no-referrer",
    });
  }

  async function api(method, path, options = {}) {
    const response = await request(method, path, options);
    const type = response.headers.get("content-type") || "";
    const data = type.includes("json") ? await response.json() : null;
    return { status: response.status, data };
  }

  async function expect(method, path, statuses, options) {
    const answer = await api(method, path, options);
    if (!statuses.includes(answer.status)) throw new ApiFailure(answer.status, answer.data);
    return answer;
  }

  const orgPath = (path) => `/v1/organizations/${encodeURIComponent(state.org)}/knowledge/connectors${path}`;
  const jobPath = (job, rest = "") => orgPath(`/sources/test/${encodeURIComponent(job)}${rest}`);

  // --- steps and results ------------------------------------------------------------------
  function setStatus(text, kind = "") {
    $("status").textContent = text;
    $("status").className = "status " + kind;
  }

  function stepItem(name) {
    let item = $("steps").querySelector(`li[data-step="${CSS.escape(name)}"]`);
    if (!item) {
      item = document.createElement("li");
      item.dataset.step = name;
      for (const part of ["name", "state", "duration", "message"]) {
        const span = document.createElement("span");
        span.className = "step-" + part;
        item.append(span);
      }
      item.querySelector(".step-name").textContent = name;
      $("steps").append(item);
    }
    return item;
  }

  function showStep({ name, status, duration_ms: duration, message }) {
    const item = stepItem(name);
    item.className = "step " + status;
    item.dataset.status = status;
    item.querySelector(".step-state").textContent = status === "running" ? "running…" : status;
    item.querySelector(".step-duration").textContent =
      typeof duration === "number" ? `${duration.toFixed(duration < 10 ? 1 : 0)} ms` : "";
    item.querySelector(".step-message").textContent = message || "";
  }

  function showWarning({ code, message, hint }) {
    const item = document.createElement("li");
    item.textContent = `${code}: ${message}${hint ? " — " + hint : ""}`;
    $("warnings").append(item);
  }

  function clearResult() {
    $("steps").replaceChildren();
    $("warnings").replaceChildren();
    $("failure").hidden = true;
    $("form-error").textContent = "";
    state.form?.clearInvalid();
  }

  function showResult(result) {
    const info = result.job_info || {};
    $("steps").replaceChildren();
    (info.steps || []).forEach(showStep);
    $("warnings").replaceChildren();
    (info.warnings || []).forEach(showWarning);
    const took = typeof info.duration_ms === "number" ? ` in ${Math.round(info.duration_ms)} ms` : "";
    setStatus(`${result.status}${took}`, result.status);
    if (result.status === "failed") {
      $("failure-type").textContent = info.type || "";
      $("failure-message").textContent = info.message || "";
      $("failure-hint").textContent = info.hint || "";
      $("failure").hidden = false;
      state.form?.markInvalid(info.fields || []);
    }
    if (info.source_id) {
      state.lastResults[info.source_id] = { status: result.status, type: info.type || null, at: info.ended_at };
      sessionStorage.setItem(RESULTS, JSON.stringify(state.lastResults));
      drawSources();
    }
  }

  function showError(error) {
    if (error instanceof SCForms.InputError) {
      $("form-error").textContent = error.message;
      state.form?.markInvalid([error.path]);
      return;
    }
    const details = error.details && error.details.length ? " (" + error.details.join("; ") + ")" : "";
    $("form-error").textContent = error.message + details;
    if (error.fields) state.form?.markInvalid(error.fields);
  }

  // --- following a test -------------------------------------------------------------------
  async function follow(job, signal) {
    const response = await request("GET", jobPath(job, "/events"), { signal, accept: "text/event-stream" });
    if (response.status === 404 || response.status === 405) {
      await response.body?.cancel();
      return poll(job, signal); // an API without the event stream: poll instead
    }
    if (!response.ok) throw new ApiFailure(response.status, await response.json().catch(() => null));
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    const parser = new SCEvents.EventParser();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        for (const event of parser.feed(value)) {
          const data = JSON.parse(event.data);
          if (event.event === "plan") data.steps.forEach((name) => showStep({ name, status: "pending" }));
          else if (event.event === "step") showStep(data);
          else if (event.event === "warning") showWarning(data);
          else if (event.event === "result") return data;
        }
      }
    } finally {
      reader.cancel().catch(() => {});
    }
    return poll(job, signal); // the stream ended without a result (a proxy cut it): ask for it
  }

  async function poll(job, signal) {
    for (;;) {
      const answer = await expect("GET", jobPath(job, "?wait=20"), [200, 202], { signal });
      if (answer.status === 200) return answer.data;
    }
  }

  function setRunning(job) {
    state.job = job;
    $("cancel-button").disabled = !job;
    $("test-button").disabled = Boolean(job);
  }

  // The form as a configuration (a stored source's: empty secrets left out), or null
  // when a field cannot be read (shown).
  function readForm() {
    clearResult();
    try {
      return state.form.get(Boolean(state.source));
    } catch (error) {
      showError(error);
      return null;
    }
  }

  // Only the fields that differ from the stored source are sent as overrides: a test of the
  // source as stored is the one its history records (and a changed destination must retype secrets).
  function overrides(stored, configuration) {
    const changed = {};
    for (const [key, value] of Object.entries(configuration)) {
      if (JSON.stringify(value) !== JSON.stringify(stored ? stored[key] : undefined)) changed[key] = value;
    }
    return Object.keys(changed).length ? { configuration: changed } : {};
  }

  async function runTest() {
    const configuration = readForm();
    if (configuration === null) return;
    const body = state.source
      ? { source_id: state.source.id, ...overrides(state.source.configuration, configuration) }
      : { source_definition_id: $("definition").value, configuration };
    const controller = new AbortController();
    state.abort = controller;
    state.cancelled = null;
    $("test-button").disabled = true;
    setStatus("sending…", "running");
    let sent = false;
    try {
      const answer = await expect("POST", orgPath("/sources/test?wait=0"), [200, 202], { body });
      sent = true;
      let result = answer.data;
      if (answer.status === 202) {
        setRunning(result.job_info.job_id);
        setStatus("running…", "running");
        result = await follow(result.job_info.job_id, controller.signal);
      }
      showResult(result);
    } catch (error) {
      if (error.name === "AbortError" && state.cancelled) showResult(state.cancelled);
      else {
        setStatus("", "");
        showError(error);
      }
    } finally {
      setRunning(null);
      state.abort = null;
      // A typed password stays on the page no longer than the test it was typed for.
      if (sent) state.form.clearSecrets();
    }
  }

  async function cancelTest() {
    const job = state.job;
    if (!job) return;
    $("cancel-button").disabled = true;
    setStatus("cancelling…", "running");
    try {
      const answer = await api("DELETE", jobPath(job));
      if (answer.status === 200) {
        state.cancelled = answer.data; // the final result: stop following
        state.abort?.abort();
      } else if (answer.status === 409) {
        // It had ended, or others' identical requests share it: it goes on, to its result.
        setStatus((answer.data && answer.data.error && answer.data.error.message) || "the test had already ended", "");
      } else if (answer.status !== 202) {
        throw new ApiFailure(answer.status, answer.data);
      }
    } catch (error) {
      showError(error);
      $("cancel-button").disabled = !state.job;
    }
  }

  // --- definitions, forms and sources ---------------------------------------------------
  // While the page redraws the form or the list, the workspace says so (aria-busy): assistive
  // technology waits for it, and so do the browser tests.
  let pending = 0;
  async function working(work) {
    pending += 1;
    $("workspace").setAttribute("aria-busy", "true");
    try {
      return await work();
    } finally {
      pending -= 1;
      if (!pending) $("workspace").removeAttribute("aria-busy");
    }
  }

  async function loadForm(definitionId) {
    const answer = await expect("GET", orgPath(`/source-definitions/${encodeURIComponent(definitionId)}/form`), [200]);
    state.form = SCForms.render($("config-fields"), answer.data);
  }

  function drawSources() {
    const list = $("source-list");
    list.replaceChildren();
    for (const source of state.sources || []) {
      // This tab's own result is the freshest; else the source's history (last_test).
      const last = state.lastResults[source.id] || source.last_test;
      const button = document.createElement("button");
      button.type = "button";
      button.className = "source" + (state.source && state.source.id === source.id ? " current" : "");
      button.dataset.sourceId = source.id;
      const name = document.createElement("span");
      name.className = "source-name";
      name.textContent = source.name;
      const kind = document.createElement("span");
      kind.className = "source-kind";
      kind.textContent = source.source_definition_id;
      const result = document.createElement("span");
      result.className = "source-result " + (last ? last.status : "untested");
      result.textContent = last ? (last.type ? `${last.status}: ${last.type}` : last.status) : "not tested yet";
      button.append(name, kind, result);
      button.addEventListener("click", () => openSource(source).catch(showError));
      const item = document.createElement("li");
      item.append(button);
      list.append(item);
    }
    $("sources-empty").hidden = Boolean(state.sources && state.sources.length);
  }

  const loadSources = () => working(async () => {
    const answer = await expect("GET", orgPath("/sources"), [200]);
    state.sources = answer.data.data;
    drawSources();
  });

  const openSource = (source) => working(async () => {
    clearResult();
    setStatus("", "");
    state.source = source;
    $("definition").value = source.source_definition_id;
    $("definition").disabled = true; // a stored source keeps its definition
    $("source-name").value = source.name;
    $("editor-title").textContent = `Source ${source.name}`;
    await loadForm(source.source_definition_id);
    state.form.set(source.configuration);
    drawSources();
  });

  const newSource = () => working(async () => {
    clearResult();
    setStatus("", "");
    state.source = null;
    $("definition").disabled = false;
    $("source-name").value = "";
    $("editor-title").textContent = "New source";
    await loadForm($("definition").value);
    drawSources();
  });

  const save = () => working(async () => {
    const configuration = readForm();
    if (configuration === null) return;
    const name = $("source-name").value.trim();
    try {
      const answer = state.source
        ? await expect("PATCH", orgPath(`/sources/${encodeURIComponent(state.source.id)}`), [200], {
          body: { name: name || state.source.name, configuration },
        })
        : await expect("POST", orgPath("/sources"), [201], {
          body: { source_definition_id: $("definition").value, name, configuration },
        });
      await loadSources();
      await openSource(answer.data);
      setStatus(`saved ${answer.data.name}`, "saved");
    } catch (error) {
      showError(error);
    }
  });

  // --- signing in -------------------------------------------------------------------------
  const signIn = (key) => working(async () => {
    state.key = key;
    const answer = await api("GET", "/console/session");
    if (answer.status !== 200) {
      state.key = null;
      sessionStorage.removeItem(KEY);
      throw new ApiFailure(answer.status, answer.data);
    }
    sessionStorage.setItem(KEY, key);
    state.org = answer.data.organization_id;
    $("who").textContent = `${answer.data.organization_name} (${state.org})`;
    $("sign-in-panel").hidden = true;
    $("workspace").hidden = false;
    $("sign-out").hidden = false;
    const definitions = await expect("GET", orgPath("/source-definitions"), [200]);
    state.definitions = definitions.data.data;
    $("definition").replaceChildren(...state.definitions.map((d) => new Option(`${d.name} (${d.id})`, d.id)));
    await Promise.all([newSource(), loadSources()]);
    $("definition").focus();
  });

  function signOut() {
    sessionStorage.removeItem(KEY);
    sessionStorage.removeItem(RESULTS);
    window.location.reload();
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("sign-in-form").addEventListener("submit", (event) => {
      event.preventDefault();
      $("sign-in-error").textContent = "";
      const input = $("api-key");
      const key = input.value.trim();
      input.value = "";
      signIn(key).catch((error) => { $("sign-in-error").textContent = error.message; });
    });
    $("sign-out").addEventListener("click", signOut);
    $("definition").addEventListener("change", () => newSource().catch(showError));
    $("new-source").addEventListener("click", () => newSource().catch(showError));
    $("source-form").addEventListener("submit", (event) => {
      event.preventDefault();
      runTest();
    });
    $("cancel-button").addEventListener("click", cancelTest);
    $("save-button").addEventListener("click", save);
    const key = sessionStorage.getItem(KEY);
    if (key) signIn(key).catch((error) => { $("sign-in-error").textContent = error.message; });
  });
})();
