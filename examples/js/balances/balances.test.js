// Native tests of the JavaScript `balances` projection (node --test): the documents it
// writes, byte for byte what the Rust projection writes, through the same helper code
// the component runs.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { memoryDocuments, parse, stringify, testEvent } from '../cairn-sdk/index.js';
import balances from './balances.js';

test('one document per account', () => {
  const docs = memoryDocuments();
  balances.run(
    [
      testEvent('account-1', 1, 'Opened', { owner: 'ann' }),
      testEvent('account-2', 1, 'Opened', { owner: 'bob' }),
      testEvent('account-1', 2, 'Deposited', { amount: 100 }),
      testEvent('account-1', 3, 'Withdrawn', { amount: 30 }),
    ],
    docs,
  );
  assert.deepEqual(docs.keys(), ['account-1', 'account-2']);
  assert.equal(docs.json('account-1'), '{"owner":"ann","balance":70,"version":3}');
  assert.equal(docs.json('account-2'), '{"owner":"bob","balance":0,"version":1}');
});

test('a deposit before the opening still makes a document, as in Rust', () => {
  const docs = memoryDocuments();
  balances.run([testEvent('account-9', 1, 'Deposited', { amount: 5 })], docs);
  assert.equal(docs.json('account-9'), '{"owner":null,"balance":5,"version":1}');
});

test('sums saturate instead of wrapping, exactly at 64 bits', () => {
  const docs = memoryDocuments();
  const max = 9223372036854775807n;
  balances.run(
    [
      testEvent('account-1', 1, 'Deposited', { amount: 5 }),
      testEvent('account-1', 2, 'Deposited', { amount: max }),
    ],
    docs,
  );
  assert.equal(docs.json('account-1'), '{"owner":null,"balance":9223372036854775807,"version":2}');
  balances.run([testEvent('account-1', 3, 'Withdrawn', { amount: 7 })], docs);
  assert.equal(docs.json('account-1'), '{"owner":null,"balance":9223372036854775800,"version":3}');
});

test('other streams are ignored', () => {
  const docs = memoryDocuments();
  balances.run([testEvent('loan-1', 1, 'Deposited', { amount: 5 })], docs);
  assert.deepEqual(docs.keys(), []);
});

test('it asks the host for the account events only', () => {
  assert.deepEqual(balances.eventTypes(), ['Opened', 'Deposited', 'Withdrawn']);
});

test('an event that does not decode throws instead of being skipped', () => {
  for (const payload of [{ amount: 'ten' }, { amount: 1.5 }, {}, { amount: 9223372036854775808n }]) {
    assert.throws(
      () => balances.run([testEvent('account-1', 1, 'Deposited', payload)], memoryDocuments()),
      /does not decode/,
    );
  }
});

test('the component exports go through the host documents interface', () => {
  const host = memoryDocuments();
  const exports = balances.bind(host);
  exports.handle([testEvent('account-3', 1, 'Opened', { owner: 'cy' })]);
  assert.deepEqual(exports.eventTypes(), ['Opened', 'Deposited', 'Withdrawn']);
  assert.equal(host.json('account-3'), '{"owner":"cy","balance":0,"version":1}');
});

test('JSON keeps 64-bit integers exact and refuses what is not JSON', () => {
  assert.equal(stringify(parse('{"a":9223372036854775807,"b":-1.5e3,"c":[true,null,"\\u00e9"]}')),
    '{"a":9223372036854775807,"b":-1500,"c":[true,null,"é"]}');
  for (const bad of ['{"a":1,"a":2}', 'NaN', '{"a":1,}', '[1] x', '"\u0001"']) {
    assert.throws(() => parse(bad), SyntaxError, bad);
  }
});
