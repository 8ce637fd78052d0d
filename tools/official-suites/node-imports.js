// Globals the official Engine.IO / Socket.IO protocol test suites expect
// when they run under Node.js: a browser-like `WebSocket` and chai's
// `expect`. Debian ships `ws` (node-ws) but not chai, so this file provides
// the handful of assertions the suites use. It is ours; the suites are not
// committed (see README, "Official protocol test suites").
import assert from "node:assert";
import { createRequire } from "node:module";

// ES modules ignore NODE_PATH; require() honours it (Debian keeps ws in
// /usr/share/nodejs).
const { WebSocket } = createRequire(import.meta.url)("ws");

function bytes(value) {
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  if (ArrayBuffer.isView(value)) {
    return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  }
  return null;
}

function deepEqual(actual, expected) {
  const a = bytes(actual);
  const b = bytes(expected);
  if (a !== null || b !== null) {
    if (a === null || b === null || a.length !== b.length) return false;
    return a.every((byte, i) => byte === b[i]);
  }
  if (Array.isArray(actual) || Array.isArray(expected)) {
    if (!Array.isArray(actual) || !Array.isArray(expected)) return false;
    if (actual.length !== expected.length) return false;
    return actual.every((item, i) => deepEqual(item, expected[i]));
  }
  if (actual !== null && expected !== null &&
      typeof actual === "object" && typeof expected === "object") {
    const keys = Object.keys(actual).sort();
    const expectedKeys = Object.keys(expected).sort();
    if (!deepEqual(keys, expectedKeys)) return false;
    return keys.every((key) => deepEqual(actual[key], expected[key]));
  }
  return Object.is(actual, expected);
}

function show(value) {
  const b = bytes(value);
  if (b !== null) return `<bytes ${Array.from(b).join(",")}>`;
  return JSON.stringify(value);
}

function expect(actual) {
  const check = (ok, message) => assert.ok(ok, message);
  const api = {
    eql(expected) {
      check(deepEqual(actual, expected),
        `expected ${show(actual)} to deeply equal ${show(expected)}`);
    },
    startsWith(prefix) {
      check(typeof actual === "string" && actual.startsWith(prefix),
        `expected ${show(actual)} to start with ${show(prefix)}`);
    },
    a(type) {
      check(typeof actual === type, `expected ${show(actual)} to be a ${type}`);
    },
    oneOf(list) {
      check(list.includes(actual), `expected ${show(actual)} to be one of ${show(list)}`);
    },
    keys(...keys) {
      const actualKeys = Object.keys(actual ?? {}).sort();
      check(deepEqual(actualKeys, [...keys].sort()),
        `expected keys ${show(actualKeys)} to be exactly ${show(keys)}`);
    },
  };
  // chai's language chains: expect(x).to.have.all.keys(...), .to.be.a(...)
  api.to = api;
  api.be = api;
  api.have = api;
  api.all = api;
  return api;
}

globalThis.chai = { expect };
globalThis.WebSocket = WebSocket;
