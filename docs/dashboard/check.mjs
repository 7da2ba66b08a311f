// Drives the dashboard check: see check.sh. Arguments: the dashboard's URL, the shop's
// gateway, and where to save the screenshot.
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const { chromium } = require("playwright-core");
const [dashboard, gateway, screenshot] = process.argv.slice(2);
const services = ["auth-service", "product-service", "inventory-service", "order-service",
  "payment-service", "notification-service"];

async function call(method, path, token, body) {
  const headers = { "content-type": "application/json" };
  if (token) headers.authorization = `Bearer ${token}`;
  const answer = await fetch(`${gateway}${path}`, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await answer.text();
  return { status: answer.status, body: text ? JSON.parse(text) : null };
}

async function login(user, password, signup) {
  if (signup) await call("POST", "/api/auth/signup", null, { username: user, password });
  const answer = await call("POST", "/api/auth/login", null, { username: user, password });
  if (answer.status !== 200) throw new Error(`login of ${user}: ${answer.status}`);
  return answer.body.access_token;
}

const browser = await chromium.launch({ executablePath: "/usr/bin/chromium" });
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  await page.goto(dashboard);
  for (const service of services) {
    await page.waitForSelector(`section[data-service="${service}"] tr[data-instance]`,
      { timeout: 30_000 });
  }
  console.log(`✓ the page lists ${services.length} services, each with its instance`);
  await page.waitForSelector('#connection[data-state="live"]');
  console.log("✓ the page follows the registry's event stream");

  const admin = await login("admin", process.env.SHOP_ADMIN_PASSWORD, false);
  const alice = await login("alice", "correct horse battery", true);
  await call("PUT", "/api/products/tea", admin, { sku: "tea", name: "Green tea", price_cents: 450 });
  await call("PUT", "/api/inventory/tea", admin, { available: 100 });
  const outage = await call("POST", "/api/admin/payment/outage", admin, { on: true });
  if (outage.status !== 200) throw new Error(`outage: ${outage.status}`);
  for (let n = 0; n < 7; n++) {
    await call("POST", "/api/orders", alice, { lines: [{ sku: "tea", quantity: 1 }] });
  }
  console.log("  the payment provider is down; 7 orders placed");
  const open = 'section[data-service="order-service"] .breaker-OPEN';
  await page.waitForSelector(open, { timeout: 30_000 });
  const chip = await page.textContent(open);
  if (!chip.includes("payment-service")) throw new Error(`the open breaker is ${chip}`);
  const rate = await page.textContent(
    'section[data-service="order-service"] tr[data-instance] td.number');
  console.log(`✓ without a reload, order-service shows "${chip}" (${rate} req/s)`);
  await page.screenshot({ path: screenshot, fullPage: true });
  console.log(`✓ screenshot: ${screenshot}`);
} finally {
  await browser.close();
}
console.log("ok");
