"""How the HTTP load user reads an answer: the short way for a Content-Length response,
the full parser for anything else, byte for byte the same result either way."""

from __future__ import annotations

import socket

import gevent.socket
import pytest

from harness.loadgen.swarm.httpwire import Answer, build_request, read_answer


def answer_to(raw: bytes, chunks: int = 1) -> Answer:
    """What ``read_answer`` makes of ``raw``, arriving in ``chunks`` pieces."""
    ours, theirs = gevent.socket.socketpair()
    with ours, theirs:
        step = max(1, len(raw) // chunks)

        def send() -> None:
            for i in range(0, len(raw), step):
                theirs.sendall(raw[i:i + step])
                gevent.sleep(0.001)
            theirs.shutdown(socket.SHUT_WR)  # as a server that has said all it will

        sender = gevent.spawn(send)
        try:
            return read_answer(ours)
        finally:
            sender.join()


BODY = b'{"predictions":[{"label":1}]}'


@pytest.mark.parametrize("chunks", [1, 3, 40])
def test_content_length_answer(chunks: int) -> None:
    raw = (b"HTTP/1.1 200 OK\r\nServer: x\r\nContent-Type: application/json\r\n"
           b"Content-Length: %d\r\nX-Deploybench-Init-Ms: 12\r\n\r\n" % len(BODY)) + BODY
    got = answer_to(raw, chunks)
    assert (got.status, got.body, got.close) == (200, BODY, False)
    assert got.has_header(b"x-deploybench-init-ms")
    assert not got.has_header(b"x-other")


def test_a_closing_answer_says_so() -> None:
    raw = (b"HTTP/1.1 413 Payload Too Large\r\nConnection: close\r\nContent-Length: 2\r\n"
           b"\r\nno")
    got = answer_to(raw)
    assert (got.status, got.body, got.close) == (413, b"no", True)


def test_a_chunked_answer_goes_to_the_full_parser() -> None:
    raw = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"5\r\n" + BODY[:5] + b"\r\n" + b"%x\r\n" % (len(BODY) - 5) + BODY[5:]
           + b"\r\n0\r\n\r\n")
    got = answer_to(raw, 4)
    assert (got.status, got.body, got.close) == (200, BODY, False)


def test_an_http_1_0_answer_closes() -> None:
    got = answer_to(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
    assert (got.status, got.body, got.close) == (200, b"ok", True)


def test_an_interim_answer_is_skipped() -> None:
    raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    got = answer_to(raw)
    assert (got.status, got.body) == (200, b"ok")


@pytest.mark.parametrize("raw", [b"", b"HTTP/1.1 200 OK\r\nContent-Le",
                                 b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort"])
def test_a_cut_answer_is_an_error(raw: bytes) -> None:
    with pytest.raises(ConnectionError, match=r"closed before"):
        answer_to(raw)


def test_bytes_beyond_the_length_end_the_connection_not_the_answer() -> None:
    got = answer_to(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA")
    assert (got.status, got.body, got.close) == (200, b"ok", True)


@pytest.mark.parametrize(("header", "close"), [
    (b"Connection:close", True), (b"Connection: keep-alive, close", True),
    (b"connection: Close", True), (b"Connection: keep-alive", False),
    (b"X-Connection: close", False),
])
def test_connection_close_in_any_spelling(header: bytes, close: bool) -> None:
    got = answer_to(b"HTTP/1.1 200 OK\r\n" + header + b"\r\nContent-Length: 2\r\n\r\nok")
    assert (got.body, got.close) == (b"ok", close)


def test_a_no_content_answer_has_no_body_whatever_its_length_says() -> None:
    got = answer_to(b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n")
    assert (got.status, got.body) == (204, b"")


def test_the_request_is_what_wrk_sends() -> None:
    raw = build_request("127.0.0.1:8000", "/predict", b"{}",
                        {"Content-Type": "application/json", "User-Agent": "x"})
    assert raw == (b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n"
                   b"Content-Type: application/json\r\nUser-Agent: x\r\n"
                   b"Content-Length: 2\r\n\r\n{}")
