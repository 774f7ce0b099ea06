"""Native tests of the Python `account` aggregate: the domain rules as plain Python, and
the JSON the host sees (payloads, state, rejections, unreadable commands) through the
same helper code the component runs."""

import json

import pytest

from account import Account, Deposit, Open, Withdraw, account
from cairn_sdk import I64_MAX, Context, InvalidCommand, Rejection


def opened(balance: int) -> Account:
    return Account(open=True, owner="ann", balance=balance)


def refusal(state: Account, command) -> str:
    with pytest.raises(Rejection) as refused:
        account.run(state, command)
    return refused.value.code


def test_open_deposit_withdraw():
    state = Account()
    account.run(state, Open(owner="ann"))
    account.run(state, Deposit(amount=100))
    account.run(state, Withdraw(amount=30))
    assert state == opened(70)


def test_opening_twice_is_refused():
    assert refusal(opened(0), Open(owner="bob")) == "already_open"


def test_money_needs_an_open_account():
    assert refusal(Account(), Deposit(amount=5)) == "not_open"
    assert refusal(Account(), Withdraw(amount=5)) == "not_open"


def test_overdrafts_are_refused():
    assert refusal(opened(10), Withdraw(amount=11)) == "insufficient_funds"


def test_a_deposit_that_would_overflow_is_refused():
    state = opened(5)
    assert refusal(state, Deposit(amount=I64_MAX)) == "invalid_amount"
    assert state == opened(5)
    account.run(state, Deposit(amount=I64_MAX - 5))
    assert state.balance == I64_MAX


@pytest.mark.parametrize("amount", [0, -5])
def test_amounts_must_be_positive(amount):
    assert refusal(opened(10), Deposit(amount=amount)) == "invalid_amount"
    assert refusal(opened(10), Withdraw(amount=amount)) == "invalid_amount"


# The host's view: bytes in, bytes out, exactly what the Rust aggregate answers.


def test_state_json_is_the_rust_aggregates():
    assert account.initial_state_json() == b'{"open":false,"owner":null,"balance":0}'
    state = account.evolve_json(
        account.initial_state_json(),
        [("Opened", b'{"owner":"ann"}'), ("Deposited", b'{"amount":100}'), ("Withdrawn", b'{"amount":30}')],
    )
    assert state == b'{"open":true,"owner":"ann","balance":70}'


def test_decide_answers_events_as_type_and_json_payload():
    events = account.decide_json(
        b'{"open":true,"owner":"ann","balance":70}', "Deposit", b'{"amount":5}', Context()
    )
    assert events == [("Deposited", b'{"amount":5}')]
    events = account.decide_json(account.initial_state_json(), "Open", b'{"owner":"\xc3\xa9"}', Context())
    assert events == [("Opened", '{"owner":"é"}'.encode())]


def test_rejections_carry_the_rust_messages():
    with pytest.raises(Rejection) as refused:
        account.decide_json(b'{"open":true,"owner":"ann","balance":10}', "Withdraw", b'{"amount":11}', Context())
    assert (refused.value.code, refused.value.message) == (
        "insufficient_funds",
        "the balance is 10, less than 11",
    )


@pytest.mark.parametrize(
    "command_type,payload,says",
    [
        ("Close", b"{}", "unknown variant `Close`"),
        ("Deposit", b'{"amount":"ten"}', "expected i64"),
        ("Deposit", b'{"amount":1.5}', "expected i64"),
        ("Deposit", b'{"amount":true}', "expected i64"),
        ("Deposit", b'{"amount":9223372036854775808}', "expected i64"),
        ("Deposit", b"{}", "missing field `amount`"),
        ("Deposit", b'{"amount":1,"amount":2}', "duplicate field `amount`"),
        ("Deposit", b'{"amount":NaN}', "not JSON"),
        ("Open", b'{"owner":null}', "expected a string"),
        ("Open", b"[1]", "expected struct Open"),
    ],
)
def test_unreadable_commands_are_invalid_not_rejected(command_type, payload, says):
    with pytest.raises(InvalidCommand) as invalid:
        account.decide_json(account.initial_state_json(), command_type, payload, Context())
    assert says in str(invalid.value)


def test_unknown_keys_are_ignored_like_serde():
    events = account.decide_json(account.initial_state_json(), "Open", b'{"owner":"ann","x":1}', Context())
    assert [json.loads(p) for _, p in events] == [{"owner": "ann"}]


def test_history_saturates_instead_of_growing_past_64_bits():
    state = account.evolve_json(
        b'{"open":true,"owner":"ann","balance":5}', [("Deposited", b'{"amount":9223372036854775807}')]
    )
    assert json.loads(state)["balance"] == I64_MAX


def test_an_event_that_does_not_decode_is_an_error_not_a_skip():
    with pytest.raises(ValueError):
        account.evolve_json(account.initial_state_json(), [("Deposited", b'{"amount":"x"}')])
