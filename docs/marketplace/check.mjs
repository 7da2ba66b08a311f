// Drives the browser check of the marketplace's chat: see check.sh. Arguments: the gateway,
// the browser build of socket.io-client, and where to save the screenshot.
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";

const require = createRequire(import.meta.url);
const { chromium } = require("playwright-core");
const [gateway, bundle, screenshot] = process.argv.slice(2);

// A page of the gateway's origin (served to the browser by the check, not by the gateway):
// the client library, and a chat that signs up, logs in, connects and sends.
const page = `<!doctype html>
<html><head><meta charset="utf-8"><title>marketplace chat</title>
<style>body { font: 15px sans-serif; margin: 2em; } li { margin: .3em 0; }</style>
<script>${readFileSync(bundle, "utf8")}</script></head>
<body><h1 id="who">marketplace chat</h1><p id="state">not connected</p><ul id="messages"></ul>
<script>
let socket;
async function post(path, body) {
  const answer = await fetch(path, { method: "POST", headers: { "content-type": "application/json" },
    body: JSON.stringify(body) });
  return { status: answer.status, body: await answer.json().catch(() => null) };
}
window.enter = async (username, password) => {
  document.getElementById("who").textContent = "chat of " + username;
  await post("/api/auth/signup", { username, password });
  return post("/api/auth/login", { username, password });
};
window.connect = (transport) => new Promise((resolve, reject) => {
  if (socket) socket.disconnect();
  socket = io({ transports: [transport], upgrade: false, reconnection: false, forceNew: true });
  socket.on("connect", () => {
    document.getElementById("state").textContent = "connected over " + socket.io.engine.transport.name;
    resolve(socket.io.engine.transport.name);
  });
  socket.on("connect_error", (e) => reject(e.message));
  socket.on("message", (m) => {
    const item = document.createElement("li");
    item.textContent = m.from + " → " + m.to + ": " + m.text;
    document.getElementById("messages").append(item);
  });
});
window.send = (to, text) => socket.timeout(10000).emitWithAck("message", { to, text });
</script></body></html>`;

const fail = (why) => { throw new Error(why); };
// The page comes from the check, not from the loopback address, so Chromium's Local Network
// Access checks would take it for a public site's and block its WebSocket to 127.0.0.1.
const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--disable-features=LocalNetworkAccessChecks"],
});
try {
  const open = async () => {
    const context = await browser.newContext({ viewport: { width: 900, height: 500 } });
    const tab = await context.newPage();
    await tab.route(`${gateway}/chat.html`, (route) =>
      route.fulfill({ contentType: "text/html", body: page }));
    await tab.goto(`${gateway}/chat.html`);
    return tab;
  };
  const alice = await open();
  const bob = await open();
  for (const [tab, name] of [[alice, "alice"], [bob, "bob"]]) {
    const login = await tab.evaluate(([n, p]) => window.enter(n, p), [name, `${name}'s long password`]);
    if (login.status !== 200) fail(`login of ${name}: ${JSON.stringify(login)}`);
    if (login.body.access_token) fail(`the page saw the token: ${JSON.stringify(login.body)}`);
    const cookies = await tab.evaluate(() => document.cookie);
    if (cookies.includes("mesh_token")) fail(`the page's script reads the cookie: ${cookies}`);
  }
  // The chat service learns bob from his signup event: wait until it knows him.
  for (let tries = 0; ; tries++) {
    const sent = await alice.evaluate(() => fetch("/api/chat/messages", { method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ to: "bob", text: "hello over HTTP" }) }).then((a) => a.status));
    if (sent === 200) break;
    if (tries > 100) fail(`alice cannot write to bob: ${sent}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  for (const transport of ["polling", "websocket"]) {
    for (const tab of [alice, bob]) {
      const used = await tab.evaluate((t) => window.connect(t), transport);
      if (used !== transport) fail(`connected over ${used}, not ${transport}`);
    }
    const text = `hello bob, over ${transport}`;
    const ack = await alice.evaluate(([to, t]) => window.send(to, t), ["bob", text]);
    if (!ack.ok) fail(`not sent: ${JSON.stringify(ack)}`);
    await bob.getByText(`alice → bob: ${text}`).waitFor({ timeout: 10000 });
    const reply = `hi alice, over ${transport}`;
    await bob.evaluate(([to, t]) => window.send(to, t), ["alice", reply]);
    await alice.getByText(`bob → alice: ${reply}`).waitFor({ timeout: 10000 });
    console.log(`${transport}: alice and bob chatted through the gateway`);
  }
  await bob.screenshot({ path: screenshot });
  console.log(`saved ${screenshot}`);
} finally {
  await browser.close();
}
