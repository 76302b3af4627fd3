"""SL 651-2014 (水文监测数据通信规约) HEX/BCD codec: frames, bodies, elements, M3 packets.

Wire vocabulary for hydrological telemetry stations (遥测站) and their receiving centre:
``decode`` bytes into a typed ``Message`` and ``encode`` it back byte for byte;
``acknowledge`` builds the centre's answer; ``multipacket`` splits and reassembles M3
uploads. Every refusal is an ``Sl651Error`` with a ``Reason`` (CRC, length, truncated,
unknown element, bad BCD, bad time, bad frame, bad value). Pure functions over bytes:
this package must never import anything of the project (not even the rest of
``protocol``), never do I/O and never read a clock. Not covered yet: the ASCII encoding
(refused by name: its bodies are mnemonic text, not the HEX body spelled in hex digits),
function codes 35 and 39-51 (their bodies stay ``RawBody``), user-defined FFxx elements.
"""

from protocol.sl651.body import (
    Acknowledgement,
    Body,
    LinkKeepAlive,
    ObservationGroup,
    Query,
    RawBody,
    Report,
    StationBlock,
    StationType,
)
from protocol.sl651.elements import (
    NUMBERS,
    ElementId,
    FiveMinuteSeries,
    Item,
    Number,
    NumberSpec,
    Picture,
    Series,
    StationStatus,
    TimeStep,
    number,
)
from protocol.sl651.errors import (
    BadBcdError,
    BadFrameError,
    BadTimeError,
    BadValueError,
    CrcError,
    LengthError,
    Reason,
    Sl651Error,
    TruncatedError,
    UnknownElementError,
)
from protocol.sl651.frame import (
    Control,
    Direction,
    Frame,
    FunctionCode,
    Header,
    Packet,
    StationAddress,
    decode_frame,
    encode_frame,
    frame_size,
)
from protocol.sl651.message import Message, acknowledge, decode, encode
from protocol.sl651.multipacket import Reassembly, split
from protocol.sl651.wire import crc16

__all__ = [
    "NUMBERS",
    "Acknowledgement",
    "BadBcdError",
    "BadFrameError",
    "BadTimeError",
    "BadValueError",
    "Body",
    "Control",
    "CrcError",
    "Direction",
    "ElementId",
    "FiveMinuteSeries",
    "Frame",
    "FunctionCode",
    "Header",
    "Item",
    "LengthError",
    "LinkKeepAlive",
    "Message",
    "Number",
    "NumberSpec",
    "ObservationGroup",
    "Packet",
    "Picture",
    "Query",
    "RawBody",
    "Reason",
    "Reassembly",
    "Report",
    "Series",
    "Sl651Error",
    "StationAddress",
    "StationBlock",
    "StationStatus",
    "StationType",
    "TimeStep",
    "TruncatedError",
    "UnknownElementError",
    "acknowledge",
    "crc16",
    "decode",
    "decode_frame",
    "encode",
    "encode_frame",
    "frame_size",
    "number",
    "split",
]
