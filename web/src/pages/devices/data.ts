import type { Info } from "../../api/types";

export interface Credentials {
  id: string;
  name: string;
  token: string;
  topic: string;
}

export function mqttTarget(info: Info | undefined): { host: string; port: number } {
  return { host: info?.mqtt.host || window.location.hostname, port: info?.mqtt.port ?? 1883 };
}

export const topicFor = (id: string) => `tributary/v1/${id}/senml`;

const shellQuote = (s: string) => (/^[A-Za-z0-9._:/@-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`);

export function mosquittoSnippet(c: Credentials, host: string, port: number): string {
  return `mosquitto_pub -h ${shellQuote(host)} -p ${port} -u ${shellQuote(c.id)} -P ${shellQuote(c.token)} -t ${shellQuote(c.topic)} -q 1 -m '[{"n":"hr","u":"beat/min","v":61}]'`;
}

export function mqttJsSnippet(c: Credentials, host: string, port: number): string {
  return `mqtt.connect(${JSON.stringify(`mqtt://${host}:${port}`)}, {username: ${JSON.stringify(c.id)}, password: ${JSON.stringify(c.token)}}).publish(${JSON.stringify(c.topic)}, JSON.stringify([{n: "hr", u: "beat/min", v: 61}]), {qos: 1})`;
}

/** What the QR code carries: everything a device needs to publish. */
export function qrPayload(c: Credentials, host: string, port: number): string {
  return JSON.stringify({ host, port, username: c.id, password: c.token, topic: c.topic });
}
