"""An SL 651-2014 station's TCP link to its centre: send a frame, take the answer to it.

A station (the gateway's SL 651 uplink, the simulated station) connects once and sends
frame after frame; after each it waits for the centre's answer to that very frame (from
the centre, same function, same serial) and takes nothing else as one. When no answer
comes the caller hangs up and sends the very same bytes again later. This module never
retries or waits between tries itself (the caller owns the schedule), never logs a
password, and imports nothing of the project but the codec.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum

from protocol.sl651 import Direction, Message, Sl651Error, decode, frame_size
from protocol.sl651.frame import HEADER_SIZE


class Silence(enum.Enum):
    """Why a frame got no answer."""

    TIMEOUT = "no answer in time"
    CLOSED = "the centre closed the link without answering"
    GARBLED = "the answer was not a frame"
    UNRELATED = "the answer was to another frame"


class NoAnswerError(Exception):
    """The centre did not answer a frame; ``silence`` says how."""

    def __init__(self, silence: Silence) -> None:
        super().__init__(silence.value)
        self.silence = silence


async def read_frame(reader: asyncio.StreamReader) -> Message:
    """The next frame on ``reader``, decoded (``Sl651Error`` if it is not one)."""
    head = await reader.readexactly(HEADER_SIZE - 1)
    size = frame_size(head)
    if size is None:
        raise Sl651Error("no frame header")
    return decode(head + await reader.readexactly(size - len(head)))


def answers(answer: Message, function: int, serial: int) -> bool:
    """Whether ``answer`` is the centre's answer to a frame of ``function`` and ``serial``."""
    return (
        answer.header.direction is Direction.DOWN
        and answer.header.function == function
        and getattr(answer.body, "serial", serial) == serial
    )


def first_frame(frames: bytes) -> Message:
    """The first frame of ``frames`` (one frame, or the packets of an M3 upload), decoded."""
    size = frame_size(frames[: HEADER_SIZE - 1]) or len(frames)
    return decode(frames[:size])


class StationLink:
    """One TCP link to ``host:port``; it connects on the first send and after a hang-up."""

    def __init__(self, host: str, port: int, connect_timeout_s: float = 10.0) -> None:
        self.host = host
        self.port = port
        self.connect_timeout_s = connect_timeout_s
        self.connects = 0
        self._link: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    @property
    def connected(self) -> bool:
        """Whether a link is open (it may still turn out dead on the next send)."""
        return self._link is not None

    async def connect(self) -> None:
        """Open the link unless it is open (raises ``OSError`` or ``TimeoutError``)."""
        if self._link is None:
            async with asyncio.timeout(self.connect_timeout_s):
                self._link = await asyncio.open_connection(self.host, self.port)
            self.connects += 1

    async def send(self, frames: bytes) -> None:
        """Connect if needed and write ``frames``.

        Raises ``OSError`` or ``TimeoutError`` when it cannot connect, ``ConnectionError``
        (the link hung up) when the write fails.
        """
        await self.connect()
        assert self._link is not None
        _, writer = self._link
        writer.write(frames)
        try:
            await writer.drain()
        except ConnectionError:
            await self.hang_up()
            raise

    async def frame(self, within_s: float) -> Message:
        """The centre's next frame, whatever it answers; ``NoAnswerError`` if none came.

        The link is hung up whenever no frame came, so a late one is never taken for the
        next frame's answer.
        """
        if self._link is None:
            raise NoAnswerError(Silence.CLOSED)
        reader, _ = self._link
        try:
            async with asyncio.timeout(within_s):
                return await read_frame(reader)
        except TimeoutError:
            silence = Silence.TIMEOUT
        except (ConnectionError, asyncio.IncompleteReadError):
            silence = Silence.CLOSED
        except Sl651Error:
            silence = Silence.GARBLED
        await self.hang_up()
        raise NoAnswerError(silence)

    async def answer(self, function: int, serial: int, within_s: float) -> Message:
        """The centre's answer to the frame just sent; ``NoAnswerError`` says why none came.

        An unrelated frame is no answer: the link is hung up then too.
        """
        answer = await self.frame(within_s)
        if answers(answer, function, serial):
            return answer
        await self.hang_up()
        raise NoAnswerError(Silence.UNRELATED)

    async def hang_up(self) -> None:
        """Close the link (the next send connects again)."""
        if self._link is None:
            return
        _, writer = self._link
        self._link = None
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()
