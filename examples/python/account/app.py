"""The component's entry module: componentize-py instantiates `WitWorld` from here.
Only this file knows it is inside a component; `account.py` is plain Python."""

import cairn_sdk
from account import account

WitWorld = cairn_sdk.world(account)
