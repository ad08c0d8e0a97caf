"""The thin asyncio shell: sockets and clocks around a sans-I/O ``SansIOCore``.

One transport object per socket drives exactly one core (a user agent, the registrar, or a
multiplexer of many user agents). See ``callmeter.sip.core`` for the contract.
"""

from callmeter._compiled import pickle_frozen_dataclasses
from callmeter.transport.loop import (
    CoreDriver,
    TransportStats,
    loop_implementation,
    new_event_loop,
    run,
    tune_gc_for_load,
    uvloop_available,
)
from callmeter.transport.media import MediaSocket, MediaTicker, open_media, open_media_socket
from callmeter.transport.tcp import DEFAULT_CONNECT_TIMEOUT_S, TcpTransport, open_tcp
from callmeter.transport.udp import SOCKET_BUFFER_BYTES, UdpTransport, open_udp

pickle_frozen_dataclasses("transport")

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT_S",
    "SOCKET_BUFFER_BYTES",
    "CoreDriver",
    "MediaSocket",
    "MediaTicker",
    "TcpTransport",
    "TransportStats",
    "UdpTransport",
    "loop_implementation",
    "new_event_loop",
    "open_media",
    "open_media_socket",
    "open_tcp",
    "open_udp",
    "run",
    "tune_gc_for_load",
    "uvloop_available",
]
