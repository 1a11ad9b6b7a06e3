/* Keyboard-first labelling screen (pairwise and single-image). Vanilla JS, no build step.
 *
 * The page talks to /api/annotate/<project>/<queue>/{next,labels,undo}/ with the session cookie
 * and the CSRF token. The item after the one on screen is claimed and its images preloaded in
 * advance, so answering swaps the screen at once; the label is saved in the background (and
 * retried: the server stores one label per item and annotator, so a retry is harmless).
 */
(function () {
  "use strict";
  const root = document.getElementById("labeller");
  if (!root) return;
  const kind = root.dataset.kind;
  const csrf = root.querySelector("input[name=csrfmiddlewaretoken]").value;
  const $ = (id) => document.getElementById(id);
  const statusEl = $("lab-status");
  const stage = $("lab-stage");
  const controls = $("lab-controls");
  const help = $("lab-help");
  const doneEl = $("lab-done");

  let current = null;        // task payload on screen
  let upcoming = [];         // claimed and preloaded items to show next
  let shownAt = 0;
  let tags = new Set();
  let answers = {};          // single-image answers
  let pending = Promise.resolve();  // label saves, in order
  let fetching = null;
  const saving = new Set();     // assignment ids whose label is being saved
  const submitted = new Set();  // assignment ids answered on this page (never shown again)
  let exhausted = false;
  let busy = false;          // an undo in flight: ignore keys

  function setStatus(text, isError) {
    statusEl.textContent = text || "";
    statusEl.classList.toggle("error", !!isError);
    statusEl.hidden = !text;
  }

  async function api(url, options) {
    const opts = Object.assign({credentials: "same-origin", headers: {}}, options || {});
    opts.headers = Object.assign({"Accept": "application/json"}, opts.headers);
    if (opts.method === "POST") {
      opts.headers["X-CSRFToken"] = csrf;
      opts.headers["Content-Type"] = "application/json";
    }
    const response = await fetch(url, opts);
    let body = null;
    if (response.status !== 204) {
      try { body = await response.json(); } catch (e) { body = null; }
    }
    return {status: response.status, ok: response.ok, body: body};
  }

  function preload(task) {
    const urls = [task.original, task.a, task.b, task.image].filter(Boolean);
    return Promise.all(urls.map((url) => new Promise((resolve) => {
      const img = new Image();
      img.onload = img.onerror = resolve;
      img.src = url;
    })));
  }

  function onScreenIds() {
    return [current, ...upcoming].filter(Boolean).map((t) => t.assignment);
  }

  // Claim one more item and preload its images. Items on screen, queued, or whose label is being
  // saved are excluded; an answer that raced with a save is dropped and asked again.
  async function claimOne() {
    for (let tries = 0; tries < 5; tries++) {
      const exclude = onScreenIds().concat(Array.from(saving));
      const res = await api(root.dataset.nextUrl + "?exclude=" + exclude.join(","));
      if (res.status === 204) { exhausted = true; return; }
      if (!res.ok) throw new Error((res.body && res.body.detail) || ("HTTP " + res.status));
      const id = res.body.assignment;
      if (submitted.has(id) || onScreenIds().includes(id)) { await pending; continue; }
      await preload(res.body);
      if (!onScreenIds().includes(id) && !submitted.has(id)) upcoming.push(res.body);
      return;
    }
  }

  function fetchNext() {
    if (fetching || exhausted) return fetching || Promise.resolve();
    fetching = claimOne()
      .catch((err) => setStatus("Could not load the next item: " + err.message, true))
      .finally(() => { fetching = null; });
    return fetching;
  }

  function render() {
    tags = new Set();
    answers = {};
    root.querySelectorAll(".tag").forEach((b) => b.setAttribute("aria-pressed", "false"));
    root.querySelectorAll(".lab-q button").forEach((b) => b.classList.remove("chosen"));
    if (!current) {
      stage.hidden = true;
      controls.hidden = true;
      setStatus(exhausted ? "All done: there is nothing left for you in this queue. Thank you!" : "Loading…");
      return;
    }
    $("img-original").src = current.original;
    $("lab-product").textContent = current.product.title + " (" + current.product.category + ")";
    if (kind === "pair") {
      $("img-a").src = current.a;
      $("img-b").src = current.b;
    } else {
      $("img-image").src = current.image;
    }
    root.dataset.assignment = current.assignment;
    stage.hidden = false;
    controls.hidden = false;
    shownAt = performance.now();
  }

  async function advance() {
    current = upcoming.shift() || null;
    if (!current && !exhausted) {
      render();
      await fetchNext();
      current = upcoming.shift() || null;
    }
    render();
    if (current && !statusEl.classList.contains("error")) setStatus("");
    fetchNext();
  }

  function save(task, payload) {
    saving.add(task.assignment);
    submitted.add(task.assignment);
    const body = JSON.stringify(Object.assign({assignment: task.assignment}, payload));
    const attempt = async (tries) => {
      try {
        const res = await api(root.dataset.submitUrl, {method: "POST", body: body});
        if (res.ok) {
          if (res.status === 201) doneEl.textContent = String(Number(doneEl.textContent) + 1);
          return;
        }
        const detail = (res.body && res.body.detail) || ("HTTP " + res.status);
        if (res.status >= 500 && tries > 0) return attempt(tries - 1);
        submitted.delete(task.assignment);
        setStatus("Label for “" + task.product.title + "” not saved: " + detail, true);
      } catch (err) {  // network error: retry, the server keeps one label per item
        if (tries > 0) {
          await new Promise((r) => setTimeout(r, 500));
          return attempt(tries - 1);
        }
        submitted.delete(task.assignment);
        setStatus("Label for “" + task.product.title + "” not saved (network): " + err.message, true);
      }
    };
    pending = pending.then(() => attempt(3)).finally(() => saving.delete(task.assignment));
    return pending;
  }

  function answer(payload) {
    if (!current || busy) return;
    const task = current;
    payload.reason_tags = Array.from(tags);
    payload.time_spent_ms = Math.round(performance.now() - shownAt);
    setStatus("");
    save(task, payload);
    advance();
  }

  async function undo() {
    if (busy) return;
    busy = true;
    setStatus("Undoing…");
    try {
      await pending;
      const res = await api(root.dataset.undoUrl, {method: "POST", body: "{}"});
      if (!res.ok) {
        setStatus((res.body && res.body.detail) || ("Undo failed (HTTP " + res.status + ")"), true);
        return;
      }
      await preload(res.body);
      submitted.delete(res.body.assignment);
      if (current) upcoming.unshift(current);
      upcoming = upcoming.filter((t) => t.assignment !== res.body.assignment);
      current = res.body;
      exhausted = false;
      doneEl.textContent = String(Math.max(0, Number(doneEl.textContent) - 1));
      render();
      setStatus("Undone: label this item again.");
    } finally {
      busy = false;
    }
  }

  function toggleTag(tag) {
    if (!current) return;
    if (tags.has(tag)) tags.delete(tag); else tags.add(tag);
    const button = root.querySelector('.tag[data-tag="' + tag + '"]');
    if (button) button.setAttribute("aria-pressed", tags.has(tag) ? "true" : "false");
  }

  function answerQuestion(question, value) {
    if (!current) return;
    answers[question] = value;
    root.querySelectorAll('.lab-q[data-question="' + question + '"] button').forEach((b) => {
      b.classList.toggle("chosen", b.dataset.answer === String(value));
    });
    if ("background_appropriate" in answers && "product_intact" in answers) {
      answer({background_appropriate: answers.background_appropriate, product_intact: answers.product_intact});
    }
  }

  function toggleHelp(show) {
    help.hidden = show === undefined ? !help.hidden : !show;
  }

  const tagKeys = {};
  root.querySelectorAll(".tag").forEach((b) => { tagKeys[b.dataset.key] = b.dataset.tag; });
  const pairKeys = {"1": "a", "ArrowLeft": "a", "2": "b", "ArrowRight": "b", "3": "tie", "4": "both_bad"};
  const imageKeys = {"1": ["background_appropriate", true], "2": ["background_appropriate", false],
                     "3": ["product_intact", true], "4": ["product_intact", false]};

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.target && /^(INPUT|TEXTAREA|SELECT)$/.test(event.target.tagName)) return;
    const key = event.key;
    if (key === "?") { toggleHelp(); event.preventDefault(); return; }
    if (key === "Escape") { toggleHelp(false); return; }
    if (!help.hidden) return;
    if (key === "z" || key === "Z") { undo(); event.preventDefault(); return; }
    const lower = key.length === 1 ? key.toLowerCase() : key;
    if (tagKeys[lower]) { toggleTag(tagKeys[lower]); event.preventDefault(); return; }
    if (kind === "pair" && pairKeys[key]) { answer({choice: pairKeys[key]}); event.preventDefault(); return; }
    if (kind === "image" && imageKeys[key]) { answerQuestion(...imageKeys[key]); event.preventDefault(); }
  });

  root.addEventListener("click", (event) => {
    const button = event.target.closest("button");
    if (!button) return;
    if (button.dataset.choice) answer({choice: button.dataset.choice});
    else if (button.dataset.tag) toggleTag(button.dataset.tag);
    else if (button.dataset.answer) answerQuestion(button.closest(".lab-q").dataset.question, button.dataset.answer === "true");
    else if (button.dataset.action === "undo") undo();
    else if (button.dataset.action === "help") toggleHelp();
    button.blur();
  });
  help.addEventListener("click", () => toggleHelp(false));

  advance();
})();
