// JSON for Cairn plugins in JavaScript: the bytes the Rust SDK reads and writes.
// JavaScript numbers are doubles, but events and documents carry 64-bit integers: an
// integer literal beyond Number.MAX_SAFE_INTEGER is read as a BigInt (exact), and
// BigInts are written as plain JSON integers. Everything else is JSON.parse's and
// JSON.stringify's behaviour, strict (no NaN, no Infinity, no duplicate keys).

const decoder = new TextDecoder('utf-8', { fatal: true });
const encoder = new TextEncoder();

const NUMBER = /-?(?:0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/y;
const WHITESPACE = /[ \t\n\r]*/y;

/** Parses JSON text (a string or UTF-8 bytes); big integers become BigInts. */
export function parse(input) {
  const text = typeof input === 'string' ? input : decoder.decode(input);
  let at = 0;
  const fail = (what) => {
    throw new SyntaxError(`invalid JSON at offset ${at}: ${what}`);
  };
  const skip = () => {
    WHITESPACE.lastIndex = at;
    WHITESPACE.exec(text);
    at = WHITESPACE.lastIndex;
  };
  const value = () => {
    skip();
    const c = text[at];
    if (c === '{') {
      at++;
      const object = {};
      skip();
      if (text[at] === '}') {
        at++;
        return object;
      }
      for (;;) {
        skip();
        if (text[at] !== '"') fail('expected a key');
        const key = string();
        if (Object.prototype.hasOwnProperty.call(object, key)) fail(`duplicate key "${key}"`);
        skip();
        if (text[at++] !== ':') fail('expected ":"');
        object[key] = value();
        skip();
        const next = text[at++];
        if (next === '}') return object;
        if (next !== ',') fail('expected "," or "}"');
      }
    }
    if (c === '[') {
      at++;
      const array = [];
      skip();
      if (text[at] === ']') {
        at++;
        return array;
      }
      for (;;) {
        array.push(value());
        skip();
        const next = text[at++];
        if (next === ']') return array;
        if (next !== ',') fail('expected "," or "]"');
      }
    }
    if (c === '"') return string();
    for (const [word, meaning] of [['true', true], ['false', false], ['null', null]]) {
      if (text.startsWith(word, at)) {
        at += word.length;
        return meaning;
      }
    }
    NUMBER.lastIndex = at;
    const number = NUMBER.exec(text);
    if (!number) fail('expected a value');
    at = NUMBER.lastIndex;
    const literal = number[0];
    const float = number[1] !== undefined || number[2] !== undefined;
    const n = Number(literal);
    if (!float && !Number.isSafeInteger(n)) return BigInt(literal);
    return n;
  };
  const string = () => {
    const start = at;
    at++;
    for (;;) {
      const c = text[at];
      if (c === undefined) fail('unterminated string');
      if (c === '\\') at += 2;
      else if (c === '"') break;
      else at++;
    }
    at++;
    // JSON.parse checks escapes and control characters of the string alone.
    return JSON.parse(text.slice(start, at));
  };
  const result = value();
  skip();
  if (at !== text.length) fail('trailing characters');
  return result;
}

/** Writes a value as compact JSON text; BigInts as integers, undefined fields left out. */
export function stringify(value) {
  if (value === null) return 'null';
  switch (typeof value) {
    case 'boolean':
      return value ? 'true' : 'false';
    case 'number':
      if (!Number.isFinite(value)) throw new TypeError(`${value} is not JSON`);
      return JSON.stringify(value);
    case 'bigint':
      return value.toString();
    case 'string':
      return JSON.stringify(value);
    case 'object': {
      if (Array.isArray(value)) {
        return `[${value.map((v) => (v === undefined ? 'null' : stringify(v))).join(',')}]`;
      }
      const fields = [];
      for (const [key, v] of Object.entries(value)) {
        if (v === undefined || typeof v === 'function') continue;
        fields.push(`${JSON.stringify(key)}:${stringify(v)}`);
      }
      return `{${fields.join(',')}}`;
    }
    default:
      throw new TypeError(`a ${typeof value} is not JSON`);
  }
}

/** JSON bytes (UTF-8) of a value. */
export function toBytes(value) {
  return encoder.encode(stringify(value));
}
