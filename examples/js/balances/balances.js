// The `balances` projection in JavaScript: one document per account stream, keyed by the
// stream id (`account-42`), holding {"owner", "balance", "version"}. The same documents
// as the Rust `plugins/balances`.

import { i64, projection } from '../cairn-sdk/index.js';

export default projection({
  // The account events it reads, with the fields it needs.
  events: {
    Opened: { owner: 'string' },
    Deposited: { amount: 'i64' },
    Withdrawn: { amount: 'i64' },
  },

  handle(event, docs) {
    // Only account streams: another aggregate may use the same event names.
    if (!event.streamId.startsWith('account-')) return;
    const doc = docs.get(event.streamId) ?? { owner: null, balance: 0, version: 0 };
    switch (event.type) {
      case 'Opened':
        doc.owner = event.data.owner;
        break;
      // Saturating: raw appends can carry any amount; a sum never wraps.
      case 'Deposited':
        doc.balance = i64.add(doc.balance, event.data.amount);
        break;
      case 'Withdrawn':
        doc.balance = i64.sub(doc.balance, event.data.amount);
        break;
    }
    doc.version = event.version;
    docs.put(event.streamId, doc);
  },
});
