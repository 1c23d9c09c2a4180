"""What every processor writes: one message, as the batched loop hands it to Kafka.

Here, in the runtime, because the loop sends what the gate and the router make: the runtime
knows no processor, and the processors all know it.
"""

from __future__ import annotations

from typing import NamedTuple

from govbus.schemas.framing import Headers


class Output(NamedTuple):
    """One message a processor writes. A named tuple, not a frozen dataclass: the router makes
    one per delivery, and a frozen dataclass took twice as long to make (bench: fan_out)."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers
