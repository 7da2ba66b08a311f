// Usage: node chat.mjs <gateway host:port> <sender cookie> <recipient cookie> <polling|websocket>
//
// Connects the recipient and the sender to the marketplace's chat through the gateway with
// the official Socket.IO client on one transport, each with its gateway cookie; the sender
// sends a `message` to the recipient; prints one JSON line with the sender's acknowledgement,
// what the recipient received, the transport each used, whether a client without a cookie was
// refused, the acknowledgements of two malformed messages, and (polling) the status of the
// recipient's request naming the sender's session. Exits 1 on any failure or after 15 s.
import { io } from "socket.io-client";

const [gateway, senderCookie, recipientCookie, transport] = process.argv.slice(2);
const url = `http://${gateway}`;
const fail = (why) => {
  console.error(why);
  process.exit(1);
};
setTimeout(() => fail("no answer within 15 s"), 15000).unref();

const connect = (cookie) =>
  io(url, {
    transports: [transport],
    upgrade: false,
    reconnection: false,
    extraHeaders: cookie ? { cookie } : {},
  });

const connected = (socket) =>
  new Promise((resolve, reject) => {
    socket.on("connect", () => resolve(socket));
    socket.on("connect_error", (error) => reject(error));
  });

const refused = await connected(connect(null)).then(
  (socket) => {
    socket.disconnect();
    return false;
  },
  () => true,
);

const recipient = await connected(connect(recipientCookie)).catch((e) => fail(`recipient: ${e.message}`));
const sender = await connected(connect(senderCookie)).catch((e) => fail(`sender: ${e.message}`));
const received = new Promise((resolve) => recipient.on("message", resolve));
const text = `hello over ${transport}`;
const ack = await sender.timeout(10000).emitWithAck("message", { to: "bob", text });
const message = await received;
const malformed = [
  await sender.timeout(10000).emitWithAck("message", "hello"),
  await sender.timeout(10000).emitWithAck("message", { to: "bob" }),
];
// Another user naming the sender's polling session, as if they had learnt its id.
let hijack = null;
if (transport === "polling") {
  const sid = sender.io.engine.id;
  const answer = await fetch(`${url}/socket.io/?EIO=4&transport=polling&sid=${sid}`, {
    headers: { cookie: recipientCookie },
  });
  hijack = answer.status;
}
console.log(
  JSON.stringify({
    ack,
    received: message,
    transports: [sender.io.engine.transport.name, recipient.io.engine.transport.name],
    refusedWithoutCookie: refused,
    malformed,
    hijack,
  }),
);
sender.disconnect();
recipient.disconnect();
process.exit(0);
