"""cairn_sdk: the Python counterpart of the Rust guest SDK (`guest-sdk/`).

It owns everything between Cairn's `aggregate` world and plain Python domain code:
commands and events are dataclasses whose class name is their type, the state is a
dataclass kept as JSON by the host, a refusal is `raise Rejection(code, message)`.
It decodes a command's JSON payload into its dataclass (an unreadable one is the
client's `invalid_command`), encodes events and state as compact JSON in field order
(the bytes the Rust SDK writes for the same types), and folds events.

Pure Python, so domain code is tested natively with pytest; `cairn_sdk.world` binds
an aggregate to the bindings componentize-py generates (only inside a component).
"""

import dataclasses
import json
import typing
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

__all__ = [
    "Aggregate",
    "Context",
    "I64_MAX",
    "I64_MIN",
    "InvalidCommand",
    "Rejection",
    "saturating_add",
    "saturating_sub",
    "world",
]

I64_MAX = (1 << 63) - 1
I64_MIN = -(1 << 63)


def saturating_add(a: int, b: int) -> int:
    """`a + b` clamped to a signed 64-bit integer, like Rust's `i64::saturating_add`."""
    return max(I64_MIN, min(I64_MAX, a + b))


def saturating_sub(a: int, b: int) -> int:
    """`a - b` clamped to a signed 64-bit integer, like Rust's `i64::saturating_sub`."""
    return max(I64_MIN, min(I64_MAX, a - b))


class Rejection(Exception):
    """A domain refusal: the client gets 422 `rejected` with `domain_code` = `code`."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class InvalidCommand(Exception):
    """The command cannot be read (unknown type, bad payload): the client gets 400
    `invalid_command` with this message, and the command id is not used up."""


@dataclass
class Context:
    """What `decide` knows besides the state and the command. The time is the host's:
    never read a clock of your own in `decide`."""

    stream_id: str = ""
    #: Unix milliseconds, from the host clock.
    issued_at: int = 0


# ---------------------------------------------------------------------------
# JSON <-> dataclasses, checked like serde would: a field of type `int` is a
# signed 64-bit integer, `Optional[X]` may be absent or null, unknown keys are
# ignored, duplicate keys are an error.


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _no_duplicates(pairs: List[Tuple[str, Any]]) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate field `{key}`")
        out[key] = value
    return out


def loads(data: bytes) -> Any:
    """Strict JSON (no NaN or Infinity, no duplicate keys)."""
    return json.loads(
        data, parse_constant=_no_constants, object_pairs_hook=_no_duplicates
    )


def dumps(value: Any) -> bytes:
    """Compact JSON, keys in the order given: the Rust SDK's bytes for the same value."""
    return json.dumps(
        _plain(value), separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean `{str(value).lower()}`"
    if isinstance(value, int):
        return f"integer `{value}`"
    if isinstance(value, float):
        return f"floating point `{value}`"
    if isinstance(value, str):
        return f'string "{value}"'
    if isinstance(value, list):
        return "sequence"
    return "map"


def _convert(value: Any, hint: Any, where: str) -> Any:
    """`value` (parsed JSON) as type `hint`, or ValueError naming what was expected."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any or hint is object:
        return value
    if origin is typing.Union:
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return _convert(value, inner[0], where)
        for candidate in inner:
            try:
                return _convert(value, candidate, where)
            except ValueError:
                continue
        raise ValueError(f"{where}: invalid type: {_describe(value)}")
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ValueError(f"{where}: invalid type: {_describe(value)}, expected a boolean")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            if I64_MIN <= value <= I64_MAX:
                return value
            raise ValueError(f"{where}: invalid value: {_describe(value)}, expected i64")
        raise ValueError(f"{where}: invalid type: {_describe(value)}, expected i64")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ValueError(f"{where}: invalid type: {_describe(value)}, expected f64")
    if hint is str:
        if isinstance(value, str):
            return value
        raise ValueError(f"{where}: invalid type: {_describe(value)}, expected a string")
    if origin in (list, List, Sequence) or hint is list:
        if not isinstance(value, list):
            raise ValueError(f"{where}: invalid type: {_describe(value)}, expected a sequence")
        item = args[0] if args else Any
        return [_convert(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin in (dict, Dict) or hint is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{where}: invalid type: {_describe(value)}, expected a map")
        item = args[1] if len(args) == 2 else Any
        return {k: _convert(v, item, f"{where}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(hint):
        return from_json_value(hint, value, where)
    raise TypeError(f"{where}: cairn_sdk cannot decode fields of type {hint!r}")


def from_json_value(cls: type, value: Any, where: Optional[str] = None) -> Any:
    """An instance of dataclass `cls` from parsed JSON, every field checked."""
    where = where or cls.__name__
    if not isinstance(value, dict):
        raise ValueError(f"{where}: invalid type: {_describe(value)}, expected struct {cls.__name__}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for field in dataclasses.fields(cls):
        hint = hints.get(field.name, Any)
        if field.name in value:
            kwargs[field.name] = _convert(value[field.name], hint, f"{where}.{field.name}")
        elif (
            field.default is not dataclasses.MISSING
            or field.default_factory is not dataclasses.MISSING
        ):
            continue
        elif typing.get_origin(hint) is typing.Union and type(None) in typing.get_args(hint):
            kwargs[field.name] = None
        else:
            raise ValueError(f"{where}: missing field `{field.name}`")
    return cls(**kwargs)


def decode(classes: Sequence[type], type_name: str, payload: bytes) -> Any:
    """The dataclass named `type_name` among `classes`, from its JSON payload
    (empty, `null` and `{}` all mean no fields)."""
    by_name = {cls.__name__: cls for cls in classes}
    cls = by_name.get(type_name)
    if cls is None:
        expected = ", ".join(f"`{name}`" for name in by_name)
        raise ValueError(f"{type_name}: unknown variant `{type_name}`, expected one of {expected}")
    try:
        value = {} if payload in (b"", b"null") else loads(payload)
    except ValueError as error:
        raise ValueError(f"payload is not JSON: {error}") from None
    return from_json_value(cls, value, type_name)


def encode(event: Any) -> Tuple[str, bytes]:
    """An event dataclass as its (type, JSON payload) pair."""
    if not dataclasses.is_dataclass(event) or isinstance(event, type):
        raise TypeError(f"events must be dataclass instances, got {event!r}")
    return type(event).__name__, dumps(event)


# ---------------------------------------------------------------------------
# Aggregates.


class Aggregate:
    """An aggregate: a state dataclass (every field with a default: the initial
    state), command and event dataclasses, and two functions given with the
    `@aggregate.decide` and `@aggregate.evolve` decorators:

    - `decide(state, command, context) -> list of events`, or `raise Rejection(...)`;
    - `evolve(state, event) -> None`, changing `state` in place.
    """

    def __init__(self, state: type, commands: Sequence[type], events: Sequence[type]):
        self.state = state
        self.commands = list(commands)
        self.events = list(events)
        self._decide: Optional[Callable[..., List[Any]]] = None
        self._evolve: Optional[Callable[[Any, Any], None]] = None

    def decide(self, function: Callable[..., List[Any]]) -> Callable[..., List[Any]]:
        self._decide = function
        return function

    def evolve(self, function: Callable[[Any, Any], None]) -> Callable[[Any, Any], None]:
        self._evolve = function
        return function

    # The host's side, over JSON bytes; what the component exports calls these.

    def initial_state_json(self) -> bytes:
        return dumps(self.state())

    def load_state(self, state: bytes) -> Any:
        return from_json_value(self.state, loads(state))

    def decide_json(
        self, state: bytes, command_type: str, payload: bytes, context: Context
    ) -> List[Tuple[str, bytes]]:
        """The events a command causes as (type, payload) pairs; raises `Rejection`
        or `InvalidCommand`."""
        assert self._decide is not None, "no @aggregate.decide function"
        current = self.load_state(state)
        try:
            command = decode(self.commands, command_type, payload)
        except ValueError as error:
            raise InvalidCommand(str(error)) from None
        events = self._decide(current, command, context)
        return [encode(event) for event in events or []]

    def evolve_json(self, state: bytes, events: Sequence[Tuple[str, bytes]]) -> bytes:
        """Folds (type, payload) pairs into the state. An event that does not decode
        is a bug in the log or the plugin: it raises, which traps the call."""
        assert self._evolve is not None, "no @aggregate.evolve function"
        current = self.load_state(state)
        for event_type, payload in events:
            self._evolve(current, decode(self.events, event_type, payload))
        return dumps(current)

    # For native tests.

    def run(self, state: Any, command: Any, context: Optional[Context] = None) -> Any:
        """Decides `command` against `state` and folds the events into it, in place, as
        the host would; returns the events. Raises `Rejection`."""
        assert self._decide is not None and self._evolve is not None
        events = self._decide(state, command, context or Context())
        for event in events:
            self._evolve(state, event)
        return events


def world(aggregate: Aggregate) -> type:
    """The class componentize-py instantiates for the `aggregate` world: in the
    component's app module, `WitWorld = cairn_sdk.world(my_aggregate)`."""
    import wit_world  # generated by componentize-py at build time
    from componentize_py_types import Err
    from wit_world.imports import types as wit

    class WitWorld(wit_world.WitWorld):
        def initial_state(self) -> bytes:
            return aggregate.initial_state_json()

        def decide(self, state: bytes, command: "wit.Command") -> List["wit.NewEvent"]:
            context = Context(stream_id=command.stream_id, issued_at=command.issued_at)
            try:
                events = aggregate.decide_json(
                    state, command.command_type, command.payload, context
                )
            except Rejection as refused:
                raise Err(wit.DecideError_Rejected(wit.Rejection(refused.code, refused.message)))
            except InvalidCommand as invalid:
                raise Err(wit.DecideError_InvalidCommand(str(invalid)))
            return [wit.NewEvent(event_type, payload) for event_type, payload in events]

        def evolve(self, state: bytes, events: List["wit.RecordedEvent"]) -> bytes:
            return aggregate.evolve_json(state, [(e.event_type, e.payload) for e in events])

    return WitWorld
