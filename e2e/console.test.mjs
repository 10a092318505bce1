// Browser test of the socbridge web console: headless Chromium (Debian's, never a download)
// driven by playwright-core against a running `socbridge serve`.
//
// Environment: BASE_URL, ADMIN_TOKEN, ANALYST_TOKEN, ANALYST_TENANT (set by
// scripts/browser-test.sh), SCREENSHOT_DIR (default ../target/screenshots), CHROMIUM (default
// /usr/bin/chromium). Every step saves a screenshot; the first failure ends the run with a
// message naming the step, a screenshot of the page as it was, and exit code 1.

import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const need = (name) => {
  const v = process.env[name];
  if (!v) {
    console.error(`browser test: ${name} is not set (run scripts/browser-test.sh)`);
    process.exit(2);
  }
  return v;
};
const BASE = need("BASE_URL").replace(/\/$/, "");
const ADMIN = need("ADMIN_TOKEN");
const ANALYST = need("ANALYST_TOKEN");
const ANALYST_TENANT = need("ANALYST_TENANT");
const SHOTS = process.env.SCREENSHOT_DIR || path.join(here, "..", "target", "screenshots");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
// The longest wait for one thing to show on the page.
const WAIT_MS = 20_000;

mkdirSync(SHOTS, { recursive: true });

class Failure extends Error {}
function check(cond, what) {
  if (!cond) throw new Failure(what);
}

/// The API itself, as an independent witness of what the page shows.
async function api(pathAndQuery, token = ADMIN, init = {}) {
  const res = await fetch(`${BASE}/api/v1${pathAndQuery}`, {
    ...init,
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json", ...(init.headers || {}) },
  });
  const body = await res.json().catch(() => null);
  if (!res.ok) throw new Failure(`API ${pathAndQuery}: ${res.status} ${JSON.stringify(body)}`);
  return body;
}

/// Waits for `probe` to return something truthy, with a deadline.
async function until(what, probe, ms = WAIT_MS) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    try {
      last = await probe();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) {
      throw new Failure(`${what}: not so after ${ms / 1000} s${last instanceof Error ? ` (${last.message})` : ""}`);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

let shot = 0;
const timings = [];
async function step(page, name, fn) {
  const started = Date.now();
  process.stdout.write(`- ${name} … `);
  try {
    await fn();
  } catch (e) {
    const file = path.join(SHOTS, `failed-${String(++shot).padStart(2, "0")}-${slug(name)}.png`);
    await page.screenshot({ path: file, fullPage: true }).catch(() => {});
    console.log("FAILED");
    console.error(`\nbrowser test failed at "${name}": ${e.message}\nscreenshot: ${file}`);
    throw e;
  }
  const file = path.join(SHOTS, `${String(++shot).padStart(2, "0")}-${slug(name)}.png`);
  await page.screenshot({ path: file, fullPage: false });
  const ms = Date.now() - started;
  timings.push([name, ms]);
  console.log(`ok (${ms} ms) → ${path.relative(process.cwd(), file)}`);
}

function slug(s) {
  return s.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, "").slice(0, 48);
}

const rows = (page) => page.locator("#incident-rows tr[data-id]");

async function signIn(page, token) {
  await page.goto(BASE + "/");
  await page.locator("#token").fill(token);
  await page.locator("#signin-button").click();
  await page.locator("#app").waitFor({ state: "visible", timeout: WAIT_MS });
  await until("the incident list fills", async () => (await rows(page).count()) > 0);
}

/// No element is wider than the window: nothing scrolls sideways.
async function noHorizontalOverflow(page) {
  const { scroll, width } = await page.evaluate(() => ({
    scroll: document.documentElement.scrollWidth,
    width: window.innerWidth,
  }));
  check(scroll <= width, `the page is ${scroll} px wide in a ${width} px window (horizontal scroll)`);
}

async function main() {
  const t0 = Date.now();
  // The data first: an incident of high interest with its ServiceNow ticket, from the API.
  const target = await until(
    "a critical (or else high) incident with a ServiceNow ticket exists",
    async () => {
      const page = await api("/incidents?severity=high,critical&status=new&limit=500");
      const ready = page.items.filter((i) => i.ticket && i.ticket.sys_id && i.observables.some((o) => o.type === "hostname"));
      return ready.find((i) => i.severity === "critical") || ready[0];
    },
    90_000,
  );
  const sevLabel = target.severity === "critical" ? "Critical" : "High";
  const host = target.observables.find((o) => o.type === "hostname").value;
  console.log(`target: incident #${target.id} (${target.tenant}, ${host}, ticket ${target.ticket.number})`);

  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    // As root (CI) Chromium needs --no-sandbox.
    args: ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
  });
  const consoleErrors = [];
  try {
    // ---------------------------------------------------------------- desktop, admin
    const desk = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const page = await desk.newPage();
    // Refused requests are part of the test; anything else logged as an error is a fault.
    page.on("console", (m) => {
      if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) consoleErrors.push(m.text());
    });
    page.on("pageerror", (e) => consoleErrors.push(String(e)));

    await step(page, "sign-in screen; a wrong token is refused", async () => {
      const res = await page.goto(BASE + "/");
      const csp = res.headers()["content-security-policy"] || "";
      check(csp.includes("script-src 'self'"), `the page has a strict CSP (got "${csp}")`);
      await page.locator("#signin").waitFor({ state: "visible" });
      await page.locator("#token").fill("sbt_not-a-real-token");
      await page.locator("#signin-button").click();
      const err = page.locator("#signin-error");
      await err.waitFor({ state: "visible", timeout: WAIT_MS });
      const text = await err.textContent();
      check(/refused|unknown or revoked/i.test(text), `the refusal is explained (got "${text}")`);
      check(await page.locator("#app").isHidden(), "the console stays closed");
    });

    await step(page, "admin signs in and the list fills", async () => {
      await page.locator("#token").fill(ADMIN);
      await page.locator("#signin-button").click();
      await page.locator("#app").waitFor({ state: "visible", timeout: WAIT_MS });
      await until("the incident list fills", async () => (await rows(page).count()) > 0);
      check((await page.locator("#who-role").textContent()) === "Admin", "the role shows Admin");
      const first = await api("/incidents?limit=50");
      const shown = await rows(page).count();
      check(shown === first.items.length, `the first page shows ${first.items.length} incidents, not ${shown}`);
      check(await page.locator("#load-more").isVisible() === Boolean(first.next_cursor), "load more follows the cursor");
    });

    await step(page, "the list refreshes live, keeping scroll and selection", async () => {
      const pane = page.locator("#list-pane");
      await pane.evaluate((n) => (n.scrollTop = 120));
      const before = Number(await page.locator("#live").getAttribute("data-refreshed"));
      await until("a live refresh happens", async () => Number(await page.locator("#live").getAttribute("data-refreshed")) > before, 15_000);
      const top = await pane.evaluate((n) => n.scrollTop);
      check(top === 120, `the scroll position stays (was 120, now ${top})`);
    });

    await step(page, `filter: severity ${target.severity} and a hostname`, async () => {
      await page.locator("#f-severity").selectOption(target.severity);
      await until(`only ${target.severity} incidents are listed`, async () => {
        const sevs = await page.locator("#incident-rows tr[data-id] .sev").allTextContents();
        return sevs.length > 0 && sevs.every((s) => s === sevLabel);
      });
      await page.locator("#f-q").fill(host.toUpperCase());
      await until(`the list shows the ${target.severity} incidents of ${host} that the API lists`, async () => {
        const witness = await api(`/incidents?severity=${target.severity}&q=${encodeURIComponent(host)}&limit=1000`);
        const ids = await rows(page).evaluateAll((trs) => trs.map((t) => Number(t.dataset.id)));
        return ids.length === witness.items.length && witness.items.every((i) => ids.includes(i.id));
      });
      check(await page.locator(`#incident-rows tr[data-id="${target.id}"]`).isVisible(), "the target incident is listed");
    });

    await step(page, "open the incident: findings, observables and the ticket link", async () => {
      await page.locator(`#incident-rows tr[data-id="${target.id}"] .title-link`).click();
      await page.waitForURL(`**/#/incidents/${target.id}`);
      await until("the detail shows the incident", async () => (await page.locator("#d-title").textContent()) === target.title);
      // New findings may land meanwhile: the page follows within a refresh.
      await until("the detail lists every finding the API has", async () => {
        const findings = await api(`/incidents/${target.id}/findings`);
        return (await page.locator("#d-findings li.finding").count()) === findings.length;
      });
      const detail = await api(`/incidents/${target.id}`);
      const link = page.locator("#ticket-link");
      check((await link.textContent()) === detail.ticket.number, "the ticket number is shown");
      check((await link.getAttribute("href")) === new URL(detail.ticket.url).href, "the ticket links to ServiceNow");
      check((await link.getAttribute("rel")).includes("noopener"), "the ticket link opens apart");
      const chips = await page.locator("#d-observables .chip").allTextContents();
      check(chips.includes(host), `the observables show ${host}`);
      await until("the timeline is complete", async () =>
        (await page.locator("#d-timeline li").count()) === (await api(`/incidents/${target.id}`)).timeline.length);
      await page.locator(`#incident-rows tr[data-id="${target.id}"].selected`).waitFor();
    });

    await step(page, "the ticket, containment, findings and timeline", async () => {
      await page.locator("#d-ticket").scrollIntoViewIfNeeded();
      await page.locator("#d-ticket").evaluate((n) => n.closest(".card").scrollIntoView({ block: "start" }));
      check(await page.locator("#ticket-link").isVisible(), "the ticket link is in view");
      check(await page.locator("#c-isolate").isVisible(), "the containment buttons show");
    });

    await step(page, "a refused change shows the problem's detail", async () => {
      await page.locator("#update-form").evaluate((n) => n.closest(".card").scrollIntoView({ block: "start" }));
      // A status the server does not know (as an outdated page might send).
      await page.locator("#u-status").evaluate((sel) => {
        sel.append(new Option("Bogus", "bogus"));
        sel.value = "bogus";
      });
      await page.locator("#u-save").click();
      const err = page.locator("#update-error");
      await err.waitFor({ state: "visible", timeout: WAIT_MS });
      const text = await err.textContent();
      check(/Unprocessable Entity: status: unknown status `bogus`/.test(text), `the problem detail is shown (got "${text}")`);
      await page.locator("#u-status").evaluate((sel) => sel.querySelector('option[value="bogus"]').remove());
    });

    await step(page, "close it with a resolution", async () => {
      await page.locator("#u-status").selectOption("closed");
      await page.locator("#u-resolution").fill("False positive: test file from the browser test");
      await page.locator("#u-comment").fill("Closed from the web console.");
      await page.locator("#u-save").click();
      await page.locator("#update-ok").waitFor({ state: "visible", timeout: WAIT_MS });
      await until("the detail says Closed", async () => (await page.locator("#d-status").textContent()) === "Closed");
      await until("the list row says Closed", async () =>
        (await page.locator(`#incident-rows tr[data-id="${target.id}"] .status`).textContent()) === "Closed");
      const after = await api(`/incidents/${target.id}`);
      check(after.status === "closed", `the API says ${after.status}`);
      check(after.resolution === "False positive: test file from the browser test", "the resolution is stored");
      check(after.timeline.some((e) => e.kind === "comment" && e.detail === "Closed from the web console."), "the comment is in the timeline");
      const events = await page.locator("#d-timeline .event-kind").allTextContents();
      check(events.includes("status changed") && events.includes("comment"), `the timeline shows the change (${events})`);
    });

    await step(page, "the status stays changed after a live refresh", async () => {
      const before = Number(await page.locator("#live").getAttribute("data-refreshed"));
      await until("a live refresh happens", async () => Number(await page.locator("#live").getAttribute("data-refreshed")) > before, 15_000);
      const status = await page.locator(`#incident-rows tr[data-id="${target.id}"] .status`).textContent();
      check(status === "Closed", `the list says ${status}`);
      check(await page.locator(`#incident-rows tr[data-id="${target.id}"]`).evaluate((r) => r.classList.contains("selected")), "the selection stays");
    });

    await step(page, "clear the filters and load more pages", async () => {
      await page.locator("#f-clear").click();
      await until("the unfiltered list is back", async () =>
        (await rows(page).count()) >= (await api("/incidents?limit=50")).items.length);
      if (await page.locator("#load-more").isVisible()) {
        const n = await rows(page).count();
        await page.locator("#load-more").click();
        await until("the next page is appended", async () => (await rows(page).count()) > n);
        const ids = await rows(page).evaluateAll((trs) => trs.map((t) => t.dataset.id));
        check(new Set(ids).size === ids.length, "no incident is listed twice");
      }
    });

    await step(page, "source health per tenant", async () => {
      await page.locator("#tab-health").click();
      await until("every tenant has its health card", async () => {
        const health = await api("/sources/health");
        const tenants = new Set(health.map((h) => h.tenant));
        return (await page.locator("#health-tenants .tenant-health").count()) === tenants.size && tenants.size > 0;
      });
      check((await page.locator(".health-table tbody tr").count()) === (await api("/sources/health")).length, "one row per source");
    });

    await step(page, "sign out", async () => {
      await page.locator("#signout").click();
      await page.locator("#signin").waitFor({ state: "visible" });
      const kept = await page.evaluate(() => sessionStorage.getItem("socbridge.token"));
      check(kept === null, "the token is gone from session storage");
    });
    await desk.close();

    // ---------------------------------------------------------------- phone, analyst
    const phone = await browser.newContext({
      viewport: { width: 390, height: 844 },
      deviceScaleFactor: 2,
      isMobile: true,
      hasTouch: true,
    });
    const mobile = await phone.newPage();
    mobile.on("pageerror", (e) => consoleErrors.push(String(e)));
    let otherId;

    await step(mobile, "phone: an analyst sees only its tenant", async () => {
      await signIn(mobile, ANALYST);
      check((await mobile.locator("#who-role").textContent()) === "Analyst", "the role shows Analyst");
      const tenants = await mobile.locator("#incident-rows .c-tenant").allTextContents();
      check(tenants.length > 0 && tenants.every((t) => t === ANALYST_TENANT), `only ${ANALYST_TENANT} is listed (${[...new Set(tenants)]})`);
      const options = await mobile.locator("#f-tenant option").evaluateAll((os) => os.map((o) => o.value).filter(Boolean));
      check(options.length === 1 && options[0] === ANALYST_TENANT, `the tenant filter offers only ${ANALYST_TENANT} (${options})`);
      await noHorizontalOverflow(mobile);
    });

    await step(mobile, "phone: the list is readable", async () => {
      const first = rows(mobile).first();
      const box = await first.boundingBox();
      check(box && box.x >= 0 && box.x + box.width <= 390, `a row fits the screen (${JSON.stringify(box)})`);
      const title = first.locator(".title-link");
      const tb = await title.boundingBox();
      check(tb && tb.x >= 0 && tb.x + tb.width <= 390, "the title fits the screen");
      const size = await title.evaluate((n) => parseFloat(getComputedStyle(n).fontSize));
      check(size >= 13, `the title is ${size} px`);
      check(await first.locator(".sev").isVisible(), "the severity shows");
      check(await first.locator(".status").isVisible(), "the status shows");
      await noHorizontalOverflow(mobile);
    });

    await step(mobile, "phone: an incident opens in place of the list", async () => {
      await rows(mobile).first().locator(".title-link").click();
      await mobile.locator("#detail").waitFor({ state: "visible", timeout: WAIT_MS });
      check(await mobile.locator("#list-pane").isHidden(), "the list gives way to the detail");
      await mobile.locator("#d-findings li.finding").first().waitFor();
      check(await mobile.locator("#detail-back").isVisible(), "a way back is shown");
      check((await mobile.locator("#d-actions .code").count()) === 0, "an analyst sees no unlock code");
      await noHorizontalOverflow(mobile);
    });

    await step(mobile, "phone: another tenant's incident is not found", async () => {
      const other = await api(`/incidents?limit=1000`);
      const foreign = other.items.find((i) => i.tenant !== ANALYST_TENANT);
      check(foreign, "the admin sees another tenant's incident");
      otherId = foreign.id;
      await mobile.goto(`${BASE}/#/incidents/${otherId}`);
      const err = mobile.locator("#detail-error");
      await err.waitFor({ state: "visible", timeout: WAIT_MS });
      check((await err.textContent()).includes(`No incident #${otherId}`), "it reads as not found");
      check(await mobile.locator("#detail").isHidden(), "nothing of it is shown");
      check(await mobile.locator("#detail-back").isVisible(), "a way back is shown");
      await noHorizontalOverflow(mobile);
    });

    await step(mobile, "phone: source health", async () => {
      await mobile.goto(`${BASE}/#/health`);
      await mobile.locator("#health-tenants .tenant-health").first().waitFor({ timeout: WAIT_MS });
      const names = await mobile.locator("#health-tenants .tenant-health h3").allTextContents();
      check(names.every((n) => n.startsWith(ANALYST_TENANT)), `only ${ANALYST_TENANT}'s sources (${names})`);
      await noHorizontalOverflow(mobile);
    });

    await step(mobile, "a revoked token sends back to sign-in", async () => {
      await mobile.evaluate(() => sessionStorage.setItem("socbridge.token", "sbt_revoked-or-never-was"));
      await mobile.goto(`${BASE}/#/incidents`);
      await mobile.reload();
      await mobile.locator("#signin").waitFor({ state: "visible", timeout: WAIT_MS });
      const text = await mobile.locator("#signin-error").textContent();
      check(/refused/i.test(text), `the sign-in screen says why (got "${text}")`);
    });
    await phone.close();

    check(consoleErrors.length === 0, `the page logged errors: ${consoleErrors.join(" | ")}`);
  } finally {
    await browser.close();
  }
  console.log(`\nbrowser test passed: ${timings.length} steps in ${((Date.now() - t0) / 1000).toFixed(1)} s; screenshots in ${SHOTS}`);
}

main().catch((e) => {
  if (!(e instanceof Failure)) console.error(`\nbrowser test failed: ${e.stack || e}`);
  process.exit(1);
});
