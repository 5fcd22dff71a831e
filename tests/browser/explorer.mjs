// Patient Explorer in a real browser: Debian's Chromium, headless, driven by Playwright.
// Usage: node explorer.mjs http://127.0.0.1:PORT SCREENSHOT_DIR
// The data folder was prepared by crates/cli/tests/web.rs (users admin, desk, aud; a demo
// clinic; one conflict on a progress note). Exits non-zero with the failed step on any error.

import { chromium } from "playwright-core";
import assert from "node:assert/strict";

const [base, shots, offer, hubAdmin] = process.argv.slice(2);
assert.ok(offer?.startsWith("hearth-pair:"), "the test passes a pairing offer");
assert.ok(hubAdmin?.startsWith("http://127.0.0.1:"), "the test passes the hub's administration URL");
const ADMIN = { user: "admin", pin: "24681357" };
const DESK = { user: "desk", pin: "13572468" };
const AUD = { user: "aud", pin: "11223344" };

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu"],
});
const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
page.setDefaultTimeout(15000);
let step = "start";
const shot = async (name) => {
  if (shots) await page.screenshot({ path: `${shots}/${name}.png`, fullPage: true });
};

async function login(who) {
  await page.goto(`${base}/login`);
  await page.fill("#user", who.user);
  await page.fill("#pin", who.pin);
  await Promise.all([page.waitForNavigation({ waitUntil: "load" }), page.click("button[type=submit]")]);
}

try {
  step = "redirected to sign-in";
  await page.goto(base + "/");
  assert.match(page.url(), /\/login$/);
  await shot("login");

  step = "wrong PIN";
  await login({ user: "admin", pin: "00000000" });
  assert.match(await page.textContent("#login-error"), /wrong user or PIN/);

  step = "sign in";
  await login(ADMIN);
  assert.match(page.url(), /\/patients$/);
  await shot("patients");

  step = "filters: open tasks";
  await page.selectOption("#filter", "tasks");
  await Promise.all([page.waitForNavigation({ waitUntil: "load" }), page.click("form[role=search] button")]);
  assert.ok((await page.locator("#patient-rows tr a").count()) > 0, "patients with open tasks");

  step = "search a patient";
  await page.fill("#q", "fernandez");
  await Promise.all([page.waitForNavigation({ waitUntil: "load" }), page.click("form[role=search] button")]);
  const rows = await page.locator("#patient-rows tr").allTextContents();
  assert.ok(rows.some((r) => r.includes("Élodie Fernández")), rows.join(" | "));

  step = "open the chart";
  await page.click("text=Élodie Fernández");
  await page.waitForSelector("#patient-name");
  assert.equal(await page.textContent("#patient-name"), "Élodie Fernández");
  const before = Number(await page.getAttribute('.vital[data-code="8867-4"] svg', "data-points"));

  step = "record vitals and see the chart update";
  await page.fill("#v-sys", "128");
  await page.fill("#v-dia", "84");
  await page.fill("#v-hr", "77");
  await Promise.all([page.waitForNavigation({ waitUntil: "load" }), page.click("form[aria-label='Record vitals'] button")]);
  assert.equal((await page.textContent('.vital[data-code="8867-4"] .latest')).trim(), "77");
  const after = Number(await page.getAttribute('.vital[data-code="8867-4"] svg', "data-points"));
  assert.equal(after, before + 1);
  await shot("chart");

  step = "mark a medication dose given";
  const dose = page.locator("form[aria-label^='Dose of']").first();
  await Promise.all([page.waitForNavigation({ waitUntil: "load" }), dose.locator("button", { hasText: "Given" }).click()]);
  assert.match(await page.textContent("#doses"), /given/);

  step = "edit demographics";
  await page.click("text=Edit demographics");
  await page.fill("#d-phone", "555-4242");
  await Promise.all([page.waitForNavigation({ waitUntil: "load" }), page.click("text=Save demographics")]);
  assert.match(await page.textContent("section[aria-label=Summary]"), /555-4242/);

  step = "export the chart";
  const exported = await page.request.get(`${base}/patients/p-000001/export`);
  assert.equal(exported.status(), 200);
  const bundle = await exported.json();
  assert.equal(bundle.resourceType, "Bundle");
  assert.ok(bundle.entry.length > 10);
  const deid = await (await page.request.get(`${base}/patients/p-000001/export?deidentified=1`)).text();
  assert.ok(deid.includes('"Bundle"') && !deid.includes("Fernández") && !deid.includes("555-4242"), "de-identified");

  step = "write a note, then sign it";
  await page.fill("#note", "Browser test: reviewed medications with the proxy.");
  await Promise.all([page.waitForNavigation({ waitUntil: "load" }), page.click("text=Save note")]);
  const draft = page.locator("article.note", { hasText: "Browser test: reviewed" });
  assert.match(await draft.textContent(), /draft/);
  assert.match(await page.textContent("#alerts"), /Unsigned note/);
  await draft.locator("summary", { hasText: "Edit draft" }).click();
  await draft.locator("textarea").fill("Browser test: reviewed medications with the proxy. Edited.");
  await Promise.all([page.waitForNavigation({ waitUntil: "load" }), draft.locator("button", { hasText: "Save changes" }).click()]);
  const edited = page.locator("article.note", { hasText: "Browser test: reviewed" });
  assert.match(await edited.textContent(), /Edited\./);
  await Promise.all([page.waitForNavigation({ waitUntil: "load" }), edited.locator("button", { hasText: "Sign" }).click()]);
  assert.match(
    await page.locator("article.note", { hasText: "Browser test: reviewed" }).textContent(),
    /signed by admin/,
  );

  step = "my patients";
  await page.goto(`${base}/patients?filter=mine`);
  assert.match(await page.textContent("#patient-rows"), /Élodie Fernández/);
  await page.goto(`${base}/patients/p-000001`);

  step = "sign a consent on the pad";
  const consentsBefore = await page.locator("#consents li").count();
  await page.locator("#sigpad").scrollIntoViewIfNeeded();
  const pad = await page.locator("#sigpad").boundingBox();
  await page.mouse.move(pad.x + 20, pad.y + 100);
  await page.mouse.down();
  for (let i = 1; i <= 12; i++) await page.mouse.move(pad.x + 20 + i * 25, pad.y + 100 - Math.sin(i) * 40);
  await page.mouse.up();
  assert.match(await page.inputValue("#signature"), /^data:image\/png;base64,/);
  await Promise.all([page.waitForNavigation({ waitUntil: "load" }), page.click("text=Save signed consent")]);
  assert.equal(await page.locator("#consents li").count(), consentsBefore + 1);

  step = "sync panel";
  await page.goto(`${base}/sync`);
  assert.match(await page.textContent("main"), /not paired with a clinic hub/);
  await page.fill("#offer", "not-an-offer");
  await Promise.all([page.waitForNavigation({ waitUntil: "load" }), page.click("text=Pair with the hub")]);
  assert.match(await page.textContent(".alert"), /hearth-pair:/);
  await page.goto(`${base}/sync`);
  await page.fill("#offer", offer);
  await Promise.all([page.waitForNavigation({ waitUntil: "load" }), page.click("text=Pair with the hub")]);
  assert.match(await page.textContent("#hub-state"), /reachable/);
  await page.fill("#account", "nurse@clinic");
  await page.fill("#password", "nurse-password-1");
  await Promise.all([page.waitForNavigation({ waitUntil: "load" }), page.click("text=Sync now")]);
  await page.waitForFunction(() => /Synced:/.test(document.getElementById("sync-result")?.textContent || ""), null, { timeout: 60000 });
  const synced = await page.textContent("#sync-result");
  assert.ok(Number(/(\d+) sent/.exec(synced)[1]) > 50, synced);
  await shot("sync");

  step = "hub administration screens";
  const hub = await browser.newPage({ viewport: { width: 1200, height: 900 } });
  hub.setDefaultTimeout(15000);
  const hubShot = async (name) => {
    if (shots) await hub.screenshot({ path: `${shots}/${name}.png`, fullPage: true });
  };
  await hub.goto(`${hubAdmin}/ui`);
  await hub.fill("#name", "admin@clinic");
  await hub.fill("#password", "wrong-password-9");
  await Promise.all([hub.waitForNavigation({ waitUntil: "load" }), hub.click("button[type=submit]")]);
  assert.doesNotMatch(await hub.textContent("body"), /Relay/);
  await hub.fill("#name", "admin@clinic");
  await hub.fill("#password", "admin-password-1");
  await Promise.all([hub.waitForNavigation({ waitUntil: "load" }), hub.click("button[type=submit]")]);
  assert.match(await hub.textContent("main"), /1 devices paired/);
  assert.match(await hub.textContent("main"), /Relay/);
  await hubShot("hub-status");
  await Promise.all([hub.waitForNavigation({ waitUntil: "load" }), hub.click("text=Show a pairing code")]);
  assert.equal(await hub.locator(".qr svg").count(), 1);
  assert.match(await hub.textContent("main"), /hearth-pair:/);
  await hubShot("hub-pairing");
  await hub.goto(`${hubAdmin}/ui/accounts`);
  assert.match(await hub.textContent("tbody"), /nurse@clinic\s*clinician/);
  await hubShot("hub-accounts");
  await hub.goto(`${hubAdmin}/ui/devices`);
  const row = hub.locator("tbody tr").first();
  assert.match(await row.textContent(), /s ago/, "the device's last contact is shown");
  await hubShot("hub-devices");
  await Promise.all([hub.waitForNavigation({ waitUntil: "load" }), row.locator("text=Revoke").click()]);
  assert.match(await hub.locator("tbody tr").first().textContent(), /revoked/);
  await hub.close();
  step = "a revoked device cannot sync";
  await page.goto(`${base}/sync`);
  await page.fill("#account", "nurse@clinic");
  await page.fill("#password", "nurse-password-1");
  await Promise.all([page.waitForNavigation({ waitUntil: "load" }), page.click("text=Sync now")]);
  await page.waitForFunction(() => /Sync failed/.test(document.getElementById("sync-result")?.textContent || ""), null, { timeout: 60000 });
  assert.match(await page.textContent("#sync-result"), /revoked/i);

  step = "resolve a conflict";
  await page.goto(`${base}/inbox`);
  await page.click("text=DocumentReference/p-000002-note-1");
  await page.waitForSelector("#diff tr");
  assert.match(await page.textContent("main"), /Or merge by hand/);
  await shot("conflict");
  await Promise.all([page.waitForNavigation({ waitUntil: "load" }), page.locator("button", { hasText: "Keep this version" }).first().click()]);
  assert.match(await page.textContent("main"), /No conflicts wait for a person/);

  step = "hidden is not absent: the front desk sees what its role may not";
  await page.click("text=Log out");
  await login(DESK);
  await page.goto(`${base}/patients/p-000001`);
  const summary = await page.textContent("section[aria-label=Summary]");
  assert.match(summary, /Allergies\s*Hidden for your role/, summary);
  assert.match(summary, /Active medications\s*Hidden for your role/, summary);
  assert.doesNotMatch(summary, /None recorded/, summary);
  for (const rt of ["Observation", "MedicationRequest", "DocumentReference"]) {
    assert.ok((await page.locator(`[data-hidden="${rt}"]`).count()) > 0, `${rt} is marked hidden`);
  }
  assert.match(await page.textContent("#break-glass"), /hidden for your role/i);
  await shot("hidden-for-role");

  step = "the front desk may not write a note";
  await page.fill("#note", "Front desk should not write this.");
  await Promise.all([page.waitForNavigation({ waitUntil: "load" }), page.click("text=Save note")]);
  assert.match(await page.textContent("h1"), /Not allowed/);

  step = "break-glass";
  await page.goto(`${base}/patients`);
  await page.click("text=Log out");
  await login(AUD);
  await page.goto(`${base}/patients/p-000003`);
  assert.match(await page.textContent("h1"), /Not allowed/);
  await page.fill("#reason", "Patient collapsed in the waiting room; need allergies.");
  await Promise.all([page.waitForNavigation({ waitUntil: "load" }), page.click("text=Open chart in an emergency")]);
  await page.waitForSelector("#patient-name");
  await page.goto(`${base}/audit?break_glass=on`);
  assert.match(await page.textContent("main"), /break-glass/);
  await shot("audit");

  step = "auto-lock after inactivity, then quick re-unlock";
  await page.goto(`${base}/patients`);
  await page.waitForURL(/\/locked$/, { timeout: 30000 });
  await shot("locked");
  await page.fill("#pin", AUD.pin);
  await Promise.all([page.waitForNavigation({ waitUntil: "load" }), page.click("text=Unlock")]);
  assert.match(page.url(), /\/patients$/);

  step = "keyboard and screen reader basics";
  const labelled = await page.$$eval("input:not([type=hidden]), select, textarea", (els) =>
    els.every((e) => e.labels?.length > 0 || e.getAttribute("aria-label")),
  );
  assert.ok(labelled, "every form control has a label");

  console.log(JSON.stringify({ ok: true }));
} catch (e) {
  console.error(`step failed: ${step}\n${e.stack || e}`);
  try { await shot("failure"); } catch {}
  process.exitCode = 1;
} finally {
  await browser.close();
}
