from __future__ import annotations

import json

import numpy as np
import pytest

from targets.bundles.protocol import Prediction
from targets.errors import RequestError
from targets.wire import codec

SHAPE = (4,)
LIMITS = codec.Limits(max_body_bytes=4096, max_batch=8)


def decode(content_type: str | None, body: bytes, headers: dict[str, str] | None = None
           ) -> np.ndarray:
    return codec.decode_request(content_type, body, headers or {}, SHAPE, LIMITS)


@pytest.mark.parametrize("encoding", codec.ENCODINGS)
def test_round_trip(encoding: str) -> None:
    batch = np.arange(8, dtype=np.float32).reshape(2, 4) / 3
    body, headers = codec.encode_request(batch, encoding)
    lower = {k: v for k, v in headers.items()}
    decoded = decode(headers["Content-Type"], body, lower)
    assert decoded.dtype == np.float32
    np.testing.assert_array_equal(decoded, batch)


def test_content_type_parameters_are_ignored() -> None:
    out = decode("application/json; charset=utf-8", b'{"inputs": [[1, 2, 3, 4]]}')
    assert out.shape == (1, 4)


BAD = [
    ("no content type", None, b"{}", {}, 415),
    ("form content type", "application/x-www-form-urlencoded", b"a=1", {}, 415),
    ("invalid json", "application/json", b"{not json", {}, 400),
    ("not utf-8", "application/json", b"\xff\xfe\x00", {}, 400),
    ("json array, not object", "application/json", b"[1, 2]", {}, 400),
    ("missing inputs", "application/json", b'{"x": []}', {}, 400),
    ("inputs not a list", "application/json", b'{"inputs": 3}', {}, 400),
    ("strings", "application/json", b'{"inputs": [["1", "2", "3", "4"]]}', {}, 400),
    ("booleans", "application/json", b'{"inputs": [[true, false, true, false]]}', {}, 400),
    ("bool among numbers", "application/json", b'{"inputs": [[1, true, 2, 3]]}', {}, 400),
    ("deeply nested", "application/json", b'{"inputs": ' + b"[" * 2000 + b"]" * 2000
     + b"}", {}, 400),
    ("nulls", "application/json", b'{"inputs": [[null, 1, 2, 3]]}', {}, 400),
    ("ragged", "application/json", b'{"inputs": [[1, 2, 3, 4], [1]]}', {}, 400),
    ("wrong width", "application/json", b'{"inputs": [[1, 2, 3]]}', {}, 400),
    ("no batch dim", "application/json", b'{"inputs": [1, 2, 3, 4]}', {}, 400),
    ("empty batch", "application/json", b'{"inputs": []}', {}, 400),
    ("NaN", "application/json", b'{"inputs": [[NaN, 1, 2, 3]]}', {}, 400),
    ("overflow to inf", "application/json", b'{"inputs": [[1e39, 1, 2, 3]]}', {}, 400),
    ("batch over limit", "application/json",
     json.dumps({"inputs": [[1, 2, 3, 4]] * 9}).encode(), {}, 413),
    ("body over limit", "application/json", b" " * 5000, {}, 413),
    ("binary without shape", "application/octet-stream", b"\0" * 16, {}, 400),
    ("binary bad shape", "application/octet-stream", b"\0" * 16, {"X-Shape": "a,b"}, 400),
    ("binary negative dim", "application/octet-stream", b"", {"X-Shape": "-1,4"}, 400),
    ("binary truncated", "application/octet-stream", b"\0" * 15, {"X-Shape": "1,4"}, 400),
    ("binary wrong dtype", "application/octet-stream", b"\0" * 16,
     {"X-Shape": "1,4", "X-Dtype": "float64"}, 400),
    ("binary wrong shape", "application/octet-stream", b"\0" * 12, {"X-Shape": "1,3"}, 400),
    ("binary NaN", "application/octet-stream",
     np.array([[np.nan, 0, 0, 0]], dtype="<f4").tobytes(), {"X-Shape": "1,4"}, 400),
    # Bodies of numbers and brackets only take the short way: the same refusals.
    ("empty objects among numbers", "application/json", b'{"inputs": [[{}, 1, 2, 3]]}', {},
     400),
    ("numbers only, ragged", "application/json", b'{"inputs":[[1,2,3,4],[1]]}', {}, 400),
    ("numbers only, overflow", "application/json", b'{"inputs":[[1,2,3,-4e38]]}', {}, 400),
    ("numbers only, too deep", "application/json", b'{"inputs":' + b"[" * 100 + b"1"
     + b"]" * 100 + b"}", {}, 400),
    ("numbers only, batch over limit", "application/json",
     b'{"inputs":' + b"[" + b",".join([b"[1,2,3,4]"] * 9) + b"]}", {}, 413),
]


@pytest.mark.parametrize(("why", "ctype", "body", "headers", "status"), BAD,
                         ids=[b[0] for b in BAD])
def test_bad_requests_get_client_errors(why: str, ctype: str | None, body: bytes,
                                        headers: dict[str, str], status: int) -> None:
    with pytest.raises(RequestError) as info:
        decode(ctype, body, headers)
    assert info.value.status == status
    assert info.value.message  # always says what is wrong


@pytest.mark.parametrize("body", [
    b'{"inputs":[[1,2.5,-3e-2,4E1]]}',                      # the short way
    b'{ "inputs" : [ [ 1, 2.5, -3e-2, 4E1 ] ] }',             # spaced out
    b'{"inputs":[[1,2.5,-3e-2,4E1]],"inputs":[[1,2.5,-3e-2,4E1]]}',  # the long way
])
def test_both_ways_through_json_decode_alike(body: bytes) -> None:
    out = decode("application/json", body)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, np.array([[1, 2.5, -0.03, 40]], dtype=np.float32))


def test_finite_values_whose_squares_overflow_are_served() -> None:
    big = np.float32(3e38)
    out = decode("application/json", b'{"inputs":[[3e38,3e38,3e38,3e38]]}')
    np.testing.assert_array_equal(out, np.full((1, 4), big))


def test_utf16_json_is_refused_not_decoded_around_the_checks() -> None:
    body = '{"inputs": [[true, 1.0, 2.0, 3.0]]}'.encode("utf-16")
    with pytest.raises(RequestError) as info:
        decode("application/json", body)
    assert info.value.status == 400


def test_an_extra_field_is_refused_by_name() -> None:
    with pytest.raises(RequestError) as info:
        decode("application/json", b'{"inputs": [[1, 2, 3, 4]], "note": "true"}')
    assert info.value.status == 400
    assert "unknown field 'note'" in info.value.message


def test_long_client_text_is_cut_in_messages() -> None:
    with pytest.raises(RequestError) as info:
        decode("application/octet-stream", b"", {"X-Shape": "1," * 5000})
    assert len(info.value.message) < 200


def test_binary_batch_is_writable() -> None:
    body, headers = codec.encode_request(np.ones((1, 4), dtype=np.float32), "binary")
    assert decode(headers["Content-Type"], body, headers).flags.writeable


def test_predictions_round_trip_and_prefix() -> None:
    preds = [Prediction(3, (0.1, 0.9)), Prediction(0, (1.0, 0.0))]
    body = codec.encode_predictions(preds)
    assert body.startswith(codec.RESPONSE_PREFIX)
    assert codec.decode_predictions(body) == preds


def test_error_body_is_json_with_status() -> None:
    doc = json.loads(codec.encode_error(415, "nope"))
    assert doc == {"error": "nope", "status": 415}


GOOD = Prediction(1, (0.25, 0.75))


@pytest.mark.parametrize(("body", "shape", "problem"), [
    (codec.encode_predictions([GOOD]), (1, 2), None),
    (codec.encode_predictions([GOOD, GOOD]), None, None),  # shape unknown: any count
    (codec.encode_predictions([GOOD, GOOD]), (1, 2), "2 predictions for a request of 1 row"),
    (codec.encode_predictions([Prediction(0, (1.0,))]), (1, 2),
     "a prediction of 1 probabilities where 2 were expected"),
    (codec.encode_predictions([Prediction(2, (0.5, 0.5))]), (1, 2), "label 2 outside"),
    (codec.encode_predictions([Prediction(-1, (0.5, 0.5))]), None, "label -1 outside"),
    (b'{"predictions":[{"label":0,"probabilities":[1e999,0]}]}', (1, 2), "infinity"),
    (b'{"predictions":[]}', None, "no predictions"),
    (b'{"predictions":1}', (1, 2), "does not decode (TypeError"),
    (b'{"predictions":[{"label":0}]}', (1, 2), "does not decode (KeyError"),
    (b'{"predictions":', (1, 2), "does not decode (JSONDecodeError"),
    (b"", (1, 2), "does not decode"),
])
def test_every_answer_is_decoded_and_checked(body: bytes, shape: codec.AnswerShape | None,
                                             problem: str | None) -> None:
    said = codec.answer_problem(lambda: codec.decode_predictions(body), shape)
    if problem is None:
        assert said is None
    else:
        assert said is not None
        assert problem in said, said


def test_answer_shape_is_rows_and_classes() -> None:
    assert codec.answer_shape([GOOD, GOOD]) == (2, 2)
    assert codec.answer_shape([]) == (0, 0)


def test_a_probability_that_is_not_finite_is_malformed() -> None:
    """JSON cannot carry one (orjson refuses it, above); protobuf's floats can."""
    said = codec.answer_problem(lambda: [Prediction(0, (float("nan"), 1.0))], (1, 2))
    assert said == "a probability that is not a finite number"
