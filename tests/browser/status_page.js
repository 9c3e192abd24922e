#!/usr/bin/env node
/*
 * status_page.js - msaproxy's status page in a real browser: Debian's
 * chromium (/usr/bin/chromium), headless, driven by playwright-core (no
 * browser download).  Run by tests/integration/test_status_browser.py,
 * which starts the proxy, makes the traffic, the bans and the disabled
 * backend, and passes what the page must show:
 *
 *   node status_page.js EXPECT.json
 *
 * EXPECT.json: {url, chromium, screenshots: [paths], ctl: [argv of a
 * msaproxyctl ban to run while the page is open], version, workers,
 * listeners: [addr], tls13_min, auth: {PLAIN: [ok, failed], ...},
 * limits: {kind: n}, backends: {addr: "up"|"down"|"disabled"},
 * messages (relayed; default 1), refusals: {addr: "reason n, ..." or "-"}, tls_resumed_min,
 * latency: {addr: regex of "p50 / p99"}, changes: {addr: regex of the
 * last change}, users: [[login, "use%", messages left]],
 * bans: {prefix: [source, ttl_regex]}, new_ban, admin: {user, password,
 * ban, backend} (metrics.admin on: the admin view is driven too)}
 *
 * Exit 0 when every check holds, 1 with the failed check on stderr.
 */
"use strict";
const fs = require("fs");
const os = require("os");
const path = require("path");
const { execFileSync } = require("child_process");
const { chromium } = require("playwright-core");

const exp = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const STEP_MS = 15000; // bound on every wait

function check(cond, what) {
  if (!cond) throw new Error("check failed: " + what);
}

async function rows(page, section) {
  return page.$$eval(`#${section} tbody tr`, (trs) =>
    trs.map((tr) => Array.from(tr.children, (td) => td.textContent.trim())));
}

async function run() {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "msaproxy-chromium-"));
  const ctx = await chromium.launchPersistentContext(profile, {
    executablePath: exp.chromium,
    headless: true,
    viewport: { width: 1280, height: 900 },
    args: ["--headless", "--no-sandbox", "--disable-gpu",
           "--disable-background-networking", "--disable-component-update",
           "--disable-sync", "--no-first-run"],
  });
  const problems = [];
  const origin = new URL(exp.url).origin;
  try {
    const page = await ctx.newPage();
    page.setDefaultTimeout(STEP_MS);
    page.on("pageerror", (e) => problems.push("page error: " + e.message));
    page.on("console", (m) => {
      if (m.type() === "error") problems.push("console error: " + m.text());
    });
    page.on("request", (r) => {
      if (!r.url().startsWith(origin + "/"))
        problems.push("request outside the proxy: " + r.url());
    });

    const resp = await page.goto(exp.url);
    check(resp.status() === 200, "GET /status answers 200");
    await page.waitForSelector("body[data-refreshes]");

    // Node
    const text = (sel) => page.textContent(sel).then((t) => t.trim());
    check((await text("#state")) === "running", "state running");
    check((await text("#node-version")) === exp.version, "version");
    check((await text("#node-generation")) === "1", "generation 1");
    check((await text("#node-workers")) === String(exp.workers), "workers");
    check((await text("#node-reload")) === "none yet", "no reload yet");
    check(/^\d+s$|^\d+m \d+s$/.test(await text("#node-uptime")), "uptime shown");
    check((await text("#node-cluster")).startsWith("off"), "cluster off");
    check(new RegExp(`open, .* accepted, ${exp.messages || 1} relayed$`)
            .test(await text("#node-sessions")),
          "sessions and the messages: " + (await text("#node-sessions")));

    // Listeners: both, with their modes and sessions
    const ls = await rows(page, "listeners");
    for (const [addr, mode] of exp.listeners) {
      const r = ls.find((x) => x[0] === addr);
      check(r && r[1] === mode && Number(r[4].replace(/,/g, "")) >= 1,
            `listener ${addr} ${mode}: ${JSON.stringify(r)}`);
    }

    // ... open now (none), arrivals per second, refusals by reason
    for (const [addr, refused] of Object.entries(exp.refusals || {})) {
      const r = ls.find((x) => x[0] === addr);
      check(r && r[2] === "0" && /^\d+\.\d\d$/.test(r[3]) && r[r.length - 1] === refused,
            `listener ${addr} open, per s, refusals: ${JSON.stringify(r)}`);
    }

    // TLS and AUTH
    const tls = await rows(page, "tls");
    const v13 = tls.find((x) => x[0] === "TLSv1.3");
    check(v13 && Number(v13[1]) >= exp.tls13_min, "TLSv1.3 handshakes " + JSON.stringify(tls));
    if (exp.tls_resumed_min) {
      const m = /^(\d+) \((\d+)%\)$/.exec(v13[3]);
      check(m && Number(m[1]) >= exp.tls_resumed_min &&
            Number(m[2]) === Math.round(100 * Number(m[1]) / Number(v13[1])),
            "TLSv1.3 resumed and its share " + JSON.stringify(v13));
    }
    const certs = await rows(page, "certs");
    check(certs.length === 1 && certs[0][0] === exp.cert && /in \d+d/.test(certs[0][1]),
          "certificate and its expiry " + JSON.stringify(certs));
    const auth = await rows(page, "auth");
    for (const [mech, [ok, bad]] of Object.entries(exp.auth)) {
      const r = auth.find((x) => x[0] === mech);
      check(r && r[1] === String(ok) && r[2] === String(bad) &&
            /^\d+\.\d$/.test(r[3]) && /^\d+\.\d$/.test(r[4]),
            `AUTH ${mech}: ${JSON.stringify(r)}`);
    }

    // Limits
    const lim = await rows(page, "limits");
    for (const [kind, n] of Object.entries(exp.limits)) {
      const r = lim.find((x) => x[0] === kind);
      check(r && Number(r[1]) >= n, `limit ${kind}: ${JSON.stringify(lim)}`);
    }

    // Backends
    const bs = await rows(page, "backends");
    for (const [addr, state] of Object.entries(exp.backends)) {
      const r = bs.find((x) => x[0] === addr);
      check(r && r[1] === state, `backend ${addr} ${state}: ${JSON.stringify(r)}`);
    }
    for (const [addr, re] of Object.entries(exp.latency || {})) {
      const r = bs.find((x) => x[0] === addr);
      check(r && new RegExp(re).test(r[4]) && new RegExp(re).test(r[5]),
            `backend ${addr} p50 / p99: ${JSON.stringify(r)}`);
    }
    for (const [addr, re] of Object.entries(exp.changes || {})) {
      const r = bs.find((x) => x[0] === addr);
      check(r && new RegExp(re).test(r[6]), `backend ${addr} last change: ${JSON.stringify(r)}`);
    }
    const cls = await page.$$eval("#backends tbody tr td:nth-child(2)",
                                  (tds) => tds.map((td) => td.className));
    check(cls.includes("off") && cls.includes("up"), "backend states styled");

    // Bans
    const bans = await rows(page, "bans");
    for (const [prefix, [source, ttl]] of Object.entries(exp.bans)) {
      const r = bans.find((x) => x[0] === prefix);
      check(r && r[2] === source && new RegExp(ttl).test(r[3]) && r[4] === "-",
            `ban ${prefix} (no XDP here: no drops): ${JSON.stringify(r)}`);
    }
    check(!bans.find((x) => x[0] === exp.new_ban), "the new ban not there yet");

    // Users nearest their limits: login, use, messages left
    if (exp.users) {
      const us = await rows(page, "users");
      check(us.length === exp.users.length, "users " + JSON.stringify(us));
      exp.users.forEach(([login, use, left], i) => {
        check(us[i][0] === login && us[i][1] === use && us[i][2] === left,
              `user ${login}: ${JSON.stringify(us[i])}`);
      });
    }

    // History: the four charts are there (points come every 10 s)
    check((await page.$$("#history .chart svg")).length === 4, "four charts");
    check((await page.$$("#chart-sessions svg polyline")).length === 1,
          "the sessions chart has its line");
    check(/^\d+\.\d\d$/.test(await text("#chart-auth .last")), "last AUTH failure rate shown");

    // It refreshes: a ban made now shows up without reloading the page.
    const before = Number(await page.getAttribute("body", "data-refreshes"));
    execFileSync(exp.ctl[0], exp.ctl.slice(1), { timeout: STEP_MS });
    await page.waitForFunction(
      (prefix) => Array.from(document.querySelectorAll("#bans tbody tr td:first-child"))
        .some((td) => td.textContent === prefix),
      exp.new_ban, { timeout: STEP_MS });
    const after = Number(await page.getAttribute("body", "data-refreshes"));
    check(after > before, `refreshed (${before} -> ${after})`);

    for (const shot of exp.screenshots)
      await page.screenshot({ path: shot, fullPage: true });
    if (exp.admin) await adminPhase(exp, problems);
    check(problems.length === 0, problems.join("; "));
    console.log(JSON.stringify({ ok: true, refreshes: after, shots: exp.screenshots }));
  } finally {
    await ctx.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
}

/*
 * The admin view (/status?admin) with the login (HTTP basic auth, as a
 * browser asks for it; test_status.py checks the 401 without it): a ban
 * through the form and a backend disabled through its button, seen on the
 * page; the same POST without the page's CSRF token refused.
 */
async function adminPhase(exp, problems) {
  const url = exp.url.replace("/status?", "/status?admin&");
  const actx = await chromium.launch({
    executablePath: exp.chromium, headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu",
           "--disable-background-networking", "--disable-component-update",
           "--disable-sync", "--no-first-run"],
  });
  try {
    const c = await actx.newContext({
      httpCredentials: { username: exp.admin.user, password: exp.admin.password },
    });
    const page = await c.newPage();
    page.setDefaultTimeout(STEP_MS);
    page.on("pageerror", (e) => problems.push("admin page error: " + e.message));
    await page.goto(url);
    await page.waitForSelector("#ban-form", { state: "visible" });
    check((await page.textContent("#admin-user")).includes(exp.admin.user), "admin user shown");

    // A ban through the form.
    await page.fill("#ban-prefix", exp.admin.ban);
    await page.fill("#ban-ttl", "5m");
    await page.click("#ban-submit");
    await page.waitForFunction(
      (prefix) => Array.from(document.querySelectorAll("#bans tbody tr td:first-child"))
        .some((td) => td.textContent === prefix), exp.admin.ban);
    check(/done/.test(await page.textContent("#admin-msg")), "ban done message");

    // A backend disabled through its button.
    await page.click(`#backends button[data-op="disable"][data-target="${exp.admin.backend}"]`);
    await page.waitForSelector(`#backends button[data-op="enable"][data-target="${exp.admin.backend}"]`);
    const bs = await rows(page, "backends");
    const r = bs.find((x) => x[0] === exp.admin.backend);
    check(r && r[1] === "disabled", "backend disabled from the page " + JSON.stringify(r));

    // The same action with a wrong token, from the page's own origin: 403.
    const res = await page.evaluate(async (target) => {
      const body = new URLSearchParams({ csrf: "0".repeat(64), op: "ban", target });
      const r = await fetch("status/action", { method: "POST", body,
        headers: { "Content-Type": "application/x-www-form-urlencoded" } });
      return [r.status, await r.text()];
    }, "203.0.113.99/32");
    check(res[0] === 403 && /CSRF/.test(res[1]), "a wrong token is refused " + JSON.stringify(res));
    // And with the page's token (read from the JSON as the page does): done.
    const ok = await page.evaluate(async (target) => {
      const d = await (await fetch("status.json?admin=1")).json();
      const body = new URLSearchParams({ csrf: d.admin.csrf, op: "unban", target });
      const r = await fetch("status/action", { method: "POST", body,
        headers: { "Content-Type": "application/x-www-form-urlencoded" } });
      return r.status;
    }, exp.admin.ban);
    check(ok === 200, "unban with the token: " + ok);
    for (const shot of exp.admin_screenshots || [])
      await page.screenshot({ path: shot, fullPage: true });
  } finally {
    await actx.close();
  }
}

run().catch((e) => {
  console.error(e && e.stack ? e.stack : String(e));
  process.exit(1);
});
