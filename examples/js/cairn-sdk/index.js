// cairn-sdk: the JavaScript counterpart of the Rust guest SDK (`guest-sdk/`) for
// projections. It owns everything between Cairn's `projection` world and plain
// JavaScript domain code: events arrive decoded and checked against a small schema
// (`{ Deposited: { amount: 'i64' } }`), documents are plain objects read and written
// as JSON through the host, and 64-bit integers stay exact (see json.js and `i64`).
//
// Domain code:   export default projection({ events: {...}, handle(event, docs) {...} });
// Component:     export const { eventTypes, handle } = myProjection.bind(documents);
// Native tests:  myProjection.run([testEvent(...)], memoryDocuments());

import { parse, stringify, toBytes } from './json.js';

export { parse, stringify, toBytes };

const I64_MAX = (1n << 63n) - 1n;
const I64_MIN = -(1n << 63n);

const clampI64 = (big) => {
  const clamped = big > I64_MAX ? I64_MAX : big < I64_MIN ? I64_MIN : big;
  const n = Number(clamped);
  return Number.isSafeInteger(n) ? n : clamped;
};

const toBig = (x) => (typeof x === 'bigint' ? x : BigInt(x));

/** Signed 64-bit integer arithmetic that saturates like Rust's, on numbers or BigInts;
 * answers a number when it is exact as one, a BigInt otherwise. */
export const i64 = {
  MAX: I64_MAX,
  MIN: I64_MIN,
  add: (a, b) => clampI64(toBig(a) + toBig(b)),
  sub: (a, b) => clampI64(toBig(a) - toBig(b)),
};

const isI64 = (v) =>
  (typeof v === 'number' && Number.isSafeInteger(v)) ||
  (typeof v === 'bigint' && v >= I64_MIN && v <= I64_MAX);

const CHECKS = {
  string: (v) => typeof v === 'string',
  i64: isI64,
  u64: (v) => isI64(v) && v >= 0,
  number: (v) => typeof v === 'number',
  boolean: (v) => typeof v === 'boolean',
  object: (v) => v !== null && typeof v === 'object' && !Array.isArray(v),
  array: Array.isArray,
  any: () => true,
};

/** Checks an event's payload against its schema: `{ field: 'i64' | 'string' | … }`,
 * a trailing `?` for a field that may be absent or null. Throws what is wrong. */
export function checkPayload(type, data, schema) {
  if (!CHECKS.object(data)) throw new TypeError(`${type}: the payload is not a JSON object`);
  for (const [field, kind] of Object.entries(schema)) {
    const optional = kind.endsWith('?');
    const check = CHECKS[optional ? kind.slice(0, -1) : kind];
    if (!check) throw new TypeError(`${type}.${field}: unknown schema type '${kind}'`);
    const value = data[field];
    if (value === undefined || value === null) {
      if (optional) continue;
      throw new TypeError(`${type}: missing field \`${field}\``);
    }
    if (!check(value)) throw new TypeError(`${type}.${field}: expected ${kind}, got ${stringify(value)}`);
  }
  return data;
}

/** Documents kept in a Map, for native tests: the same interface as the host's. */
export function memoryDocuments() {
  const map = new Map();
  return {
    get: (key) => map.get(key),
    put: (key, bytes) => void map.set(key, bytes),
    delete: (key) => void map.delete(key),
    keys: () => [...map.keys()].sort(),
    json: (key) => (map.has(key) ? new TextDecoder().decode(map.get(key)) : undefined),
  };
}

/** What `handle` is given: the host's `documents` as JSON values. */
function jsonDocuments(host) {
  return {
    get: (key) => {
      const bytes = host.get(key);
      if (bytes === undefined || bytes === null) return undefined;
      return parse(bytes);
    },
    put: (key, doc) => host.put(key, toBytes(doc)),
    delete: (key) => host.delete(key),
  };
}

/** A recorded event for native tests (position = version, recorded at the epoch). */
export function testEvent(streamId, version, type, data, extra = {}) {
  return {
    eventId: `${streamId}-${version}`,
    streamId,
    version: BigInt(version),
    position: BigInt(extra.position ?? version),
    eventType: type,
    payload: toBytes(data),
    metadata: toBytes(extra.metadata ?? {}),
    recordedAt: BigInt(extra.recordedAt ?? 0),
  };
}

/**
 * A projection. `events` maps each event type it wants to its payload schema (an
 * empty object wants every type, and skips those it has no schema for); `handle(event,
 * docs)` gets one decoded event at a time:
 *   event: { eventId, streamId, version, position, recordedAt, type, metadata, data }
 *   docs:  { get(key) -> object | undefined, put(key, object), delete(key) }
 * An event of a wanted type whose payload does not match its schema throws: the host
 * parks the projection with the error shown, rather than skip it silently.
 */
export function projection({ events = {}, handle }) {
  const wanted = Object.keys(events);
  const run = (recorded, docs) => {
    const json = jsonDocuments(docs);
    for (const e of recorded) {
      const schema = events[e.eventType];
      if (schema === undefined) {
        if (wanted.length === 0) continue;
        throw new TypeError(`event ${e.eventType} of ${e.streamId} was not asked for`);
      }
      let data;
      try {
        data = checkPayload(e.eventType, parse(e.payload), schema);
      } catch (error) {
        throw new TypeError(
          `event ${e.eventType} of ${e.streamId} (position ${e.position}) does not decode: ${error.message}`,
        );
      }
      let metadata = null;
      try {
        metadata = parse(e.metadata);
      } catch {
        // Metadata the writer sent is shown as it parsed; unreadable is null.
      }
      handle(
        {
          eventId: e.eventId,
          streamId: e.streamId,
          version: Number(e.version),
          position: Number(e.position),
          recordedAt: Number(e.recordedAt),
          type: e.eventType,
          metadata,
          data,
        },
        json,
      );
    }
  };
  return {
    eventTypes: () => [...wanted],
    /** Runs recorded events (the host's records) against documents (the host's, or
     * `memoryDocuments()` in tests). */
    run,
    /** The component's exports over the host's `documents` import. */
    bind: (documents) => ({
      eventTypes: () => [...wanted],
      handle: (recorded) => run(recorded, documents),
    }),
  };
}
