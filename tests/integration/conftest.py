import socket

import pytest

from tests.integration.netns import Netns


@pytest.fixture
def guest_ns():
    ns = Netns("g")
    yield ns
    ns.delete()


@pytest.fixture
def free_port():
    def pick() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]
    return pick
