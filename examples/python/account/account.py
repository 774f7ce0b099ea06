"""The `account` aggregate in Python: a bank account that can be opened, paid into and
drawn from, never below zero. Streams are `account-{id}`. The same commands, events,
rejections and state JSON as the Rust `plugins/account`."""

from dataclasses import dataclass
from typing import Optional

from cairn_sdk import I64_MAX, Aggregate, Rejection, saturating_add, saturating_sub


@dataclass
class Account:
    open: bool = False
    owner: Optional[str] = None
    #: In the smallest unit of the currency.
    balance: int = 0


# Commands: the class name is the command type, the fields its JSON payload.
@dataclass
class Open:
    owner: str


@dataclass
class Deposit:
    amount: int


@dataclass
class Withdraw:
    amount: int


# Events, likewise.
@dataclass
class Opened:
    owner: str


@dataclass
class Deposited:
    amount: int


@dataclass
class Withdrawn:
    amount: int


account = Aggregate(
    state=Account,
    commands=[Open, Deposit, Withdraw],
    events=[Opened, Deposited, Withdrawn],
)


def positive(amount: int) -> int:
    if amount <= 0:
        raise Rejection("invalid_amount", f"the amount must be positive, not {amount}")
    return amount


def must_be_open(state: Account) -> None:
    if not state.open:
        raise Rejection("not_open", "the account is not open")


@account.decide
def decide(state: Account, command, context) -> list:
    if isinstance(command, Open):
        if state.open:
            raise Rejection("already_open", "the account is already open")
        return [Opened(owner=command.owner)]
    if isinstance(command, Deposit):
        must_be_open(state)
        amount = positive(command.amount)
        if state.balance + amount > I64_MAX:
            raise Rejection(
                "invalid_amount",
                f"a deposit of {amount} would take the balance of {state.balance} past the "
                "largest balance an account can hold",
            )
        return [Deposited(amount=amount)]
    if isinstance(command, Withdraw):
        must_be_open(state)
        amount = positive(command.amount)
        if amount > state.balance:
            raise Rejection(
                "insufficient_funds", f"the balance is {state.balance}, less than {amount}"
            )
        return [Withdrawn(amount=amount)]
    raise AssertionError(f"unhandled command {command!r}")


@account.evolve
def evolve(state: Account, event) -> None:
    if isinstance(event, Opened):
        state.open = True
        state.owner = event.owner
    # Saturating: history written before deposits were checked (or by raw appends)
    # must still fold, and the balance stays a 64-bit integer like the Rust one's.
    elif isinstance(event, Deposited):
        state.balance = saturating_add(state.balance, event.amount)
    elif isinstance(event, Withdrawn):
        state.balance = saturating_sub(state.balance, event.amount)
