// The evaluator screen (服务评价器). Plain JS, no framework; runs under the portal's CSP.
//
// Screens: pair -> idle -> serving -> rate -> thanks -> idle. The device token, the
// cached device info, the current session and the queue of ratings not yet sent live in
// localStorage, so a reload (or a language switch) never loses a press or skips the
// rating prompt. Every press is queued first and sent afterwards with the same
// idempotency key until the server has it, so it is recorded exactly once.
(function () {
  "use strict";

  const API = {
    device: "/api/v1/counter/device",
    sessions: "/api/v1/counter/sessions",
    ratings: "/api/v1/counter/ratings",
  };
  const KEY = {
    token: "gp.counter.token",
    device: "gp.counter.device",
    queue: "gp.counter.queue",
    current: "gp.counter.current",
    choice: "gp.counter.choice",
  };
  const REQUEST_TIMEOUT_MS = 10000;
  const ARM_DELAY_MS = 700; // a tap on "end service" must not land on a rating button

  const root = document.getElementById("counter");
  const T = JSON.parse(document.getElementById("counter-i18n").textContent);
  const locale = root.dataset.locale;
  const returnMs = Number(root.dataset.returnSeconds) * 1000;
  const retryMs = Number(root.dataset.retrySeconds) * 1000;

  const $ = (selector, scope) => (scope || root).querySelector(selector);
  const $$ = (selector, scope) => Array.from((scope || root).querySelectorAll(selector));
  const testid = (id) => $(`[data-testid="${id}"]`);

  // ---- storage ---------------------------------------------------------------------
  function load(key, fallback) {
    try {
      const raw = localStorage.getItem(key);
      return raw === null ? fallback : JSON.parse(raw);
    } catch (err) {
      return fallback;
    }
  }
  function save(key, value) {
    if (value === null || value === undefined) localStorage.removeItem(key);
    else localStorage.setItem(key, JSON.stringify(value));
  }
  const queue = () => load(KEY.queue, []);

  // ---- small helpers ---------------------------------------------------------------
  function fill(template, params) {
    return template.replace(/%\((\w+)\)s/g, (_, name) => String(params[name]));
  }

  function uuid() {
    if (window.crypto && typeof crypto.randomUUID === "function") return crypto.randomUUID();
    const b = crypto.getRandomValues(new Uint8Array(16)); // plain-http fallback
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }

  // The press time in local time with its offset, e.g. 2026-11-21T10:15:00.123+08:00.
  function isoWithOffset(d) {
    const p = (n, w) => String(Math.abs(n)).padStart(w || 2, "0");
    const off = -d.getTimezoneOffset();
    return (
      `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}` +
      `T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}` +
      `${off >= 0 ? "+" : "-"}${p(Math.floor(Math.abs(off) / 60))}:${p(Math.abs(off) % 60)}`
    );
  }

  // The device's clock may be wrong; a press is stamped with the server's time as seen
  // through the HTTP Date header (a second's precision is plenty), so the server never
  // refuses it as "in the future" or "before the session".
  let clockOffsetMs = Number(load("gp_counter_clock_offset", 0)) || 0;

  function noteServerClock(response) {
    const server = Date.parse(response.headers.get("Date") || "");
    if (Number.isNaN(server)) return;
    clockOffsetMs = server + 500 - Date.now();
    save("gp_counter_clock_offset", clockOffsetMs);
  }

  function serverNow() {
    return new Date(Date.now() + clockOffsetMs);
  }

  function showError(el, message) {
    el.textContent = message || "";
    el.hidden = !message;
  }

  // ---- the API ---------------------------------------------------------------------
  // Resolves with {status, data} for any HTTP answer; rejects when the network fails.
  async function api(method, path, body, token) {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), REQUEST_TIMEOUT_MS);
    const headers = {
      Accept: "application/json",
      "Accept-Language": locale === "en" ? "en" : "zh-CN",
      Authorization: `Bearer ${token || load(KEY.token, "")}`,
    };
    if (body) headers["Content-Type"] = "application/json";
    try {
      const response = await fetch(path, {
        method,
        headers,
        body: body ? JSON.stringify(body) : undefined,
        cache: "no-store",
        signal: controller.signal,
      });
      noteServerClock(response);
      let data = null;
      try {
        data = await response.json();
      } catch (err) {
        data = null;
      }
      return { status: response.status, data };
    } finally {
      clearTimeout(timer);
    }
  }

  function messageOf(result) {
    const error = result.data && result.data.error;
    return (error && error.message) || T.server_error;
  }

  // ---- screens ---------------------------------------------------------------------
  function show(name) {
    root.dataset.screen = name;
    $$("[data-screen]", $(".stage-area")).forEach((s) => {
      s.hidden = s.dataset.screen !== name;
    });
    const heading = $(`[data-screen="${name}"] h1`);
    if (heading) heading.focus({ preventScroll: true });
  }

  function renderPlace(device) {
    const place = testid("device-place");
    if (!device) {
      place.hidden = true;
      return;
    }
    $('[data-field="insurer"]', place).textContent = device.insurer;
    $('[data-field="branch"]', place).textContent = device.branch;
    $('[data-field="label"]', place).textContent =
      device.label || fill(T.device_fallback, { id: device.device_id });
    place.hidden = false;
  }

  // ★ icons for decoration, and the level in words (or "new staff") for everyone.
  function renderStars(el, staff) {
    el.replaceChildren();
    el.classList.add("stars");
    el.classList.toggle("new", staff.new || !staff.stars);
    if (!staff.new && staff.stars) {
      const icons = document.createElement("span");
      icons.className = "star-icons";
      icons.setAttribute("aria-hidden", "true");
      for (let i = 1; i <= 5; i += 1) {
        const star = document.createElement("span");
        star.textContent = "★";
        if (i > staff.stars) star.className = "off";
        icons.append(star);
      }
      el.append(icons);
    }
    const text = document.createElement("span");
    text.className = "star-text";
    text.dataset.testid = "stars-text";
    if (staff.new || !staff.stars) text.textContent = T.new_staff;
    else text.textContent = staff.stars === 1 ? T.star_one : fill(T.star_many, { num: staff.stars });
    el.append(text);
  }

  // ---- pairing ---------------------------------------------------------------------
  function showPair(message) {
    renderPlace(null);
    showError(testid("pair-error"), message);
    show("pair");
    testid("pair-token").focus();
  }

  async function pair(event) {
    event.preventDefault();
    const input = testid("pair-token");
    const button = testid("pair-submit");
    const error = testid("pair-error");
    const token = input.value.trim();
    if (!token) {
      showError(error, T.pair_empty);
      return;
    }
    button.disabled = true;
    try {
      const result = await api("GET", API.device, null, token);
      if (result.status === 200) {
        save(KEY.token, token);
        save(KEY.device, result.data);
        input.value = "";
        showError(error, "");
        enterIdle();
      } else {
        showError(error, result.status === 401 ? T.pair_refused : messageOf(result));
      }
    } catch (err) {
      showError(error, T.pair_offline);
    } finally {
      button.disabled = false;
    }
  }

  // ---- idle: who, stage, ticket ----------------------------------------------------
  let choice = load(KEY.choice, { staff_no: null, stage: null });
  let pendingStart = null; // {fingerprint, key}: a retried start reuses its key

  function renderStaff(device) {
    const list = testid("staff-list");
    const empty = testid("staff-empty");
    list.replaceChildren();
    const staff = device ? device.staff : [];
    if (choice.staff_no && !staff.some((s) => s.staff_no === choice.staff_no)) {
      choice.staff_no = null;
    }
    staff.forEach((s) => {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "staff-option";
      button.dataset.testid = "staff-option";
      button.dataset.staffNo = s.staff_no;
      button.setAttribute("aria-pressed", String(s.staff_no === choice.staff_no));
      const name = document.createElement("span");
      name.className = "staff-name";
      name.textContent = s.name;
      const number = document.createElement("span");
      number.className = "staff-no";
      number.textContent = fill(T.staff_no, { staff_no: s.staff_no });
      const stars = document.createElement("span");
      renderStars(stars, s);
      button.append(name, number, stars);
      list.append(button);
    });
    empty.textContent = device ? T.no_staff : T.staff_offline;
    empty.hidden = staff.length > 0;
  }

  function renderChoice() {
    $$(".staff-option").forEach((b) => {
      b.setAttribute("aria-pressed", String(b.dataset.staffNo === choice.staff_no));
    });
    $$(".stage-option").forEach((b) => {
      b.setAttribute("aria-pressed", String(b.dataset.stage === choice.stage));
    });
    const ready = Boolean(choice.staff_no && choice.stage);
    testid("start-service").disabled = !ready;
    testid("start-hint").textContent = ready ? T.ready : T.choose_first;
    save(KEY.choice, choice);
  }

  function enterIdle() {
    const device = load(KEY.device, null);
    renderPlace(device);
    renderStaff(device);
    renderChoice();
    testid("ticket").value = "";
    showError(testid("start-error"), "");
    show("idle");
    refreshDevice();
  }

  // Staff and stars change now and then: refresh quietly, keep the cached copy offline.
  async function refreshDevice() {
    let result;
    try {
      result = await api("GET", API.device);
    } catch (err) {
      return;
    }
    if (root.dataset.screen !== "idle") return;
    if (result.status === 200) {
      save(KEY.device, result.data);
      renderPlace(result.data);
      renderStaff(result.data);
      renderChoice();
    } else if (result.status === 401) {
      save(KEY.token, null);
      save(KEY.device, null);
      showPair(T.token_revoked);
    }
  }

  async function startService() {
    const error = testid("start-error");
    const button = testid("start-service");
    const ticket = testid("ticket").value.trim().toUpperCase() || null;
    const fingerprint = [choice.staff_no, choice.stage, ticket].join("|");
    if (!pendingStart || pendingStart.fingerprint !== fingerprint) {
      pendingStart = { fingerprint, key: uuid() };
    }
    const body = {
      staff_no: choice.staff_no,
      stage: choice.stage,
      ticket,
      idempotency_key: pendingStart.key,
    };
    button.disabled = true;
    showError(error, "");
    let result;
    try {
      result = await api("POST", API.sessions, body);
    } catch (err) {
      showError(error, T.start_offline);
      return;
    } finally {
      button.disabled = false;
    }
    if (result.status === 200 || result.status === 201) {
      pendingStart = null;
      const current = {
        phase: "serving",
        session_id: result.data.session_id,
        staff: result.data.staff,
        stage: choice.stage,
        ticket,
      };
      save(KEY.current, current);
      showServing(current);
    } else if (result.status === 401) {
      showError(error, T.token_revoked);
    } else {
      showError(error, result.status >= 500 ? T.server_error : messageOf(result));
    }
  }

  // ---- serving and rating ----------------------------------------------------------
  function showServing(current) {
    const staff = current.staff;
    testid("serving-initial").textContent = Array.from(staff.name)[0] || "";
    testid("serving-name").textContent = staff.name;
    testid("serving-staff-no").textContent = fill(T.staff_no, { staff_no: staff.staff_no });
    renderStars(testid("serving-stars"), staff);
    testid("serving-stage").textContent = T.stages[current.stage] || current.stage;
    const ticket = testid("serving-ticket");
    ticket.textContent = current.ticket ? fill(T.ticket, { ticket: current.ticket }) : "";
    ticket.hidden = !current.ticket;
    show("serving");
  }

  function endService() {
    const current = load(KEY.current, null);
    if (!current) {
      enterIdle();
      return;
    }
    current.phase = "rate";
    save(KEY.current, current);
    showRate(current);
  }

  let armTimer = null;
  function showRate(current) {
    const staff = current.staff;
    testid("rate-who").textContent = [
      staff.name,
      fill(T.staff_no, { staff_no: staff.staff_no }),
      T.stages[current.stage] || current.stage,
    ].join(" · ");
    const buttons = $$(".rate");
    $(".rate-buttons").classList.remove("chosen");
    buttons.forEach((b) => {
      b.disabled = true;
      b.classList.remove("picked");
    });
    show("rate");
    clearTimeout(armTimer);
    armTimer = setTimeout(() => {
      buttons.forEach((b) => {
        b.disabled = false;
      });
    }, ARM_DELAY_MS);
  }

  function rate(button) {
    const current = load(KEY.current, null);
    if (!current || current.phase !== "rate" || button.disabled) return;
    $$(".rate").forEach((b) => {
      b.disabled = true;
    });
    button.classList.add("picked");
    $(".rate-buttons").classList.add("chosen");
    const level = button.dataset.level;
    // Stored first, then sent: the press survives a network failure or a reload.
    save(KEY.queue, [
      ...queue(),
      {
        session_id: current.session_id,
        level,
        idempotency_key: uuid(),
        occurred_at: isoWithOffset(serverNow()),
      },
    ]);
    save(KEY.current, null);
    renderBanner();
    testid("thanks-level").textContent = T.levels[level];
    show("thanks");
    flush();
    setTimeout(enterIdle, returnMs);
  }

  // ---- the queue of presses not yet sent --------------------------------------------
  let problem = null; // null | "offline" | "refused"
  let flushing = false;

  function renderBanner() {
    const waiting = queue().length;
    const banner = testid("offline-banner");
    root.dataset.queued = String(waiting); // observable: how many presses wait to be sent
    if (!waiting || !problem) {
      banner.hidden = true;
      return;
    }
    let text = T.refused;
    if (problem === "offline") {
      text = waiting === 1 ? T.offline_one : fill(T.offline_many, { num: waiting });
    }
    $(".banner-text", banner).textContent = text;
    banner.hidden = false;
  }

  function forget(item) {
    save(
      KEY.queue,
      queue().filter((q) => q.idempotency_key !== item.idempotency_key),
    );
  }

  // Sends every queued press; drops only what can never succeed (unknown session, already
  // rated, key conflict, expired session) with a warning, and keeps everything else
  // (network down, 401, 429, 5xx, other refusals) so no customer's press is lost quietly.
  async function flush() {
    if (flushing) return;
    flushing = true;
    let trouble = null;
    try {
      for (const item of queue()) {
        let result;
        try {
          result = await api("POST", API.ratings, item);
        } catch (err) {
          trouble = "offline";
          break;
        }
        if (result.status === 200 || result.status === 201) {
          forget(item);
        } else if (result.status === 401) {
          trouble = "refused";
          break;
        } else if (result.status === 408 || result.status === 429 || result.status >= 500) {
          trouble = "offline";
        } else if (!neverSucceeds(result)) {
          trouble = trouble || "refused";
        } else {
          console.warn("counter: the server refused a queued rating for good; dropped it", {
            status: result.status,
            error: result.data && result.data.error,
            rating: item,
          });
          forget(item);
        }
      }
    } finally {
      problem = trouble;
      flushing = false;
      renderBanner();
    }
  }

  function neverSucceeds(result) {
    const code = result.data && result.data.error && result.data.error.code;
    return result.status === 404 || result.status === 409 || code === "session_expired";
  }

  // ---- unpairing (a small link, a confirmation, and never with presses unsent) ------
  function openUnpair() {
    const dialog = testid("unpair-dialog");
    const blocked = queue().length > 0;
    $(".unpair-blocked", dialog).hidden = !blocked;
    $('[data-action="unpair"]', dialog).hidden = blocked;
    dialog.showModal();
  }

  function unpair() {
    if (queue().length > 0) return;
    [KEY.token, KEY.device, KEY.current, KEY.choice].forEach((k) => save(k, null));
    choice = { staff_no: null, stage: null };
    testid("unpair-dialog").close();
    showPair("");
  }

  // ---- wiring ----------------------------------------------------------------------
  function wire() {
    testid("pair-form").addEventListener("submit", pair);
    testid("staff-list").addEventListener("click", (event) => {
      const button = event.target.closest(".staff-option");
      if (!button) return;
      choice.staff_no = button.dataset.staffNo;
      renderChoice();
    });
    $$(".stage-option").forEach((b) =>
      b.addEventListener("click", () => {
        choice.stage = b.dataset.stage;
        renderChoice();
      }),
    );
    testid("ticket").addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !testid("start-service").disabled) startService();
    });
    testid("start-service").addEventListener("click", startService);
    testid("end-service").addEventListener("click", endService);
    $$(".rate").forEach((b) => b.addEventListener("click", () => rate(b)));
    testid("unpair").addEventListener("click", openUnpair);
    $('[data-action="cancel"]').addEventListener("click", () => testid("unpair-dialog").close());
    $('[data-action="unpair"]').addEventListener("click", unpair);
    window.addEventListener("online", flush);
    window.addEventListener("storage", renderBanner);
    setInterval(() => {
      if (queue().length) flush();
    }, retryMs);
  }

  function resume() {
    if (!load(KEY.token, null)) {
      showPair("");
      return;
    }
    const current = load(KEY.current, null);
    const queued = current && queue().some((q) => q.session_id === current.session_id);
    renderPlace(load(KEY.device, null));
    if (current && current.phase === "serving") showServing(current);
    else if (current && current.phase === "rate" && !queued) showRate(current);
    else {
      save(KEY.current, null);
      enterIdle();
    }
  }

  wire();
  resume();
  flush();
})();
