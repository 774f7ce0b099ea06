// The component's entry module: componentize-js builds the `projection` world from it.
// Only this file knows it is inside a component; `balances.js` is plain JavaScript.

import * as documents from 'cairn:plugin/documents@0.2.0';
import balances from './balances.js';

export const { eventTypes, handle } = balances.bind(documents);
