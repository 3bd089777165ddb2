// MQTT.js round trip for the WebSocket tests: one client subscribes, another
// publishes COUNT numbered QoS 1 messages, and one JSON line reports what
// happened. Bounded: gives up after TIMEOUT_MS.
//
//   node roundtrip.js URL [--ca FILE] [--username U --password P] [--count N] [--protocol 4|5]
//                         [--topic T] [--publish-only 1]
//
// With --publish-only the messages are only published (a device may not read
// its own data topic; another client of the test receives them).
// Prints {"connected":bool,"subscribed":[...],"published":n,"acknowledged":n,"received":n,"error":...}.

"use strict";

const fs = require("fs");
const mqtt = require("mqtt");

const TIMEOUT_MS = 15000;

function parseArgs(argv) {
  const args = { url: argv[0], count: 100, protocol: 5 };
  for (let i = 1; i < argv.length; i += 2) {
    const value = argv[i + 1];
    switch (argv[i]) {
      case "--ca": args.ca = fs.readFileSync(value); break;
      case "--username": args.username = value; break;
      case "--password": args.password = value; break;
      case "--count": args.count = Number(value); break;
      case "--protocol": args.protocol = Number(value); break;
      case "--topic": args.topic = value; break;
      case "--publish-only": args.publishOnly = value === "1"; break;
      default: throw new Error(`unknown argument ${argv[i]}`);
    }
  }
  return args;
}

function connect(args, clientId) {
  const options = {
    clientId,
    protocolVersion: args.protocol,
    reconnectPeriod: 0,
    connectTimeout: 5000,
  };
  if (args.ca) options.ca = args.ca;
  if (args.username) {
    options.username = args.username;
    options.password = args.password;
  }
  return mqtt.connectAsync(args.url, options);
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const topic = args.topic || `mqttjs/${process.pid}/${Date.now()}`;
  const report = { connected: false, subscribed: [], published: 0, acknowledged: 0, received: 0 };
  const timer = setTimeout(() => {
    report.error = "timeout";
    console.log(JSON.stringify(report));
    process.exit(2);
  }, TIMEOUT_MS);
  try {
    const publisher = await connect(args, `js-pub-${process.pid}`);
    const subscriber = args.publishOnly ? null : await connect(args, `js-sub-${process.pid}`);
    report.connected = true;
    const seen = new Set();
    const allReceived = new Promise((resolve) => {
      if (!subscriber) return resolve();
      subscriber.on("message", (_topic, payload) => {
        seen.add(payload.toString());
        report.received = seen.size;
        if (seen.size === args.count) resolve();
      });
    });
    if (subscriber) {
      const granted = await subscriber.subscribeAsync(topic, { qos: 1 });
      report.subscribed = granted.map((g) => g.qos);
    }
    const sends = [];
    for (let i = 0; i < args.count; i++) {
      report.published++;
      sends.push(publisher.publishAsync(topic, `message-${i}`, { qos: 1 }).then(() => report.acknowledged++));
    }
    await Promise.all(sends);
    await allReceived;
    await publisher.endAsync();
    if (subscriber) await subscriber.endAsync();
  } catch (e) {
    report.error = String(e && e.message ? e.message : e);
  }
  clearTimeout(timer);
  console.log(JSON.stringify(report));
  process.exit(report.error ? 1 : 0);
}

main();
